//! The SR read by real peers: dcmtk's `dsrdump` (which checks the document
//! structure and the Comprehensive SR relationship constraints) and
//! pydicom. Missing tools fail the test: scripts/test.sh installs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tests::{MODEL_SHA256, STUDY_UID, ct_request};
use super::*;

const DSRDUMP: &str = "/usr/bin/dsrdump";

fn python() -> PathBuf {
    if let Ok(python) = std::env::var("GATEWAY_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "the Python test tools are missing: run scripts/test.sh, which installs them in .venv"
    );
    venv
}

fn write_to_temp(request: &SrRequest) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("result.dcm");
    std::fs::write(&path, write_sr(request).unwrap()).unwrap();
    (dir, path)
}

/// dcmtk 3.6.7's VR checker cannot check UTF-8 values and says so for
/// every ISO_IR 192 data set: a limit of the tool, not a defect of the SR.
const UTF8_CHECKER_NOTICE: &str =
    "W: The VR checker does not support this Specific Character Set: ISO_IR 192";

/// Runs dsrdump on the SR of `request`; returns stdout after checking
/// that it exited 0 and printed no error or warning other than `allowed`
/// (whole lines).
fn dsrdump(request: &SrRequest, allowed: &[&str]) -> String {
    assert!(
        Path::new(DSRDUMP).exists(),
        "{DSRDUMP} is missing: run scripts/test.sh, which installs dcmtk"
    );
    let (_dir, path) = write_to_temp(request);
    let out = Command::new(DSRDUMP)
        .args(["+Pl", "+Pc", "+Pu"])
        .arg(&path)
        .output()
        .expect("run dsrdump");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "dsrdump failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty() && !allowed.contains(&line.trim()))
        .collect();
    assert!(
        complaints.is_empty(),
        "dsrdump reported a problem:\n{stderr}\n{stdout}"
    );
    stdout
}

#[test]
fn dsrdump_reads_the_sr_without_complaint() {
    let request = ct_request();
    let dump = dsrdump(&request, &[]);
    assert!(dump.contains("Comprehensive SR Document"), "{dump}");
    assert!(
        dump.contains("\"2.0.0\""),
        "model version in the tree:\n{dump}"
    );
    assert!(dump.contains(MODEL_SHA256), "{dump}");
    assert!(dump.contains("Imaging Measurement Report"), "{dump}");
    assert!(dump.contains("hyperdensity"), "{dump}");
    for source in &request.sources {
        assert!(dump.contains(&source.sop_instance_uid), "{dump}");
    }
}

#[test]
fn dsrdump_accepts_utf8_values_and_long_labels() {
    let mut request = ct_request();
    request.study.patient_name = Some("Müller^Jürgen=山田^太郎".to_string());
    request.findings[0].label = "intracranial_hyperdensity_region".to_string();
    request
        .algorithm
        .limitations
        .push("Ne pas utiliser chez l'enfant".to_string());
    request.provenance.step_reason = None;
    let dump = dsrdump(&request, &[UTF8_CHECKER_NOTICE]);
    assert!(dump.contains("Müller^Jürgen"), "{dump}");
    assert!(dump.contains("intracranial_hyperdensity_region"), "{dump}");
}

/// pydicom reads the file; a walk of the content tree finds the model's
/// SHA-256 and the decision codes.
#[test]
fn pydicom_reads_the_sr_and_finds_the_model_hash() {
    let request = ct_request();
    let (_dir, path) = write_to_temp(&request);
    let script = r#"
import sys
import pydicom

ds = pydicom.dcmread(sys.argv[1])
assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33", ds.SOPClassUID
assert ds.StudyInstanceUID == sys.argv[2], ds.StudyInstanceUID
assert ds.Modality == "SR"

texts, decisions = [], []
def walk(items):
    for item in items:
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        if item.ValueType == "TEXT":
            texts.append(item.TextValue)
        if name == "Finding present at operating point":
            decisions.append(item.ConceptCodeSequence[0].CodeValue)
        if "ContentSequence" in item:
            walk(item.ContentSequence)
walk(ds.ContentSequence)
assert any(sys.argv[3] in t for t in texts), texts
print("decisions", ",".join(decisions))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&path)
        .arg(STUDY_UID)
        .arg(MODEL_SHA256)
        .output()
        .expect("run python (GATEWAY_TEST_PYTHON); scripts/test.sh installs it");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pydicom check failed:\n{stderr}\n{stdout}"
    );
    assert!(
        stdout.contains("decisions 373066001,373067005"),
        "SCT Yes for the positive finding, No for the negative:\n{stdout}"
    );
}

/// The store's own header path (validator, then the index attributes)
/// reads the SR as it reads any received instance, so QIDO-RS finds it in
/// the source study under the new series.
#[test]
fn the_store_indexes_the_sr_in_the_source_study() {
    let request = ct_request();
    let (_dir, path) = write_to_temp(&request);
    let bytes = std::fs::read(&path).unwrap();
    // (0002,0000) UL, explicit VR: tag 4, VR 2, length 2, then the value.
    let group_length = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as u64;
    let dataset_offset = 144 + group_length;
    let staged = crate::store::StagedFile {
        path,
        sha256: String::new(),
        file_size: bytes.len() as u64,
        dataset_size: bytes.len() as u64 - dataset_offset,
        dataset_offset,
        max_dataset_bytes: bytes.len() as u64,
    };
    let limits = crate::store::validate::Limits {
        max_depth: crate::store::validate::DEFAULT_MAX_DEPTH,
        max_dataset_bytes: bytes.len() as u64,
    };
    let attributes = crate::store::parse_header(&staged, "1.2.840.10008.1.2.1", &limits).unwrap();
    assert_eq!(attributes.sop_class_uid, COMPREHENSIVE_SR_STORAGE);
    assert_eq!(attributes.sop_instance_uid, request.sop_instance_uid);
    assert_eq!(attributes.study_instance_uid, STUDY_UID);
    assert_eq!(attributes.series_instance_uid, request.series_instance_uid);
    assert_eq!(attributes.modality.as_deref(), Some("SR"));
    assert_eq!(attributes.series_number, Some(9001));
    assert_eq!(attributes.patient_id.as_deref(), Some("PAT-0001"));
}
