//! The pipeline with its models served by a real KServe v2 server over gRPC
//! (`tests/python/kserve_onnx_server.py`: kserve 0.21's servicer, ONNX
//! Runtime underneath): a head CT series gets its SR, and the result names
//! the `triton` engine and the hash declared in the manifest.
//! (The engine's failure modes are tested beside it, in
//! `gateway/src/infer/triton/tests.rs`.)

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dicom_loadtest::synth::{SeriesSpec, generate_series};
use gateway_e2e::{EXPLICIT_VR_LE, TestGateway, c_store_all, pipeline_config, repo_models_dir};

/// The KServe server on a free port; it exits with this process (its
/// standard input closes) or when dropped.
struct KserveServer {
    child: Child,
    url: String,
}

impl KserveServer {
    fn start() -> KserveServer {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = std::env::var_os("GATEWAY_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(".venv/bin/python"));
        let mut child = Command::new(&python)
            .arg(repo.join("tests/python/kserve_onnx_server.py"))
            .args(["--port", "0", "--exit-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (run scripts/test.sh, which installs kserve in .venv)",
                    python.display()
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the KServe server did not start: {line:?}"));
        KserveServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for KserveServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo models, each version served by the KServe server as
/// `<name>-<version>` (version 1). The model files stay beside their
/// manifests, so their hashes are checked at load as well.
fn triton_models() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for name_dir in std::fs::read_dir(repo_models_dir()).unwrap() {
        let name_dir = name_dir.unwrap().path();
        if !name_dir.is_dir() {
            continue;
        }
        let name = name_dir.file_name().unwrap().to_string_lossy().into_owned();
        for version_dir in std::fs::read_dir(&name_dir).unwrap() {
            let version_dir = version_dir.unwrap().path();
            let version = version_dir
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let target = copy.path().join(&name).join(&version);
            std::fs::create_dir_all(&target).unwrap();
            std::fs::copy(version_dir.join("model.onnx"), target.join("model.onnx")).unwrap();
            let manifest = std::fs::read_to_string(version_dir.join("manifest.toml")).unwrap();
            let manifest =
                format!("{manifest}\n[triton]\nmodel = \"{name}-{version}\"\nversion = \"1\"\n");
            std::fs::write(target.join("manifest.toml"), manifest).unwrap();
        }
    }
    copy
}

#[tokio::test]
async fn a_series_routed_to_a_triton_served_model_gets_its_sr_naming_the_engine() {
    let server = KserveServer::start();
    let models = triton_models();
    let config = pipeline_config(&format!(
        "[pipeline.engine]\nkind = \"triton\"\nurl = \"{}\"\ntimeout = \"20s\"\n",
        server.url
    ))
    .replace(
        &repo_models_dir().display().to_string(),
        &models.path().display().to_string(),
    );
    let gw = TestGateway::start_with_config(config);
    let token = gw.create_token("demo", "read", "");

    let mut spec = SeriesSpec::ct_head(6, 701);
    spec.rows = 128;
    spec.columns = 128;
    spec.hyperdense_lesion = true;
    let series = generate_series(&spec);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &series).await;

    let study = &series[0].study_instance_uid;
    let results = gw
        .wait_for_results(&token, study, 1, Duration::from_secs(60))
        .await;
    let result = &results[0];
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["model"], "ct-hyperdensity");
    assert_eq!(result["version"], "2.0.0");
    assert_eq!(result["engine"], "triton", "{result}");
    let manifest: toml::Table =
        std::fs::read_to_string(repo_models_dir().join("ct-hyperdensity/2.0.0/manifest.toml"))
            .unwrap()
            .parse()
            .unwrap();
    assert_eq!(result["model_sha256"].as_str(), manifest["sha256"].as_str());
    let finding = result["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["label"] == "hyperdensity"))
        .unwrap_or_else(|| panic!("no finding in {result}"));
    assert_eq!(finding["positive"], true, "{result}");
}

/// `models/` with only `ct-hyperdensity@2.0.0` served by Triton: the rest
/// (its fallback 1.0.0 among them) run in process.
fn primary_on_triton() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    gateway_e2e::peers::copy_tree(&repo_models_dir(), copy.path());
    let manifest = copy.path().join("ct-hyperdensity/2.0.0/manifest.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("{text}\n[triton]\nmodel = \"ct-hyperdensity-2.0.0\"\nversion = \"1\"\n"),
    )
    .unwrap();
    copy
}

#[tokio::test]
async fn an_unreachable_triton_server_sends_the_series_to_the_in_process_fallback() {
    // Nothing listens here: the primary cannot come up.
    let closed = gateway_e2e::peers::free_port();
    let models = primary_on_triton();
    let config = pipeline_config(&format!(
        "[pipeline.triton]\nurl = \"http://127.0.0.1:{closed}\"\nconnect_timeout = \"500ms\"\ntimeout = \"2s\"\n"
    ))
    .replace(
        &repo_models_dir().display().to_string(),
        &models.path().display().to_string(),
    );
    let gw = TestGateway::start_with_config(config);
    let token = gw.create_token("demo", "read", "");

    let mut spec = SeriesSpec::ct_head(2, 702);
    spec.rows = 128;
    spec.columns = 128;
    let series = generate_series(&spec);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &series).await;
    let results = gw
        .wait_for_results(
            &token,
            &series[0].study_instance_uid,
            1,
            Duration::from_secs(60),
        )
        .await;
    let result = &results[0];
    // The embedded route: 2.0.0 (here on Triton), falling back to 1.0.0.
    assert_eq!(result["step"], "fallback", "{result}");
    assert_eq!(result["served_version"], "1.0.0", "{result}");
    assert_eq!(result["engine"], "onnx", "{result}");
    let why = result["step_reason"].as_str().unwrap();
    assert!(
        why.starts_with("ct-hyperdensity@2.0.0: model_unavailable"),
        "{why}"
    );
}
