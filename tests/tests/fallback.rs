//! Route fallback chains on the real binary with models that really
//! misbehave (`tests/fixtures/drill-models`): a primary that returns NaN at
//! run time, one that overruns its timeout, a circuit that opens after
//! repeated failures and closes again after a good probe, and the terminal
//! steps `store-only` and `forward-unprocessed`. Every result names the
//! step that produced it and why the steps before it were given up.

use std::path::Path;
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_loadtest::synth::{SeriesSpec, SynthInstance, generate_series};
use gateway_e2e::peers::{
    StoreScp, free_port, models_with_drills, pipeline_config_with_routes, received,
};
use gateway_e2e::{EXPLICIT_VR_LE, TestGateway, c_store_all, dcmtk, repo_models_dir};
use serde_json::Value;

const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A head CT with tissue in it (drill-nan returns NaN on it).
fn ct_head(instances: usize, seed: u64) -> Vec<SynthInstance> {
    let mut spec = SeriesSpec::ct_head(instances, seed);
    spec.rows = 128;
    spec.columns = 128;
    spec.hyperdense_lesion = true;
    generate_series(&spec)
}

/// A CT series of nothing but air (-1024 HU): drill-nan answers it.
fn ct_air(instances: usize, seed: u64) -> Vec<SynthInstance> {
    let mut series = ct_head(instances, seed);
    for instance in &mut series {
        let zeros = vec![0u8; 128 * 128 * 2];
        instance.dataset.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(zeros),
        ));
    }
    series
}

/// A CT head route whose primary is `model`, with `more` keys.
fn ct_route(model: &str, more: &str) -> String {
    format!(
        r#"
[[route]]
name = "ct"
model = "{model}"
level = "series"
{more}
[route.match]
modality = ["CT"]
"#
    )
}

