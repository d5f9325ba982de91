//! Which changed settings a reload applies and which need a restart.

use super::*;
use crate::config::{CliOverrides, EMBEDDED_DEFAULT, load_from_str};

fn effective(text: &str) -> toml::Table {
    let config = load_from_str(text, Vec::new(), &CliOverrides::default())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    table_of(&config.effective).unwrap()
}

/// The top-level part of an [`APPLIED_LIVE`] entry.
fn section_of(key: &str) -> &str {
    key.split_once('.').map_or(key, |(section, _)| section)
}

#[test]
fn every_section_of_the_configuration_is_classified() {
    for table in [
        table_of(&RawConfig::default()).unwrap(),
        effective(EMBEDDED_DEFAULT),
    ] {
        for section in table.keys() {
            assert!(
                RESTART_SECTIONS.contains(&section.as_str())
                    || APPLIED_LIVE.contains(&section.as_str()),
                "section `{section}` is neither applied live (APPLIED_LIVE) nor listed as \
                 needing a restart (RESTART_SECTIONS): decide which in app/reload.rs"
            );
        }
        // No stale names either.
        for name in RESTART_SECTIONS
            .iter()
            .chain(APPLIED_LIVE.iter())
            .map(|k| section_of(k))
        {
            assert!(table.contains_key(name), "`{name}` is not a section");
        }
    }
    // A whole section is either live or not; `logging` is split by key.
    for live in APPLIED_LIVE.iter().filter(|k| !k.contains('.')) {
        assert!(!RESTART_SECTIONS.contains(live), "{live} in both lists");
    }
}

/// Each edit of the demo configuration and how reload must classify it.
#[test]
fn each_section_is_applied_live_or_needs_a_restart() {
    let base = EMBEDDED_DEFAULT;
    let in_force = effective(base);
    let destination = "\n[[destinations]]\nname = \"pacs\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = 104\n";
    let cases: Vec<(String, &[&str], &[&str])> = vec![
        (base.to_string(), &[], &[]),
        (
            base.replace(
                "ae_titles = [\"DEMO-SCU\"]",
                "ae_titles = [\"DEMO-SCU\", \"NEW-AE\"]",
            ),
            &["sites"],
            &[],
        ),
        (format!("{base}{destination}"), &["destinations"], &[]),
        (
            base.replace("level = \"info\"", "level = \"debug\""),
            &["logging.level"],
            &[],
        ),
        (
            base.replace("format = \"text\"", "format = \"json\"")
                .replace("level = \"info\"", "level = \"warn\""),
            &["logging.level"],
            &["logging.format"],
        ),
        (
            base.replace(
                "duplicate_policy = \"reject\"",
                "duplicate_policy = \"replace\"",
            ),
            &[],
            &["store"],
        ),
        (
            format!("{base}\n[egress.retry]\nmax_attempts = 3\n"),
            &[],
            &["egress"],
        ),
        (
            base.replace("threshold = 0.2", "threshold = 0.3"),
            &[],
            &["drift"],
        ),
        (
            base.replace("ttl = \"7d\"", "ttl = \"1d\""),
            &[],
            &["cache"],
        ),
        (
            base.replace("max_associations = 32", "max_associations = 8"),
            &[],
            &["dimse"],
        ),
        (
            base.replace("stable_time = \"5s\"", "stable_time = \"9s\""),
            &[],
            &["pipeline"],
        ),
        (
            base.replace("ae_title = \"GATEWAY\"", "ae_title = \"OTHER\""),
            &[],
            &["gateway"],
        ),
        (
            base.replace("max_body_size = \"64KiB\"", "max_body_size = \"32KiB\""),
            &[],
            &["admin"],
        ),
        (
            base.replace(
                "syslog_facility = \"audit\"",
                "syslog_facility = \"local0\"",
            ),
            &[],
            &["audit"],
        ),
        (
            base.replace("listen = \"127.0.0.1:9464\"", "listen = \"127.0.0.1:9465\""),
            &[],
            &["metrics"],
        ),
        (
            base.replace("qido_max_limit = 1000", "qido_max_limit = 500"),
            &[],
            &["dicomweb"],
        ),
        (
            format!("{base}{destination}").replace(
                "duplicate_policy = \"reject\"",
                "duplicate_policy = \"replace\"",
            ),
            &["destinations"],
            &["store"],
        ),
    ];
    for (text, live, restart) in cases {
        let changes = classify(&in_force, &effective(&text));
        assert_eq!(
            changes,
            Changes {
                live: live.iter().map(ToString::to_string).collect(),
                restart_required: restart.iter().map(ToString::to_string).collect(),
            },
            "live {live:?}, restart {restart:?}"
        );
    }
}

#[test]
fn a_section_nobody_classified_needs_a_restart() {
    let in_force = effective(EMBEDDED_DEFAULT);
    let mut fresh = in_force.clone();
    fresh.insert("telepathy".into(), toml::Value::Table(toml::Table::new()));
    let changes = classify(&in_force, &fresh);
    assert_eq!(changes.restart_required, vec!["telepathy".to_string()]);
    assert!(changes.live.is_empty());
}

#[test]
fn applied_keys_are_copied_into_the_configuration_in_force() {
    let mut in_force = effective(EMBEDDED_DEFAULT);
    let fresh = effective(
        &EMBEDDED_DEFAULT
            .replace("level = \"info\"", "level = \"debug\"")
            .replace("format = \"text\"", "format = \"json\"")
            .replace("ae_titles = [\"DEMO-SCU\"]", "ae_titles = [\"NEW-AE\"]"),
    );
    copy_key(&mut in_force, &fresh, "logging.level");
    copy_key(&mut in_force, &fresh, "sites");
    let changes = classify(&in_force, &fresh);
    // Only what was not applied still differs.
    assert_eq!(changes.restart_required, vec!["logging.format".to_string()]);
    assert!(changes.live.is_empty(), "{changes:?}");

    // A section the new configuration drops goes too.
    let mut none = fresh.clone();
    none.remove("sites");
    copy_key(&mut in_force, &none, "sites");
    assert!(!in_force.contains_key("sites"));
}
