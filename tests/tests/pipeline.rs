//! The inference pipeline end to end on the real binary: C-STORE a series,
//! the embedded routes pick the demo model, a Comprehensive SR lands in the
//! same study (QIDO-RS finds it, dcmtk's dsrdump and pydicom parse it), and
//! the results API names the exact model version and hash.

use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_loadtest::synth::{SeriesSpec, SynthInstance, generate_series};
use gateway_e2e::{
    EXPLICIT_VR_LE, TestGateway, c_store_all, dcmtk, pipeline_config, repo_models_dir,
};
use serde_json::Value;

const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A head CT small enough to be quick, with or without the hyperdense blob.
fn ct_head(instances: usize, seed: u64, lesion: bool) -> Vec<SynthInstance> {
    let mut spec = SeriesSpec::ct_head(instances, seed);
    spec.rows = 128;
    spec.columns = 128;
    spec.hyperdense_lesion = lesion;
    generate_series(&spec)
}

fn manifest_sha256(model: &str, version: &str) -> String {
    let path = repo_models_dir()
        .join(model)
        .join(version)
        .join("manifest.toml");
    let manifest: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    manifest["sha256"].as_str().unwrap().to_string()
}

fn hyperdensity(result: &Value) -> (f64, bool) {
    let finding = result["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["label"] == "hyperdensity"))
        .unwrap_or_else(|| panic!("no hyperdensity finding in {result}"));
    (
        finding["score"].as_f64().unwrap(),
        finding["positive"].as_bool().unwrap(),
    )
}

#[tokio::test]
async fn ct_head_series_gets_an_sr_naming_the_model_and_the_finding_follows_the_pixels() {
    let gw = TestGateway::start_with_config(pipeline_config(""));
    let token = gw.create_token("demo", "read", "");
    let with_blob = ct_head(8, 501, true);
    let without_blob = ct_head(8, 502, false);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &with_blob).await;
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &without_blob).await;

    let study_blob = &with_blob[0].study_instance_uid;
    let study_clear = &without_blob[0].study_instance_uid;
    let positive = gw
        .wait_for_results(&token, study_blob, 1, RESULT_TIMEOUT)
        .await;
    let negative = gw
        .wait_for_results(&token, study_clear, 1, RESULT_TIMEOUT)
        .await;
    assert_eq!(positive.len(), 1, "{positive:?}");
    let result = &positive[0];
    assert_eq!(result["state"], "done", "{result}");
    assert_eq!(result["route"], "ct-head-hyperdensity");
    assert_eq!(result["model"], "ct-hyperdensity");
    assert_eq!(result["version"], "2.0.0");
    assert_eq!(result["engine"], "onnx");
    assert_eq!(result["step"], "primary");
    assert_eq!(
        result["model_sha256"].as_str().unwrap(),
        manifest_sha256("ct-hyperdensity", "2.0.0")
    );
    assert_eq!(result["model_info"]["demo"], true);
    let (blob_score, blob_positive) = hyperdensity(result);
    let (clear_score, clear_positive) = hyperdensity(&negative[0]);
    assert!(
        blob_positive && !clear_positive,
        "blob {blob_score} vs clear {clear_score}"
    );
    assert!(blob_score > clear_score);

    // The SR is in the same study, found by QIDO-RS as an SR series…
    let client = gw.https_client();
    let series: Vec<Value> = client
        .get(format!(
            "{}/studies/{study_blob}/series?Modality=SR",
            gw.dicomweb_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(
        series[0]["0020000E"]["Value"][0].as_str(),
        result["result_series_uid"].as_str()
    );

    // …and retrieved by WADO-RS, it parses with dsrdump and names the model.
    let url = format!(
        "https://localhost:{}{}",
        gw.http.unwrap().port(),
        result["retrieve_url"].as_str().unwrap()
    );
    let body = client
        .get(url)
        .bearer_auth(&token)
        .header(
            "Accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        )
        .send()
        .await
        .unwrap();
    assert!(body.status().is_success(), "{}", body.status());
    let content_type = body.headers()["content-type"].to_str().unwrap().to_string();
    let bytes = body.bytes().await.unwrap();
    let part = first_multipart_part(&content_type, &bytes);
    let dir = tempfile::tempdir().unwrap();
    let sr_path = dir.path().join("result.dcm");
    std::fs::write(&sr_path, part).unwrap();
    let dump = dcmtk("dsrdump").arg("+Pl").arg(&sr_path).output().unwrap();
    let stdout = String::from_utf8_lossy(&dump.stdout);
    let stderr = String::from_utf8_lossy(&dump.stderr);
    assert!(dump.status.success(), "dsrdump failed: {stderr}");
    assert!(!stderr.contains("Error"), "{stderr}");
    assert!(stdout.contains("2.0.0"), "{stdout}");
    assert!(
        stdout.contains(&manifest_sha256("ct-hyperdensity", "2.0.0")),
        "{stdout}"
    );

    // pydicom reads it too.
    let python =
        std::env::var("GATEWAY_TEST_PYTHON").expect("GATEWAY_TEST_PYTHON (run scripts/test.sh)");
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg("import sys, pydicom; d = pydicom.dcmread(sys.argv[1]); print(d.SOPClassUID, d.Modality, d.StudyInstanceUID)")
        .arg(&sr_path)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("1.2.840.10008.5.1.4.1.1.88.33 SR"),
        "{printed}"
    );
    assert!(printed.contains(study_blob.as_str()), "{printed}");

    assert!(
        gw.metric("gateway_pipeline_jobs_total{outcome=\"done\",route=\"ct-head-hyperdensity\"}")
            >= 2.0
    );
    assert!(
        gw.metric(
            "gateway_results_findings_total{decision=\"positive\",label=\"hyperdensity\",model=\"ct-hyperdensity\",route=\"ct-head-hyperdensity\",version=\"2.0.0\"}"
        ) >= 1.0
    );
}

/// The first part of a multipart/related body.
fn first_multipart_part<'a>(content_type: &str, body: &'a [u8]) -> &'a [u8] {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text_start = find(body, delimiter.as_bytes()).expect("first boundary") + delimiter.len();
    let headers_end =
        find(&body[text_start..], b"\r\n\r\n").expect("part headers") + text_start + 4;
    let end = find(&body[headers_end..], format!("\r\n{delimiter}").as_bytes())
        .expect("closing boundary")
        + headers_end;
    &body[headers_end..end]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn a_series_no_route_matches_is_stored_only_and_counted() {
    let gw = TestGateway::start_with_config(pipeline_config(""));
    let token = gw.create_token("demo", "read", "");
    let mut spec = SeriesSpec::mr_brain(3, 601);
    spec.rows = 64;
    spec.columns = 64;
    let mr = generate_series(&spec);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &mr).await;
    assert_eq!(
        gw.metric("gateway_route_unrouted_series_total{modality=\"MR\",site=\"demo\"}"),
        1.0
    );
    let results = gw
        .wait_for_results(&token, &mr[0].study_instance_uid, 0, RESULT_TIMEOUT)
        .await;
    assert!(results.is_empty(), "{results:?}");
    assert_eq!(gw.indexed_count(), 3, "nothing but the MR series is stored");
}

