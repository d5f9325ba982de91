//! The standard Python DICOMweb client (dicomweb-client, with pydicom) does
//! STOW, QIDO and WADO against the gateway over HTTPS, trusting the dev CA.

use dicom_loadtest::synth::{SeriesSpec, generate_series};
use gateway_e2e::{TestGateway, write_part10_files};

fn python() -> String {
    std::env::var("GATEWAY_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
        assert!(
            std::path::Path::new(venv).exists(),
            "the Python test peers are missing: run scripts/test.sh, which installs them in .venv"
        );
        venv.to_string()
    })
}

#[test]
fn dicomweb_client_round_trip() {
    let gw = TestGateway::start("");
    let token = gw.create_token("demo", "read,write", "");
    let mut spec = SeriesSpec::ct_head(5, 41);
    spec.rows = 64;
    spec.columns = 64;
    let series = generate_series(&spec);
    let dir = tempfile::tempdir().unwrap();
    write_part10_files(dir.path(), &series);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/dicomweb_roundtrip.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .arg(gw.dicomweb_url())
        .arg(&token)
        .arg(gw.ca_cert())
        .arg(dir.path())
        // requests lets REQUESTS_CA_BUNDLE override session.verify: point it at our CA too.
        .env("REQUESTS_CA_BUNDLE", gw.ca_cert())
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["stored"], 5, "{report}");
    assert_eq!(report["studies"], 1, "{report}");
    assert_eq!(report["studies_by_patient"], 1, "{report}");
    assert_eq!(report["study_related_instances"], 5, "{report}");
    assert_eq!(report["series"], 1, "{report}");
    assert_eq!(report["instances"], 5, "{report}");
    assert_eq!(
        report["retrieved_sop_instance_uid"],
        series[0].sop_instance_uid.as_str(),
        "{report}"
    );
    assert_eq!(report["retrieved_pixels_match"], true, "{report}");
    assert_eq!(
        report["metadata_sop_instance_uid"],
        series[0].sop_instance_uid.as_str(),
        "{report}"
    );
    assert_eq!(report["series_retrieved"], 5, "{report}");
    assert_eq!(report["series_pixels_match"], true, "{report}");
}
