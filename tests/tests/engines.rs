//! The model repository from the outside: `dicom-gateway models list` and
//! `models verify` on the committed demo models and on a tampered copy, and
//! the demo model generator reproducing the committed files byte for byte.
//! (The engine conformance suite itself runs as unit tests in
//! `gateway/src/infer/conformance.rs`.)

use std::path::{Path, PathBuf};
use std::process::Command;

use gateway_e2e::gateway_binary;

fn demo_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn models(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(gateway_binary())
        .arg("models")
        .args(args)
        .arg("--models-dir")
        .arg(dir)
        .output()
        .expect("run dicom-gateway models")
}

fn python() -> String {
    std::env::var("GATEWAY_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
        assert!(
            Path::new(venv).exists(),
            "the Python test tools are missing: run scripts/test.sh, which installs them in .venv"
        );
        venv.to_string()
    })
}

/// Copies the demo repository into a temporary folder.
fn copy_of_demo_models() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(demo_models()).unwrap() {
        let name_dir = entry.unwrap().path();
        if !name_dir.is_dir() {
            continue;
        }
        for version in std::fs::read_dir(&name_dir).unwrap() {
            let version_dir = version.unwrap().path();
            let target = copy
                .path()
                .join(name_dir.file_name().unwrap())
                .join(version_dir.file_name().unwrap());
            std::fs::create_dir_all(&target).unwrap();
            for file in std::fs::read_dir(&version_dir).unwrap() {
                let file = file.unwrap().path();
                std::fs::copy(&file, target.join(file.file_name().unwrap())).unwrap();
            }
        }
    }
    copy
}

#[test]
fn models_list_shows_every_demo_version_as_ok() {
    let out = models(&["list", "--json"], &demo_models());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = rows.as_array().expect("an array");
    let ids: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}@{}",
                r["name"].as_str().unwrap(),
                r["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            "ct-hyperdensity@1.0.0",
            "ct-hyperdensity@2.0.0",
            "dx-exposure@1.0.0",
            "resnet18-demo@1.0.0",
            "resnet18-demo@1.1.0"
        ]
    );
    for row in rows {
        assert_eq!(row["status"], "ok", "{row}");
        assert_eq!(row["demo"], true, "{row}");
        assert_eq!(row["sha256"].as_str().unwrap().len(), 64, "{row}");
    }

    let table = models(&["list"], &demo_models());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("NAME"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.ends_with(" ok")).count(),
        5,
        "{text}"
    );
}

#[test]
fn models_verify_passes_on_the_demo_models_and_loads_them() {
    let out = models(&["verify", "--load"], &demo_models());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("loads ")).count(),
        5,
        "{text}"
    );
}

#[test]
fn models_verify_fails_on_a_tampered_or_missing_file() {
    let copy = copy_of_demo_models();
    let dx = copy.path().join("dx-exposure/1.0.0/model.onnx");
    let mut bytes = std::fs::read(&dx).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&dx, bytes).unwrap();
    std::fs::remove_file(copy.path().join("ct-hyperdensity/1.0.0/model.onnx")).unwrap();

    let out = models(&["verify"], copy.path());
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mismatch   dx-exposure@1.0.0"), "{text}");
    assert!(text.contains("missing    ct-hyperdensity@1.0.0"), "{text}");
    assert!(text.contains("ok         ct-hyperdensity@2.0.0"), "{text}");

    let list = models(&["list", "--json"], copy.path());
    assert!(list.status.success(), "list reports, it does not fail");
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let statuses: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["missing", "ok", "mismatch", "ok", "ok"]);
}

#[test]
fn demo_models_regenerate_byte_identically() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/gen-demo-models.py");
    let out = Command::new(python())
        .arg(script)
        .arg("--check")
        .arg("--out")
        .arg(demo_models())
        .output()
        .expect("run the generator");
    assert!(
        out.status.success(),
        "the committed demo models are not what scripts/gen-demo-models.py makes \
         (or onnx/numpy are missing from the test venv: tests/python/requirements.txt):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
