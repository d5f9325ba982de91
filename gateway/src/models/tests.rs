use std::path::{Path, PathBuf};

use super::cli::{render_table, statuses};
use super::*;

/// The committed demo repository at the workspace root.
fn demo_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

const MANIFEST: &str = r#"
name = "tiny"
version = "1.2.3"
task = "classification"
demo = true
clinical_use = "DEMO — NOT FOR CLINICAL USE"
intended_use = "tests"
limitations = ["none worth knowing"]
model_file = "model.onnx"
sha256 = "SHA"

[input]
name = "image"
shape = [1, 3, 8, 8]
dtype = "float32"
per_image = "2d"

[preprocessing]
modality_lut = true
resize = [8, 8]
channels = 3
layout = "nchw"

[preprocessing.window]
source = "fixed"
center = 40
width = 80

[preprocessing.normalisation]
kind = "mean_std"
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]

[[outputs]]
name = "score"
shape = [1, 2]
labels = [{ name = "a", threshold = 0.5 }, { name = "b", threshold = 0.7 }]
"#;

fn manifest_with_sha(sha256: &str) -> String {
    MANIFEST.replace("SHA", sha256)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A repository with one version `tiny/1.2.3` whose file is `bytes`.
fn repository_with(bytes: &[u8], pinned: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tiny/1.2.3");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(MANIFEST_FILE), manifest_with_sha(pinned)).unwrap();
    std::fs::write(dir.join("model.onnx"), bytes).unwrap();
    root
}

#[test]
fn a_complete_manifest_parses_into_typed_values() {
    let m = Manifest::from_toml(&manifest_with_sha(&"a".repeat(64))).unwrap();
    assert_eq!(m.id().to_string(), "tiny@1.2.3");
    assert_eq!(m.input.shape, vec![1, 3, 8, 8]);
    assert_eq!(m.per_image, PerImage::TwoD);
    assert_eq!(
        m.preprocessing.window,
        Window::Fixed {
            center: 40.0,
            width: 80.0
        }
    );
    assert_eq!(m.preprocessing.resize, [8, 8]);
    assert!(matches!(
        m.preprocessing.normalisation,
        Normalisation::MeanStd { .. }
    ));
    assert_eq!(m.outputs[0].labels[1].threshold, 0.7);
}

#[test]
fn unknown_keys_are_refused() {
    let text = manifest_with_sha(&"a".repeat(64)).replace("demo = true", "demo = true\ncolour = 1");
    let err = Manifest::from_toml(&text).unwrap_err();
    assert!(err.to_string().contains("unknown field `colour`"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = manifest_with_sha("not-a-hash")
        .replace("name = \"tiny\"", "name = \"Tiny Model\"")
        .replace("version = \"1.2.3\"", "version = \"1.2\"")
        .replace(
            "clinical_use = \"DEMO — NOT FOR CLINICAL USE\"",
            "clinical_use = \"fine\"",
        )
        .replace("model_file = \"model.onnx\"", "model_file = \"../x.onnx\"")
        .replace("shape = [1, 3, 8, 8]", "shape = [1, 3, 8, 0]")
        .replace("resize = [8, 8]", "resize = [16, 16]")
        .replace("width = 80", "width = 0")
        .replace("mean = [0.5, 0.5, 0.5]", "mean = [0.5]")
        .replace("threshold = 0.7", "threshold = 1.5");
    let problems = Manifest::from_toml(&text).unwrap_err().0;
    let expect = [
        "name:",
        "version:",
        "clinical_use:",
        "model_file:",
        "sha256:",
        "input.shape: dimension 0",
        "preprocessing.resize:",
        "preprocessing.window.width:",
        "preprocessing.normalisation.mean:",
        "outputs[0].labels[1].threshold:",
    ];
    for prefix in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(prefix)),
            "no problem starting {prefix:?} in {problems:#?}"
        );
    }
}

#[test]
fn labels_must_match_the_output_size() {
    let text = manifest_with_sha(&"a".repeat(64)).replace("shape = [1, 2]", "shape = [1, 3]");
    let problems = Manifest::from_toml(&text).unwrap_err().0;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("2 label(s) for an output of 3")),
        "{problems:?}"
    );
}

#[test]
fn versions_compare_numerically() {
    let v = |s: &str| s.parse::<Version>().unwrap();
    assert!(v("1.10.0") > v("1.9.0"));
    assert!(v("2.0.0") > v("1.99.99"));
    for bad in ["1.0", "1.0.0.0", "1.a.0", "01.0.0", "", "1..0"] {
        assert!(bad.parse::<Version>().is_err(), "{bad}");
    }
}

#[test]
fn loading_verifies_the_sha256_and_refuses_a_mismatch() {
    let good = repository_with(b"model bytes", &sha256_hex(b"model bytes"));
    let repo = ModelRepository::open(good.path()).unwrap();
    let entry = &repo.entries()[0];
    assert_eq!(entry.check_file(), FileStatus::Ok);
    assert_eq!(entry.load_verified().unwrap().bytes(), b"model bytes");

    let bad = repository_with(b"tampered bytes", &sha256_hex(b"model bytes"));
    let repo = ModelRepository::open(bad.path()).unwrap();
    let entry = &repo.entries()[0];
    assert!(matches!(entry.check_file(), FileStatus::Mismatch { .. }));
    match entry.load_verified() {
        Err(ModelFileError::Sha256Mismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, sha256_hex(b"model bytes"));
            assert_eq!(actual, sha256_hex(b"tampered bytes"));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }

    std::fs::remove_file(entry.model_path()).unwrap();
    assert_eq!(entry.check_file(), FileStatus::Missing);
    assert!(matches!(
        entry.load_verified(),
        Err(ModelFileError::Missing { .. })
    ));
}

