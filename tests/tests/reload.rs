//! `dicom-gateway reload` says the truth, on the real binary: each section
//! of the configuration is edited in turn, and what the running gateway
//! then does is checked (a new AE title associates, a removed one is
//! refused, a new destination is usable by routes), and what it cannot
//! apply is named as needing a restart. A configuration naming a missing
//! certificate or model repository is refused by reload and by
//! `check-config` alike.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gateway_e2e::{TestGateway, dcmtk, gateway_binary, pipeline_config, repo_models_dir};
use serde_json::{Value, json};

const CT_ROUTE: &str = "ct-head-hyperdensity";
/// How long the gateway may take to show a change in its log.
const DEADLINE: Duration = Duration::from_secs(10);

fn echo(gw: &TestGateway, calling_ae: &str) -> bool {
    dcmtk("echoscu")
        .args(gw.dcmtk_args(calling_ae))
        .output()
        .expect("run echoscu")
        .status
        .success()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// Writes `config` over the running gateway's file and reloads.
async fn reload_with(gw: &TestGateway, token: &str, config: &str) -> (u16, Value) {
    std::fs::write(gw.config_path(), config).unwrap();
    gw.admin_post(Some(token), "/reload", &json!({})).await
}

/// Reloads `config`, which must be accepted, and returns its report.
async fn reloaded(gw: &TestGateway, token: &str, config: &str) -> Value {
    let (status, body) = reload_with(gw, token, config).await;
    assert_eq!(status, 200, "{body}");
    body["report"].clone()
}

/// [`pipeline_config`] with a routes file (so a test can name destinations
/// in it).
fn config_with_routes(routes_file: &std::path::Path) -> String {
    pipeline_config("").replace(
        "[pipeline]\nenabled = true",
        &format!(
            "[pipeline]\nenabled = true\nroutes_file = \"{}\"",
            routes_file.display()
        ),
    )
}

#[tokio::test]
async fn each_section_is_applied_live_or_named_as_needing_a_restart() {
    let deployment = tempfile::tempdir().unwrap();
    let routes_file = deployment.path().join("routes.toml");
    let routes = std::fs::read_to_string(repo_models_dir().join("../config/routes.toml")).unwrap();
    std::fs::write(&routes_file, &routes).unwrap();
    let gw = TestGateway::start_with_config(config_with_routes(&routes_file));
    let ada = gw.create_admin_token("ada", "admin");
    let mut config = std::fs::read_to_string(gw.config_path()).unwrap();

    // sites: a new site's AE title associates without a restart.
    assert!(!echo(&gw, "NEW-AE"), "unknown AE title refused at first");
    config.push_str(
        "\n[[sites]]\nname = \"north\"\nae_titles = [\"NEW-AE\"]\nallowed_peers = [\"127.0.0.0/8\"]\n",
    );
    let report = reloaded(&gw, &ada, &config).await;
    assert_eq!(strings(&report["applied"]), ["sites"], "{report}");
    assert_eq!(strings(&report["restart_required"]), Vec::<String>::new());
    assert!(echo(&gw, "NEW-AE"), "the new AE title associates");

    // An AE title taken away is refused from the next association on.
    assert!(echo(&gw, "DEMO-SCU"));
    config = config.replace("ae_titles = [\"DEMO-SCU\"]", "ae_titles = [\"DEMO-OTHER\"]");
    let report = reloaded(&gw, &ada, &config).await;
    assert_eq!(strings(&report["applied"]), ["sites"], "{report}");
    assert!(!echo(&gw, "DEMO-SCU"), "a removed AE title is refused");
    assert!(echo(&gw, "NEW-AE"));

    // destinations: a route may name one only once it is configured.
    std::fs::write(
        &routes_file,
        routes.replacen("destinations = []", "destinations = [\"pacs-b\"]", 1),
    )
    .unwrap();
    let (status, problem) = gw.admin_post(Some(&ada), "/reload", &json!({})).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["problems"].to_string().contains("pacs-b"),
        "{problem}"
    );
    let with_destination = format!(
        "{config}\n[[destinations]]\nname = \"pacs-b\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = 104\n"
    );
    let report = reloaded(&gw, &ada, &with_destination).await;
    assert_eq!(strings(&report["applied"]), ["destinations"], "{report}");
    assert_eq!(strings(&report["destinations"]["added"]), ["pacs-b"]);
    assert_eq!(strings(&report["restart_required"]), Vec::<String>::new());
    let (status, views) = gw.admin_get(Some(&ada), "/routes").await;
    assert_eq!(status, 200, "{views}");
    let ct = views["routes"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["name"] == CT_ROUTE))
        .unwrap_or_else(|| panic!("no {CT_ROUTE} in {views}"));
    assert_eq!(strings(&ct["destinations"]), ["pacs-b"], "{ct}");
    // Removing it while a route still sends there is refused.
    let (status, problem) = reload_with(&gw, &ada, &config).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["problems"].to_string().contains("pacs-b"),
        "{problem}"
    );
    config = with_destination;

    // What a running process cannot change: named, one section at a time.
    // (section, text replaced or "" to append, new text)
    let edits = [
        (
            "store",
            "min_free_space = \"1MiB\"",
            "min_free_space = \"2MiB\"",
        ),
        ("egress", "", "\n[egress.retry]\nmax_attempts = 4\n"),
        ("drift", "", "\n[drift]\nthreshold = 0.3\n"),
        ("cache", "", "\n[cache]\nttl = \"1d\"\n"),
    ];
    let mut waiting: Vec<String> = Vec::new();
    for (section, from, to) in edits {
        if from.is_empty() {
            config.push_str(to);
        } else {
            assert!(config.contains(from), "{from} in {config}");
            config = config.replace(from, to);
        }
        let report = reloaded(&gw, &ada, &config).await;
        waiting.push(section.to_string());
        waiting.sort();
        assert_eq!(strings(&report["restart_required"]), waiting, "{report}");
        assert_eq!(
            strings(&report["applied"]),
            Vec::<String>::new(),
            "{report}"
        );
    }

    // logging.level applies live (unless RUST_LOG decides the filter).
    assert!(!gw.log().contains(" DEBUG "), "info level at start");
    config = config.replace("level = \"info\"", "level = \"debug\"");
    let report = reloaded(&gw, &ada, &config).await;
    if std::env::var_os("RUST_LOG").is_some() {
        assert!(report["notes"].to_string().contains("RUST_LOG"), "{report}");
    } else {
        assert_eq!(strings(&report["applied"]), ["logging.level"], "{report}");
        let started = Instant::now();
        while !gw.log().contains(" DEBUG ") {
            assert!(started.elapsed() < DEADLINE, "no debug line after reload");
            assert!(echo(&gw, "NEW-AE"));
        }
    }

    // The CLI names the sections too, and the audit trail records them.
    let out = gw.operator_cli(&ada, &["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("applied now: none"), "{printed}");
    assert!(
        printed.contains("needs a restart to apply: cache, drift, egress, store"),
        "{printed}"
    );
    let (status, audit) = gw
        .admin_get(Some(&ada), "/audit?action=config.reload&limit=100")
        .await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["detail"]["applied"] == json!(["sites"])),
        "{audit}"
    );
    assert!(
        entries.iter().any(
            |e| e["detail"]["restart_required"] == json!(["cache", "drift", "egress", "store"])
        ),
        "{audit}"
    );
}

