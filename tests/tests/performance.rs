//! The performance report end to end on the real binary: head CTs from two
//! scanners go through the pipeline; `GET /api/v1/performance` reports them
//! per site × scanner × route × model version to a token that may read the
//! site and nothing to one that may not; `dicom-gateway report performance`
//! prints the same from the data directory.

use std::process::Command;
use std::time::Duration;

use dicom_loadtest::synth::{SeriesSpec, SynthInstance, generate_series};
use gateway_e2e::{EXPLICIT_VR_LE, TestGateway, c_store_all, gateway_binary, pipeline_config};
use serde_json::Value;

const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

fn ct_head(seed: u64, manufacturer: &str, model_name: &str) -> Vec<SynthInstance> {
    let mut spec = SeriesSpec::ct_head(4, seed);
    spec.rows = 128;
    spec.columns = 128;
    spec.manufacturer = manufacturer.into();
    spec.model_name = model_name.into();
    generate_series(&spec)
}

async fn performance(gw: &TestGateway, token: &str, query: &str) -> (u16, Value) {
    let response = gw
        .https_client()
        .get(format!("{}/api/v1/performance{query}", gw.http_base()))
        .bearer_auth(token)
        .send()
        .await
        .expect("performance request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

fn group<'a>(report: &'a Value, scanner: &str) -> &'a Value {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["scanner"] == scanner)
        .unwrap_or_else(|| panic!("no group for {scanner} in {report:#}"))
}

#[tokio::test]
async fn performance_report_per_scanner_for_the_sites_a_token_may_read() {
    let gw = TestGateway::start_with_config(pipeline_config(""));
    let token = gw.create_token("demo", "read", "");
    let siemens = ct_head(601, "SIEMENS", "SOMATOM Force");
    let ge = ct_head(602, "GE MEDICAL SYSTEMS", "Revolution CT");
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &siemens).await;
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &ge).await;
    for series in [&siemens, &ge] {
        gw.wait_for_results(&token, &series[0].study_instance_uid, 1, RESULT_TIMEOUT)
            .await;
    }

    let (status, report) = performance(&gw, &token, "?since=1h").await;
    assert_eq!(status, 200, "{report:#}");
    for scanner in ["siemens_somatom-force", "ge_revolution-ct"] {
        let g = group(&report, scanner);
        assert_eq!(g["site"], "demo");
        assert_eq!(g["route"], "ct-head-hyperdensity");
        assert_eq!(g["model"], "ct-hyperdensity");
        assert_eq!(g["version"], "2.0.0");
        assert_eq!(g["jobs"]["done"], 1, "{g:#}");
        assert_eq!(g["instances"], 4, "{g:#}");
        assert_eq!(g["error_rate"], 0.0);
        assert_eq!(g["fallback_rate"], 0.0);
        assert!(
            g["end_to_end_seconds"]["p50"].as_f64().unwrap() > 0.0,
            "{g:#}"
        );
        let received = report["received"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["scanner"] == scanner)
            .unwrap_or_else(|| panic!("nothing received from {scanner}: {report:#}"));
        assert_eq!(
            (received["site"].as_str(), received["modality"].as_str()),
            (Some("demo"), Some("CT"))
        );
        assert_eq!(received["instances"], 4);
    }
    assert_eq!(report["drift"]["threshold"], 0.2);

    // A token of another site sees nothing of demo, asked or not.
    let other = gw.create_token("elsewhere", "read", "");
    for query in ["?since=1h", "?since=1h&site=demo"] {
        let (status, report) = performance(&gw, &other, query).await;
        assert_eq!(status, 200);
        assert_eq!(
            report["groups"],
            Value::Array(vec![]),
            "{query}: {report:#}"
        );
        assert_eq!(
            report["received"],
            Value::Array(vec![]),
            "{query}: {report:#}"
        );
    }
    let (status, problem) = performance(&gw, &token, "?since=yesterday").await;
    assert_eq!(status, 400, "{problem:#}");
    let unauthenticated = gw
        .https_client()
        .get(format!("{}/api/v1/performance", gw.http_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);

    // The CLI reads the same from the data directory.
    let out = Command::new(gateway_binary())
        .args(["report", "performance", "--since", "1h", "--data-dir"])
        .arg(gw.data_dir())
        .output()
        .expect("run report performance");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "siemens_somatom-force",
        "ge_revolution-ct",
        "ct-head-hyperdensity",
        "ct-hyperdensity@2.0.0",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert_eq!(gw.metric_now("gateway_drift_psi_threshold"), 0.2);
}
