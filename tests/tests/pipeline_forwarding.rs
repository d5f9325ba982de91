//! Results forwarded to PACS: the SR goes to a real dcmtk `storescp` by
//! C-STORE through the durable queue, survives the destination being down,
//! and a job interrupted by kill -9 completes exactly once after restart.

use std::time::{Duration, Instant};

use dicom_loadtest::synth::{SeriesSpec, SynthInstance, generate_series};
use gateway_e2e::peers::{StoreScp, free_port, received};
use gateway_e2e::{EXPLICIT_VR_LE, TestGateway, c_store_all, dcmtk, pipeline_config};

const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The embedded CT head route, forwarding to `pacs`, plus any `more` routes.
fn routes_with_pacs(more: &str) -> String {
    format!(
        r#"
[[route]]
name = "ct-head-hyperdensity"
model = "ct-hyperdensity@2.0.0"
level = "series"
destinations = ["pacs"]
[route.match]
modality = ["CT"]
body_part_examined = ["HEAD", "BRAIN"]
{more}
"#
    )
}

fn gateway_forwarding_to(port: u16, routes: &str, pipeline_keys: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap().keep();
    let routes_path = dir.join("routes.toml");
    std::fs::write(&routes_path, routes).unwrap();
    let config = pipeline_config(&format!(
        r#"
[[destinations]]
name = "pacs"
ae_title = "PACS"
host = "127.0.0.1"
port = {port}
connect_timeout = "2s"

[egress.retry]
initial_backoff = "200ms"
max_backoff = "500ms"
max_attempts = 100
"#
    ))
    .replace(
        "[pipeline]\nenabled = true\n",
        &format!(
            "[pipeline]\nenabled = true\nroutes_file = \"{}\"\n{pipeline_keys}",
            routes_path.display()
        ),
    );
    TestGateway::start_with_config(config)
}

fn ct_head(instances: usize, seed: u64) -> Vec<SynthInstance> {
    let mut spec = SeriesSpec::ct_head(instances, seed);
    spec.rows = 128;
    spec.columns = 128;
    generate_series(&spec)
}

#[tokio::test]
async fn the_sr_is_forwarded_to_pacs_and_parses_with_dsrdump() {
    let port = free_port();
    let inbox = tempfile::tempdir().unwrap();
    let _pacs = StoreScp::start(port, inbox.path());
    let gw = gateway_forwarding_to(port, &routes_with_pacs(""), "");
    let token = gw.create_token("demo", "read", "");
    let series = ct_head(4, 901);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &series).await;
    let results = gw
        .wait_for_results(&token, &series[0].study_instance_uid, 1, RESULT_TIMEOUT)
        .await;
    let sr_uid = results[0]["result_sop_uid"].as_str().unwrap().to_string();

    let files = received(inbox.path(), 1, RESULT_TIMEOUT);
    assert_eq!(files.len(), 1, "storescp received {files:?}");
    let dump = dcmtk("dsrdump").arg(&files[0]).output().unwrap();
    let stdout = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(stdout.contains("ct-hyperdensity"), "{stdout}");
    let header = dcmtk("dcmdump").arg(&files[0]).output().unwrap();
    assert!(String::from_utf8_lossy(&header.stdout).contains(&sr_uid));
    assert!(
        gw.metric("gateway_egress_deliveries_total{destination=\"pacs\",outcome=\"delivered\"}")
            >= 1.0
    );
}

#[tokio::test]
async fn a_destination_that_is_down_gets_the_result_once_it_is_back() {
    let port = free_port();
    let gw = gateway_forwarding_to(port, &routes_with_pacs(""), "");
    let token = gw.create_token("demo", "read", "");
    let admin = gw.create_token("demo", "read", "*");
    let series = ct_head(2, 902);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &series).await;
    gw.wait_for_results(&token, &series[0].study_instance_uid, 1, RESULT_TIMEOUT)
        .await;
    // Nobody listens yet: attempts fail and are retried.
    let deadline = Instant::now() + RESULT_TIMEOUT;
    while gw.metric_now("gateway_egress_deliveries_total{destination=\"pacs\",outcome=\"retry\"}")
        < 2.0
    {
        assert!(Instant::now() < deadline, "no retries; log:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pending: serde_json::Value = gw
        .https_client()
        .get(format!(
            "{}/api/v1/deliveries?state=pending",
            gw.http_base()
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        pending["deliveries"].as_array().unwrap().len(),
        1,
        "{pending}"
    );

    let inbox = tempfile::tempdir().unwrap();
    let _pacs = StoreScp::start(port, inbox.path());
    let files = received(inbox.path(), 1, RESULT_TIMEOUT);
    assert_eq!(files.len(), 1, "log:\n{}", gw.log());
    let delivered: serde_json::Value = gw
        .https_client()
        .get(format!(
            "{}/api/v1/deliveries?state=delivered",
            gw.http_base()
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        delivered["deliveries"].as_array().unwrap().len(),
        1,
        "{delivered}"
    );
    // A token limited to its own site cannot see the cross-site queue.
    let forbidden = gw
        .https_client()
        .get(format!("{}/api/v1/deliveries", gw.http_base()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
}

#[tokio::test]
async fn jobs_interrupted_by_kill_complete_exactly_once_after_restart() {
    // The CNN, per instance, on one worker: slow enough that a kill lands
    // with jobs done, one running and others queued.
    let routes = r#"
[[route]]
name = "dx-cnn"
model = "resnet18-demo@1.0.0"
level = "instance"
destinations = []
[route.match]
modality = ["DX"]
"#;
    let port = free_port();
    let mut gw = gateway_forwarding_to(port, routes, "workers = 1\n");
    let token = gw.create_token("demo", "read", "");
    let mut spec = SeriesSpec::dx_chest(12, 903);
    spec.rows = 256;
    spec.columns = 256;
    let series = generate_series(&spec);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &series).await;
    let study = series[0].study_instance_uid.clone();

    // Wait for the first result, then kill -9 mid-queue.
    let done = |conn: &rusqlite::Connection, state: &str| -> i64 {
        conn.query_row("SELECT COUNT(*) FROM jobs WHERE state = ?1", [state], |r| {
            r.get(0)
        })
        .unwrap_or(0)
    };
    let deadline = Instant::now() + RESULT_TIMEOUT;
    loop {
        let conn = gw.index();
        if done(&conn, "done") >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no job finished; log:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.kill_hard();
    let unfinished = {
        let conn = gw.index();
        done(&conn, "queued") + done(&conn, "running")
    };
    assert!(unfinished > 0, "every job finished before the kill");

    gw.restart();
    let results = gw
        .wait_for_results(&token, &study, 12, RESULT_TIMEOUT)
        .await;
    assert_eq!(results.len(), 12);
    assert!(results.iter().all(|r| r["state"] == "done"), "{results:?}");
    let conn = gw.index();
    let srs: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM instances WHERE study_instance_uid = ?1 AND modality = 'SR'",
            [&study],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(srs, 12, "one SR per instance, none twice");
    let completions: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE action = 'inference.completed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(completions, 12, "each job completed (and audited) once");
}
