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
    /// Starts the server with `extra` arguments (`--slow`, `--not-ready`).
    fn start(extra: &[&str]) -> KserveServer {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = std::env::var_os("GATEWAY_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(".venv/bin/python"));
        let mut child = Command::new(&python)
            .arg(repo.join("tests/python/kserve_onnx_server.py"))
            .args(["--port", "0", "--exit-on-stdin-eof"])
            .args(extra)
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
        self.kill();
    }
}

impl KserveServer {
    /// Stops the server now, as a crashed or drained Triton node would.
    fn kill(&mut self) {
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
    let server = KserveServer::start(&[]);
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

/// `models/` with only `ct-hyperdensity@2.0.0` served by Triton, as the
/// server's model `served`: the rest (its fallback 1.0.0 among them) run
/// in process.
fn primary_on_triton(served: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    gateway_e2e::peers::copy_tree(&repo_models_dir(), copy.path());
    let manifest = copy.path().join("ct-hyperdensity/2.0.0/manifest.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("{text}\n[triton]\nmodel = \"{served}\"\nversion = \"1\"\n"),
    )
    .unwrap();
    copy
}

/// The pipeline config with `ct-hyperdensity@2.0.0` on the Triton server
/// at `url` (`[pipeline.triton]`, then `triton`), everything else in
/// process, and models health-checked every second.
fn config_with_primary_on_triton(models: &Path, url: &str, triton: &str) -> String {
    pipeline_config(&format!("[pipeline.triton]\nurl = \"{url}\"\n{triton}"))
        .replace(
            &repo_models_dir().display().to_string(),
            &models.display().to_string(),
        )
        .replace(
            "stable_time = \"300ms\"",
            "stable_time = \"300ms\"\nhealth_interval = \"1s\"",
        )
}

/// A small head CT series (128² so it is quick), stored, and its result.
async fn send_head_ct(gw: &TestGateway, seed: u64) -> serde_json::Value {
    let token = gw.create_token("demo", "read", "");
    let mut spec = SeriesSpec::ct_head(2, seed);
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
    results[0].clone()
}

const CT_ROUTE: &str = "ct-head-hyperdensity";

/// The CT route as `GET /v1/routes` shows it to a viewer.
async fn ct_route(gw: &TestGateway, token: &str) -> serde_json::Value {
    let (status, body) = gw.admin_get(Some(token), "/routes").await;
    assert_eq!(status, 200, "{body}");
    body["routes"]
        .as_array()
        .and_then(|routes| routes.iter().find(|r| r["name"] == CT_ROUTE))
        .cloned()
        .unwrap_or_else(|| panic!("no route {CT_ROUTE} in {body}"))
}

#[tokio::test]
async fn an_unreachable_triton_server_sends_the_series_to_the_in_process_fallback() {
    // Nothing listens here: the primary cannot come up.
    let closed = gateway_e2e::peers::free_port();
    let models = primary_on_triton("ct-hyperdensity-2.0.0");
    let gw = TestGateway::start_with_config(config_with_primary_on_triton(
        models.path(),
        &format!("http://127.0.0.1:{closed}"),
        "connect_timeout = \"500ms\"\ntimeout = \"2s\"\n",
    ));
    let result = send_head_ct(&gw, 702).await;
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

#[tokio::test]
async fn a_model_the_server_says_is_not_ready_is_reported_by_its_route_and_skipped() {
    let server = KserveServer::start(&["--not-ready", "ct-hyperdensity-2.0.0"]);
    let models = primary_on_triton("not-ready-ct-hyperdensity-2.0.0");
    let gw = TestGateway::start_with_config(config_with_primary_on_triton(
        models.path(),
        &server.url,
        "timeout = \"5s\"\n",
    ));
    let result = send_head_ct(&gw, 703).await;
    assert_eq!(result["step"], "fallback", "{result}");
    assert_eq!(result["served_version"], "1.0.0", "{result}");
    let why = result["step_reason"].as_str().unwrap();
    assert!(
        why.starts_with("ct-hyperdensity@2.0.0: model_unavailable") && why.contains("not ready"),
        "{why}"
    );

    // The operator sees why before opening a single result.
    let viewer = gw.create_admin_token("vera", "viewer");
    let route = ct_route(&gw, &viewer).await;
    assert_eq!(route["health"], "degraded", "{route}");
    let primary = &route["chain"][0];
    assert_eq!(primary["model"], "ct-hyperdensity@2.0.0", "{route}");
    assert_eq!(primary["health"]["state"], "unavailable", "{route}");
    assert!(
        primary["health"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not ready")),
        "{route}"
    );
    assert_eq!(route["chain"][1]["health"]["state"], "ready", "{route}");
    let listed = gw.operator_cli(&viewer, &["routes", "list"]);
    let table = String::from_utf8_lossy(&listed.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with(CT_ROUTE))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("degraded"), "{table}");
}

#[tokio::test]
async fn a_slow_triton_server_runs_out_the_attempt_timeout_and_the_series_gets_the_fallback() {
    // Two seconds per call: the load's trial inference fits in the Triton
    // deadline, a job's does not fit in the route's one-second attempt.
    let server = KserveServer::start(&["--slow", "ct-hyperdensity-2.0.0=2"]);
    let models = primary_on_triton("slow-ct-hyperdensity-2.0.0");
    let routes =
        include_str!("../../config/routes.toml").replace("timeout = \"30s\"", "timeout = \"1s\"");
    let routes_dir = tempfile::tempdir().unwrap();
    let config = gateway_e2e::peers::pipeline_config_with_routes(
        routes_dir.path(),
        models.path(),
        &routes,
        "",
        &format!(
            "[pipeline.triton]\nurl = \"{}\"\ntimeout = \"10s\"\n",
            server.url
        ),
    );
    let gw = TestGateway::start_with_config(config);
    let result = send_head_ct(&gw, 704).await;
    assert_eq!(result["step"], "fallback", "{result}");
    assert_eq!(result["served_version"], "1.0.0", "{result}");
    assert_eq!(result["engine"], "onnx", "{result}");
    let why = result["step_reason"].as_str().unwrap();
    assert_eq!(why, "ct-hyperdensity@2.0.0: timeout (no answer within 1s)");
    assert_eq!(
        gw.metric(
            "gateway_route_fallbacks_total{reason=\"timeout\",route=\"ct-head-hyperdensity\",step=\"primary\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_server_lost_after_load_fails_its_probes_and_opens_the_circuit_before_a_series_pays() {
    let mut server = KserveServer::start(&[]);
    let models = primary_on_triton("ct-hyperdensity-2.0.0");
    let gw = TestGateway::start_with_config(config_with_primary_on_triton(
        models.path(),
        &server.url,
        "connect_timeout = \"500ms\"\ntimeout = \"5s\"\n\n[pipeline.circuit]\nconsecutive_failures = 2\nopen_for = \"10m\"\n",
    ));
    let served = send_head_ct(&gw, 705).await;
    assert_eq!(served["step"], "primary", "{served}");
    assert_eq!(served["engine"], "triton", "{served}");
    let ready =
        "gateway_model_ready{engine=\"triton\",model=\"ct-hyperdensity\",version=\"2.0.0\"}";
    assert_eq!(gw.metric(ready), 1.0);

    server.kill();
    // Probes run every second; two failures open the circuit.
    let viewer = gw.create_admin_token("vera", "viewer");
    let started = std::time::Instant::now();
    let route = loop {
        let route = ct_route(&gw, &viewer).await;
        if route["chain"][0]["circuit"] == "open" {
            break route;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the circuit never opened: {route}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let primary = &route["chain"][0];
    assert_eq!(primary["health"]["state"], "not_ready", "{route}");
    assert!(primary["health"]["detail"].is_string(), "{route}");
    assert_eq!(route["health"], "degraded", "{route}");
    assert_eq!(gw.metric_now(ready), 0.0);

    // The next series is refused at once and served by the fallback.
    let result = send_head_ct(&gw, 706).await;
    assert_eq!(result["step"], "fallback", "{result}");
    assert_eq!(result["served_version"], "1.0.0", "{result}");
    let why = result["step_reason"].as_str().unwrap();
    assert!(
        why.starts_with("ct-hyperdensity@2.0.0: circuit_open"),
        "{why}"
    );
}
