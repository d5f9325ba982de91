//! The file checks on real files in a temp directory.

use std::path::Path;

use super::check_files;
use crate::config::{CliOverrides, GatewayConfig, load_checked, load_from_str};

/// A configuration whose every file lives under `dir`; `extra` is
/// appended (later tables win over none here: each test adds its own).
fn config(dir: &Path, dicomweb: &str, pipeline: &str, extra: &str) -> GatewayConfig {
    let d = dir.display();
    let text = format!(
        "[dicomweb]\ncert = \"{d}/certs/server.pem\"\nkey = \"{d}/certs/server.key\"\n{dicomweb}\n\
         [pipeline]\nmodels_dir = \"{d}/models\"\n{pipeline}\n{extra}"
    );
    load_from_str(&text, Vec::new(), &CliOverrides::default()).expect("valid configuration")
}

fn dev_certs(dir: &Path) {
    crate::certs::write_dev_certs(
        &dir.join("certs/server.pem"),
        &dir.join("certs/server.key"),
        &[],
    )
    .unwrap();
}

fn assert_problem(problems: &[String], needles: &[&str]) {
    assert!(
        problems
            .iter()
            .any(|p| needles.iter().all(|n| p.contains(n))),
        "no problem with {needles:?} in {problems:#?}"
    );
}

#[test]
fn a_complete_deployment_has_no_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    dev_certs(dir.path());
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, crate::route::EMBEDDED_ROUTES_TOML).unwrap();
    let pipeline = format!("routes_file = \"{}\"", routes.display());
    let problems = check_files(&config(dir.path(), "dev_certs = false", &pipeline, ""));
    assert_eq!(problems, Vec::<String>::new());
}

#[test]
fn missing_certificates_are_fine_only_when_dev_certs_creates_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    assert!(check_files(&config(dir.path(), "dev_certs = true", "", "")).is_empty());

    let problems = check_files(&config(dir.path(), "dev_certs = false", "", ""));
    let cert = dir.path().join("certs/server.pem").display().to_string();
    let key = dir.path().join("certs/server.key").display().to_string();
    assert_problem(&problems, &["dicomweb.cert", &cert, "does not exist"]);
    assert_problem(&problems, &["dicomweb.key", &key, "does not exist"]);
    // The admin API shares these files by default: reported once.
    assert!(
        !problems.iter().any(|p| p.starts_with("admin.")),
        "{problems:#?}"
    );

    // Only one of the two present: dev_certs does not fill in the other.
    dev_certs(dir.path());
    std::fs::remove_file(&key).unwrap();
    let problems = check_files(&config(dir.path(), "dev_certs = true", "", ""));
    assert_problem(&problems, &["dicomweb.key", &key, "does not exist"]);
    assert_problem(&problems, &["dicomweb.dev_certs"]);
}

#[test]
fn certificates_must_parse_and_belong_to_their_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    dev_certs(dir.path());
    let cert = dir.path().join("certs/server.pem");
    let good = std::fs::read(&cert).unwrap();
    std::fs::write(&cert, b"not a certificate\n").unwrap();
    let problems = check_files(&config(dir.path(), "dev_certs = false", "", ""));
    assert_problem(
        &problems,
        &[
            "dicomweb.cert",
            &cert.display().to_string(),
            "no PEM certificate",
        ],
    );

    // A certificate from another key pair.
    let other = tempfile::tempdir().unwrap();
    dev_certs(other.path());
    std::fs::write(&cert, good).unwrap();
    std::fs::copy(
        other.path().join("certs/server.key"),
        dir.path().join("certs/server.key"),
    )
    .unwrap();
    let problems = check_files(&config(dir.path(), "dev_certs = false", "", ""));
    assert_problem(&problems, &["dicomweb.cert, dicomweb.key", "usable"]);
}

#[test]
fn the_admin_api_s_own_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    let admin = format!(
        "[admin]\ncert = \"{0}/admin.pem\"\nkey = \"{0}/admin.key\"\n",
        dir.path().display()
    );
    let problems = check_files(&config(dir.path(), "", "", &admin));
    assert_problem(&problems, &["admin.cert", "admin.pem", "does not exist"]);
    assert_problem(&problems, &["admin.key", "admin.key", "does not exist"]);
    // DICOMweb off with TLS files missing: nothing of it is checked.
    let problems = check_files(&config(
        dir.path(),
        "enabled = false\ndev_certs = false",
        "",
        "[admin]\nenabled = false",
    ));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_pipeline_s_files_are_checked_when_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models").display().to_string();
    let routes = dir.path().join("routes.toml");
    let pipeline = format!("routes_file = \"{}\"", routes.display());
    let problems = check_files(&config(dir.path(), "", &pipeline, ""));
    assert_problem(
        &problems,
        &["pipeline.models_dir", &models, "does not exist"],
    );
    assert_problem(
        &problems,
        &[
            "pipeline.routes_file",
            &routes.display().to_string(),
            "does not exist",
        ],
    );

    std::fs::write(dir.path().join("models"), b"a file").unwrap();
    std::fs::write(&routes, "[[route]]\nname = \"Bad Name\"\n").unwrap();
    let problems = check_files(&config(dir.path(), "", &pipeline, ""));
    assert_problem(&problems, &["pipeline.models_dir", "is not a directory"]);
    assert_problem(
        &problems,
        &["pipeline.routes_file", "routes.toml", "Bad Name"],
    );

    let disabled = format!("enabled = false\n{pipeline}");
    assert!(check_files(&config(dir.path(), "", &disabled, "")).is_empty());
}

#[test]
fn ca_files_of_triton_and_redis_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, b"-----BEGIN NOTHING-----\n").unwrap();
    let missing = dir.path().join("redis-ca.pem");
    let extra = format!(
        "[pipeline.triton]\nurl = \"https://triton:8001\"\ntls_ca = \"{}\"\n\
         [cache]\nkind = \"redis\"\n[cache.redis]\nurl = \"rediss://redis:6380\"\nca_file = \"{}\"\n",
        garbage.display(),
        missing.display()
    );
    let problems = check_files(&config(dir.path(), "", "", &extra));
    assert_problem(&problems, &["pipeline.triton.tls_ca", "garbage.pem"]);
    assert_problem(
        &problems,
        &["cache.redis.ca_file", "redis-ca.pem", "does not exist"],
    );
}

#[test]
fn load_checked_reports_bad_values_and_missing_files_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[dimse]\nmax_associations = 0\n[dicomweb]\ndev_certs = false\ncert = \"{0}/c.pem\"\nkey = \"{0}/k.pem\"\n\
             [pipeline]\nmodels_dir = \"{0}/models\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let err = load_checked(Some(&path), &CliOverrides::default()).unwrap_err();
    for needle in [
        "dimse.max_associations",
        "c.pem",
        "k.pem",
        "pipeline.models_dir",
    ] {
        assert_problem(&err.0, &[needle]);
    }
    // `load` alone does not look at files.
    let err = crate::config::load(Some(&path), &CliOverrides::default()).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
}
