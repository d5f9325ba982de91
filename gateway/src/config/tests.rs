use super::*;

fn load_text(text: &str) -> Result<GatewayConfig, ConfigError> {
    load_from_str(
        text,
        Vec::<(String, String)>::new(),
        &CliOverrides::default(),
    )
}

#[test]
fn embedded_default_is_valid_and_has_the_demo_site() {
    let config = load_text(EMBEDDED_DEFAULT).expect("embedded default must validate");
    assert_eq!(config.ae_title, "GATEWAY");
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert_eq!(config.dimse.listen, "0.0.0.0:11112".parse().unwrap());
    let demo = config.site("demo").expect("demo site");
    assert_eq!(demo.ae_titles, vec!["DEMO-SCU".to_string()]);
    assert!(
        demo.allowed_peers
            .iter()
            .any(|n| n.contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()))
    );
    assert_eq!(
        config.dimse.unknown_ae_site, None,
        "unknown AEs are off by default"
    );
    assert_eq!(config.store.duplicate_policy, DuplicatePolicy::Reject);
    assert_eq!(config.store.max_nesting_depth, 64);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
        [gateway]
        ae_title = "THIS-TITLE-IS-FAR-TOO-LONG"
        colour = "blue"
        [dimse]
        listen = "nowhere"
        max_pdu_length = 10
        message_timeout = "soon"
        [store]
        duplicate_policy = "overwrite-silently"
        max_nesting_depth = 257
        [[sites]]
        name = "Bad Name"
        ae_titles = []
        allowed_peers = ["10.0.0.0/33"]
    "#;
    let err = load_text(text).unwrap_err();
    let all = err.0.join("\n");
    for expected in [
        "unknown key `gateway.colour`",
        "gateway.ae_title",
        "dimse.listen",
        "dimse.max_pdu_length",
        "dimse.message_timeout",
        "store.duplicate_policy",
        "store.max_nesting_depth",
        "sites[0].name",
        "sites[0].ae_titles",
        "sites[0].allowed_peers",
    ] {
        assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
    }
    assert!(err.0.len() >= 9, "{all}");
}

#[test]
fn ae_title_shared_by_two_sites_is_rejected() {
    let text = r#"
        [[sites]]
        name = "a"
        ae_titles = ["CT1"]
        [[sites]]
        name = "b"
        ae_titles = ["CT1"]
    "#;
    let err = load_text(text).unwrap_err();
    assert!(
        err.0.iter().any(|p| p.contains("more than one site")),
        "{err}"
    );
}

#[test]
fn environment_then_cli_override_the_file() {
    let vars = vec![
        (
            "DICOM_GATEWAY__DIMSE__LISTEN".to_string(),
            "127.0.0.1:2000".to_string(),
        ),
        (
            "DICOM_GATEWAY__STORE__DUPLICATE_POLICY".to_string(),
            "replace".to_string(),
        ),
        (
            "DICOM_GATEWAY__METRICS__LISTEN".to_string(),
            "127.0.0.1:3000".to_string(),
        ),
    ];
    let cli = CliOverrides {
        metrics_addr: Some("127.0.0.1:4000".parse().unwrap()),
        data_dir: Some("/tmp/elsewhere".into()),
        ..Default::default()
    };
    let config = load_from_str(EMBEDDED_DEFAULT, vars, &cli).unwrap();
    assert_eq!(config.dimse.listen, "127.0.0.1:2000".parse().unwrap());
    assert_eq!(config.store.duplicate_policy, DuplicatePolicy::Replace);
    assert_eq!(config.metrics.listen, "127.0.0.1:4000".parse().unwrap());
    assert_eq!(config.data_dir, PathBuf::from("/tmp/elsewhere"));
    assert!(config.to_toml().contains("127.0.0.1:4000"));
}

#[test]
fn unknown_key_from_environment_is_reported() {
    let vars = vec![("DICOM_GATEWAY__DIMSE__LISTEM".to_string(), "x".to_string())];
    let err = load_from_str(EMBEDDED_DEFAULT, vars, &CliOverrides::default()).unwrap_err();
    assert!(err.0.iter().any(|p| p.contains("dimse.listem")), "{err}");
}

#[test]
fn the_embedded_cache_is_in_memory_and_a_redis_password_is_never_printed() {
    let config = load_text(EMBEDDED_DEFAULT).unwrap();
    assert_eq!(config.cache.redis(), None);
    assert!(matches!(
        config.cache.backend,
        crate::cache::CacheBackendConfig::Memory { .. }
    ));
    let text = format!("{EMBEDDED_DEFAULT}\n")
        .replace("kind = \"memory\"", "kind = \"redis\"")
        .replace("password_env = \"\"", "password = \"hunter2\"");
    let config = load_text(&text).unwrap();
    assert!(config.cache.redis().is_some());
    assert!(!config.to_toml().contains("hunter2"));
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn negotiating_budgets_default_below_the_association_limit_and_are_bounded() {
    let config = load_text(EMBEDDED_DEFAULT).unwrap();
    assert_eq!(config.dimse.max_negotiating, 32);
    assert_eq!(config.dimse.max_negotiating_per_peer, 8);
    let text = r#"
        [dimse]
        max_negotiating = 0
        max_negotiating_per_peer = 9
        max_associations = 0
    "#;
    let all = load_text(text).unwrap_err().0.join("\n");
    for expected in [
        "dimse.max_negotiating: 0 is outside 1..=1024",
        "dimse.max_negotiating_per_peer: 9 is outside 1..=dimse.max_negotiating (0)",
        "dimse.max_associations",
    ] {
        assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
    }
    let text = "[dimse]\nmax_negotiating = 4\nmax_negotiating_per_peer = 0\n";
    let all = load_text(text).unwrap_err().0.join("\n");
    assert!(all.contains("dimse.max_negotiating_per_peer: 0"), "{all}");
}
