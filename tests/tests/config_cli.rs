//! The binary's configuration handling: every problem at once, exit 64.

use std::process::Command;

use gateway_e2e::{gateway_binary, repo_models_dir};

/// The embedded default names `models` relative to the working directory
/// (checked to exist): point it at the repository's.
const MODELS_DIR_VAR: &str = "DICOM_GATEWAY__PIPELINE__MODELS_DIR";

#[test]
fn check_config_prints_the_effective_embedded_default() {
    let out = Command::new(gateway_binary())
        .args(["check-config", "--dimse-addr", "127.0.0.1:4104"])
        .env(MODELS_DIR_VAR, repo_models_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen = \"127.0.0.1:4104\""), "{text}");
    assert!(text.contains("DEMO-SCU"), "{text}");
}

#[test]
fn bad_config_reports_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[gateway]\nae_title = \"\"\ntypo = 1\n[dimse]\nlisten = \"nope\"\n[store]\nduplicate_policy = \"yolo\"\n",
    )
    .unwrap();
    for command in ["check-config", "serve"] {
        let out = Command::new(gateway_binary())
            .arg(command)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        for expected in [
            "gateway.typo",
            "gateway.ae_title",
            "dimse.listen",
            "store.duplicate_policy",
        ] {
            assert!(
                err.contains(expected),
                "{command}: missing {expected} in {err}"
            );
        }
    }
}

#[test]
fn environment_overrides_apply() {
    let out = Command::new(gateway_binary())
        .arg("check-config")
        .env("DICOM_GATEWAY__STORE__DUPLICATE_POLICY", "replace")
        .env("DICOM_GATEWAY__DIMSE__MAX_ASSOCIATIONS", "3")
        .env(MODELS_DIR_VAR, repo_models_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("duplicate_policy = \"replace\""), "{text}");
    assert!(text.contains("max_associations = 3"), "{text}");
}