#[test]
fn bad_folders_are_listed_without_hiding_good_ones() {
    let root = repository_with(b"x", &sha256_hex(b"x"));
    // Folder says 9.9.9, manifest says 1.2.3.
    let wrong = root.path().join("tiny/9.9.9");
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::write(
        wrong.join(MANIFEST_FILE),
        manifest_with_sha(&sha256_hex(b"x")),
    )
    .unwrap();
    // No manifest at all.
    std::fs::create_dir_all(root.path().join("other/1.0.0")).unwrap();
    std::fs::write(root.path().join("README.md"), "not a model").unwrap();

    let repo = ModelRepository::open(root.path()).unwrap();
    assert_eq!(repo.entries().len(), 1);
    let invalid: Vec<_> = repo
        .invalid()
        .iter()
        .map(|i| {
            (
                i.dir.strip_prefix(root.path()).unwrap().to_path_buf(),
                i.problems.join("; "),
            )
        })
        .collect();
    assert_eq!(invalid.len(), 2, "{invalid:?}");
    assert!(
        invalid[0].1.contains("cannot read manifest.toml"),
        "{invalid:?}"
    );
    assert!(
        invalid[1].1.contains("does not match its folder name"),
        "{invalid:?}"
    );

    let rows = statuses(&repo);
    let table = render_table(&rows);
    assert!(table.contains("tiny"), "{table}");
    assert_eq!(rows.iter().filter(|r| r.status == "invalid").count(), 2);
}

#[test]
fn an_unreadable_root_is_an_error() {
    assert!(ModelRepository::open("/nonexistent/models").is_err());
}

#[test]
fn the_committed_demo_models_are_valid_and_verified() {
    let repo = ModelRepository::open(demo_models()).unwrap();
    assert!(repo.invalid().is_empty(), "{:#?}", repo.invalid());
    let ids: Vec<String> = repo.entries().iter().map(|e| e.id().to_string()).collect();
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
    for entry in repo.entries() {
        let m = entry.manifest();
        assert!(m.demo, "{}", entry.id());
        assert!(
            m.clinical_use.contains(NOT_FOR_CLINICAL_USE),
            "{}",
            entry.id()
        );
        assert_eq!(entry.check_file(), FileStatus::Ok, "{}", entry.id());
    }
    let latest = repo.latest("ct-hyperdensity").unwrap();
    assert_eq!(latest.manifest().version.to_string(), "2.0.0");
    let total: u64 = repo
        .entries()
        .iter()
        .map(|e| std::fs::metadata(e.model_path()).unwrap().len())
        .sum();
    assert!(total < 50 * 1024 * 1024, "demo models take {total} bytes");
}

#[test]
fn a_dynamic_batch_axis_and_a_triton_section_are_read_and_checked() {
    let sha = "a".repeat(64);
    let dynamic = manifest_with_sha(&sha)
        .replace("shape = [1, 3, 8, 8]", "shape = [-1, 3, 8, 8]")
        .replace("shape = [1, 2]", "shape = [-1, 2]")
        + "\n[triton]\nmodel = \"tiny_trt\"\nversion = \"3\"\n";
    let m = Manifest::from_toml(&dynamic).unwrap();
    assert!(m.dynamic_batch);
    // The shapes of one request: what the pixel pipeline makes.
    assert_eq!(m.input.shape, [1, 3, 8, 8]);
    assert_eq!(m.outputs[0].tensor.shape, [1, 2]);
    assert_eq!(
        m.triton,
        Some(TritonModel {
            model: "tiny_trt".into(),
            version: "3".into()
        })
    );
    let fixed = Manifest::from_toml(&manifest_with_sha(&sha)).unwrap();
    assert!(!fixed.dynamic_batch && fixed.triton.is_none());

    let bad = manifest_with_sha(&sha).replace("shape = [1, 3, 8, 8]", "shape = [-1, 3, 8, 8]")
        + "\n[triton]\nmodel = \"tiny trt\"\nversion = \"latest\"\n";
    let problems = Manifest::from_toml(&bad).unwrap_err().0;
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains("outputs[0].shape: the first axis must be -1"),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("triton.model")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("triton.version")),
        "{problems:#?}"
    );
    let elsewhere =
        manifest_with_sha(&sha).replace("shape = [1, 3, 8, 8]", "shape = [1, -1, 8, 8]");
    assert!(
        Manifest::from_toml(&elsewhere).is_err(),
        "-1 only on the batch axis"
    );
    let unknown =
        manifest_with_sha(&sha) + "\n[triton]\nmodel = \"m\"\nversion = \"1\"\nurl = \"x\"\n";
    assert!(Manifest::from_toml(&unknown).is_err());
}