struct Setup {
    gw: TestGateway,
    token: String,
    _models: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

fn start(routes: &str, pipeline_keys: &str, extra: &str) -> Setup {
    let models = models_with_drills();
    let dir = tempfile::tempdir().unwrap();
    let config =
        pipeline_config_with_routes(dir.path(), models.path(), routes, pipeline_keys, extra);
    let gw = TestGateway::start_with_config(config);
    let token = gw.create_token("demo", "read", "");
    Setup {
        gw,
        token,
        _models: models,
        _dir: dir,
    }
}

async fn send_and_wait(setup: &Setup, series: &[SynthInstance]) -> Value {
    c_store_all(setup.gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, series).await;
    let results = setup
        .gw
        .wait_for_results(
            &setup.token,
            &series[0].study_instance_uid,
            1,
            RESULT_TIMEOUT,
        )
        .await;
    assert_eq!(results.len(), 1, "{results:?}");
    results[0].clone()
}

fn manifest_sha256(dir: &Path, model: &str, version: &str) -> String {
    let path = dir.join(model).join(version).join("manifest.toml");
    let manifest: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    manifest["sha256"].as_str().unwrap().to_string()
}

/// The audit entries with `action`, newest last.
fn audit_details(gw: &TestGateway, action: &str) -> Vec<Value> {
    let conn = gw.index();
    let mut stmt = conn
        .prepare("SELECT detail FROM audit WHERE action = ?1 ORDER BY seq")
        .unwrap();
    stmt.query_map([action], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_primary_failing_at_run_time_is_given_up_and_the_fallback_result_says_so() {
    let setup = start(
        &ct_route("drill-nan@1.0.0", r#"fallback = ["ct-hyperdensity@2.0.0"]"#),
        "",
        "",
    );
    let series = ct_head(2, 7001);
    let result = send_and_wait(&setup, &series).await;

    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["step"], "fallback", "{result}");
    // Planned, and what actually served, with its exact hash.
    assert_eq!(result["model"], "drill-nan");
    assert_eq!(result["served_model"], "ct-hyperdensity");
    assert_eq!(result["served_version"], "2.0.0");
    assert_eq!(
        result["model_sha256"].as_str().unwrap(),
        manifest_sha256(&repo_models_dir(), "ct-hyperdensity", "2.0.0")
    );
    let reason = result["step_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("drill-nan@1.0.0: execution_failed")
            && reason.contains("not a finite number"),
        "{reason}"
    );
    // Intended use and limitations are the serving model's.
    assert!(
        result["model_info"]["intended_use"]
            .as_str()
            .unwrap()
            .contains("hyperdense blob"),
        "{result}"
    );
    assert!(
        result["findings"][0]["positive"].as_bool().unwrap(),
        "{result}"
    );

    // The SR itself records the step and the reason.
    let sr_uid = result["result_sop_uid"].as_str().unwrap();
    let (sr_path, _) = setup.gw.indexed(sr_uid).expect("SR stored");
    let dump = dcmtk("dsrdump").arg("+Pl").arg(&sr_path).output().unwrap();
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(text.contains("fallback"), "{text}");
    assert!(text.contains("drill-nan@1.0.0: execution_failed"), "{text}");
    assert!(text.contains("ct-hyperdensity"), "{text}");

    assert_eq!(
        setup.gw.metric(
            "gateway_route_fallbacks_total{reason=\"execution_failed\",route=\"ct\",step=\"primary\"}"
        ),
        1.0
    );
    assert_eq!(
        setup
            .gw
            .metric("gateway_route_fallback_results_total{route=\"ct\",step=\"fallback\"}"),
        1.0
    );
    let audited = audit_details(&setup.gw, "inference.completed");
    let last = audited.last().expect("an inference.completed entry");
    assert_eq!(last["step"], "fallback");
    assert_eq!(last["model"], "ct-hyperdensity");
    assert_eq!(last["planned_model"], "drill-nan");
    assert_eq!(last["given_up"][0]["reason"], "execution_failed");
    assert_eq!(last["result_sop_instance_uid"], sr_uid);
}

#[tokio::test]
async fn a_slow_primary_overruns_its_timeout_and_the_fallback_serves() {
    let setup = start(
        &ct_route(
            "drill-slow@1.0.0",
            // drill-slow needs about 0.8 s per image here; the fallback
            // about 0.1 s, more on a loaded machine, where it also shares
            // the CPU with the overrun drill-slow call (an embedded engine
            // cannot be cancelled mid-call).
            r#"fallback = ["ct-hyperdensity@2.0.0"]
timeout = "400ms""#,
        ),
        "",
        "",
    );
    let result = send_and_wait(&setup, &ct_head(1, 7101)).await;
    assert_eq!(result["step"], "fallback", "{result}");
    assert_eq!(result["served_model"], "ct-hyperdensity", "{result}");
    let reason = result["step_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("drill-slow@1.0.0: timeout (no answer within 400ms)"),
        "{reason}"
    );
    assert_eq!(
        setup.gw.metric(
            "gateway_route_fallbacks_total{reason=\"timeout\",route=\"ct\",step=\"primary\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures_and_a_good_probe_closes_it() {
    let setup = start(
        &ct_route("drill-nan@1.0.0", r#"fallback = ["ct-hyperdensity@2.0.0"]"#),
        "",
        "[pipeline.circuit]\nconsecutive_failures = 2\nopen_for = \"1s\"\n",
    );
    let open = "gateway_circuit_state{engine=\"onnx\",model=\"drill-nan\",state=\"open\",version=\"1.0.0\"}";
    let closed = "gateway_circuit_state{engine=\"onnx\",model=\"drill-nan\",state=\"closed\",version=\"1.0.0\"}";

    for seed in [7201, 7202] {
        let result = send_and_wait(&setup, &ct_head(1, seed)).await;
        assert!(
            result["step_reason"]
                .as_str()
                .unwrap()
                .contains("execution_failed"),
            "{result}"
        );
    }
    assert_eq!(setup.gw.metric_now(open), 1.0, "two failures open it");

    // Open: the primary is not even called.
    let refused = send_and_wait(&setup, &ct_head(1, 7203)).await;
    assert_eq!(refused["step"], "fallback");
    assert!(
        refused["step_reason"]
            .as_str()
            .unwrap()
            .starts_with("drill-nan@1.0.0: circuit_open"),
        "{refused}"
    );

    // After `open_for`, one probe goes through; an image drill-nan can
    // answer closes the circuit and the primary serves again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let probe = send_and_wait(&setup, &ct_air(1, 7204)).await;
    assert_eq!(probe["step"], "primary", "{probe}");
    assert_eq!(probe["served_model"], "drill-nan", "{probe}");
    assert_eq!(setup.gw.metric_now(closed), 1.0);
    assert_eq!(setup.gw.metric_now(open), 0.0);
    assert_eq!(
        setup.gw.metric(
            "gateway_route_fallbacks_total{reason=\"circuit_open\",route=\"ct\",step=\"primary\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn when_every_model_fails_store_only_keeps_the_images_and_records_why() {
    let setup = start(&ct_route("drill-nan@1.0.0", ""), "", "");
    let series = ct_head(2, 7301);
    let result = send_and_wait(&setup, &series).await;
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["step"], "store-only", "{result}");
    assert!(result["result_sop_uid"].is_null(), "no SR: {result}");
    assert!(result["findings"].is_null(), "{result}");
    assert!(
        result["step_reason"]
            .as_str()
            .unwrap()
            .starts_with("drill-nan@1.0.0: execution_failed"),
        "{result}"
    );
    for instance in &series {
        assert!(setup.gw.indexed(&instance.sop_instance_uid).is_some());
    }
    let audited = audit_details(&setup.gw, "inference.not_performed");
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["step"], "store-only");
    assert_eq!(audited[0]["source_instances"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn forward_unprocessed_sends_the_source_images_to_pacs() {
    let port = free_port();
    let pacs_dir = tempfile::tempdir().unwrap();
    let _pacs = StoreScp::start(port, pacs_dir.path());
    let setup = start(
        &ct_route(
            "drill-nan@1.0.0",
            "fallback = [\"forward-unprocessed\"]\ndestinations = [\"pacs\"]",
        ),
        "",
        &format!(
            "[[destinations]]\nname = \"pacs\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = {port}\n"
        ),
    );
    let series = ct_head(3, 7401);
    let result = send_and_wait(&setup, &series).await;
    assert_eq!(result["step"], "forward-unprocessed", "{result}");

    let files = received(pacs_dir.path(), 3, RESULT_TIMEOUT);
    assert_eq!(files.len(), 3, "{files:?}");
    for file in files {
        let object = dicom_object::open_file(&file).unwrap();
        let uid = object
            .element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string();
        let (stored, _) = setup.gw.indexed(&uid).expect("a source instance");
        let sent_modality = object.element(tags::MODALITY).unwrap().to_str().unwrap();
        assert_eq!(sent_modality.trim(), "CT");
        assert!(stored.exists());
    }
    assert_eq!(
        setup.gw.metric(
            "gateway_route_fallback_results_total{route=\"ct\",step=\"forward-unprocessed\"}"
        ),
        1.0
    );
}