#[tokio::test]
async fn a_missing_certificate_or_model_repository_is_refused_by_reload_and_check_config() {
    let gw = TestGateway::start_with_config(pipeline_config(""));
    let ada = gw.create_admin_token("ada", "admin");
    let good = std::fs::read_to_string(gw.config_path()).unwrap();
    let cert = gw.test_dir().join("certs/absent.pem").display().to_string();
    let models = gw.test_dir().join("no-models").display().to_string();
    let bad = good
        .replace("certs/server.pem", "certs/absent.pem")
        .replace(&repo_models_dir().display().to_string(), &models);
    assert_ne!(bad, good);

    let (status, problem) = reload_with(&gw, &ada, &bad).await;
    assert_eq!(status, 422, "{problem}");
    let problems = problem["problems"].to_string();
    assert!(problems.contains(&cert), "{problems}");
    assert!(problems.contains(&models), "{problems}");

    let out = Command::new(gateway_binary())
        .arg("check-config")
        .arg("--config")
        .arg(gw.config_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains(&cert), "{printed}");
    assert!(printed.contains(&models), "{printed}");

    // Nothing changed: the gateway still serves, and the good file reloads.
    assert!(echo(&gw, "DEMO-SCU"));
    let report = reloaded(&gw, &ada, &good).await;
    assert_eq!(strings(&report["restart_required"]), Vec::<String>::new());
    let out = Command::new(gateway_binary())
        .arg("check-config")
        .arg("--config")
        .arg(gw.config_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