#[tokio::test]
async fn an_image_that_cannot_be_decoded_fails_its_job_with_a_recorded_error() {
    let gw = TestGateway::start_with_config(pipeline_config(""));
    let token = gw.create_token("demo", "read", "");
    // Well-formed DICOM (it is stored), but Rows × Columns promise more
    // pixels than Pixel Data holds: the pixel pipeline must refuse it.
    let mut broken = ct_head(1, 701, true);
    broken[0].dataset.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(vec![0u16; 100].into()),
    ));
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &broken).await;
    let results = gw
        .wait_for_results(&token, &broken[0].study_instance_uid, 1, RESULT_TIMEOUT)
        .await;
    assert_eq!(results[0]["state"], "failed", "{results:?}");
    assert_eq!(results[0]["error_kind"], "bad_image", "{results:?}");
    assert!(
        results[0]["error"].as_str().unwrap().contains("pixel data"),
        "{results:?}"
    );
    assert!(results[0]["result_sop_uid"].is_null());

    // The gateway is healthy: a good series still gets its result.
    let good = ct_head(4, 702, true);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &good).await;
    let results = gw
        .wait_for_results(&token, &good[0].study_instance_uid, 1, RESULT_TIMEOUT)
        .await;
    assert_eq!(results[0]["state"], "done", "{results:?}");
    assert_eq!(
        gw.metric("gateway_pipeline_jobs_total{outcome=\"failed\",route=\"ct-head-hyperdensity\"}"),
        1.0
    );
}

#[tokio::test]
async fn results_of_another_sites_study_look_like_no_study() {
    let gw = TestGateway::start_with_config(pipeline_config(
        "[[sites]]\nname = \"north\"\nae_titles = [\"NORTH-SCU\"]\nallowed_peers = [\"127.0.0.0/8\"]\n",
    ));
    let series = ct_head(2, 801, true);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &series).await;
    let demo = gw.create_token("demo", "read", "");
    gw.wait_for_results(&demo, &series[0].study_instance_uid, 1, RESULT_TIMEOUT)
        .await;
    let north = gw.create_token("north", "read", "");
    let client = gw.https_client();
    let base = gw.http_base();
    let url = format!(
        "{base}/api/v1/studies/{}/results",
        series[0].study_instance_uid
    );
    let other = client.get(&url).bearer_auth(&north).send().await.unwrap();
    assert_eq!(other.status(), 404);
    let unknown = client
        .get(format!("{base}/api/v1/studies/1.2.3.4.5/results"))
        .bearer_auth(&demo)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let bad = client
        .get(format!("{base}/api/v1/studies/not-a-uid/results"))
        .bearer_auth(&demo)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[test]
fn routes_test_names_the_route_a_file_takes_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let ct = dir.path().join("ct.dcm");
    std::fs::write(&ct, ct_head(1, 1001, true)[0].to_part10().unwrap()).unwrap();
    let mut spec = SeriesSpec::mr_brain(1, 1002);
    spec.rows = 32;
    spec.columns = 32;
    let mr = dir.path().join("mr.dcm");
    std::fs::write(&mr, generate_series(&spec)[0].to_part10().unwrap()).unwrap();
    let out = std::process::Command::new(gateway_e2e::gateway_binary())
        .args(["routes", "test"])
        .arg(&ct)
        .arg(&mr)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ct-head-hyperdensity"), "{text}");
    assert!(text.contains("BodyPartExamined HEAD matches"), "{text}");
    assert!(text.contains("Modality MR does not match"), "{text}");
}

#[tokio::test]
async fn an_edited_routes_file_applies_without_a_restart_and_a_bad_edit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    let exposure_only = "[[route]]\nname = \"radiograph-exposure\"\nmodel = \"dx-exposure@1.0.0\"\nlevel = \"instance\"\n[route.match]\nmodality = [\"CR\", \"DX\"]\n";
    std::fs::write(&routes, exposure_only).unwrap();
    let config = pipeline_config("").replace(
        "[pipeline]\nenabled = true\n",
        &format!(
            "[pipeline]\nenabled = true\nroutes_file = \"{}\"\nroutes_reload_interval = \"100ms\"\n",
            routes.display()
        ),
    );
    let gw = TestGateway::start_with_config(config);
    let token = gw.create_token("demo", "read", "");
    let first = ct_head(2, 1101, true);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &first).await;
    assert_eq!(
        gw.metric("gateway_route_unrouted_series_total{modality=\"CT\",site=\"demo\"}"),
        1.0
    );

    // The operator adds the CT head route; the next series takes it.
    let with_ct = format!(
        "{exposure_only}\n[[route]]\nname = \"ct-head-hyperdensity\"\nmodel = \"ct-hyperdensity@1.0.0\"\nlevel = \"series\"\n[route.match]\nmodality = [\"CT\"]\n"
    );
    std::fs::write(dir.path().join("routes.tmp"), with_ct).unwrap();
    std::fs::rename(dir.path().join("routes.tmp"), &routes).unwrap();
    assert_eq!(
        gw.metric("gateway_route_reloads_total{outcome=\"reloaded\"}"),
        1.0
    );
    let second = ct_head(2, 1102, true);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &second).await;
    let results = gw
        .wait_for_results(&token, &second[0].study_instance_uid, 1, RESULT_TIMEOUT)
        .await;
    assert_eq!(results[0]["version"], "1.0.0", "{results:?}");

    // A broken edit (unknown model) is refused; the last good rules serve on.
    std::fs::write(
        dir.path().join("routes.tmp"),
        "[[route]]\nname = \"ct\"\nmodel = \"no-such-model@9.9.9\"\nlevel = \"series\"\n",
    )
    .unwrap();
    std::fs::rename(dir.path().join("routes.tmp"), &routes).unwrap();
    assert_eq!(
        gw.metric("gateway_route_reloads_total{outcome=\"rejected\"}"),
        1.0
    );
    let third = ct_head(2, 1103, true);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &third).await;
    let results = gw
        .wait_for_results(&token, &third[0].study_instance_uid, 1, RESULT_TIMEOUT)
        .await;
    assert_eq!(results[0]["route"], "ct-head-hyperdensity");
    assert!(gw.log().contains("no-such-model"), "the refusal says why");
}
