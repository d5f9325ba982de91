//! Unit tests: the SR parses back with dicom-object and says what the
//! request said; bad requests are refused; derived UIDs are valid.

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use proptest::prelude::*;

use super::*;
use crate::store::uid::validate_uid;

pub(super) const STUDY_UID: &str = "1.2.826.0.1.3680043.8.498.1";
pub(super) const SOURCE_SERIES_UID: &str = "1.2.826.0.1.3680043.8.498.1.2";
pub(super) const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub(super) const MODEL_SHA256: &str =
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const ROOT: &str = "1.2.826.0.1.3680043.10.1234";

/// A 3-instance CT series, two findings: one above, one below threshold.
pub(super) fn ct_request() -> SrRequest {
    let sources = (1..=3)
        .map(|n| SourceInstance {
            sop_class_uid: CT_IMAGE_STORAGE.to_string(),
            sop_instance_uid: format!("{SOURCE_SERIES_UID}.{n}"),
            series_instance_uid: SOURCE_SERIES_UID.to_string(),
        })
        .collect();
    SrRequest {
        study: StudyContext {
            study_instance_uid: STUDY_UID.to_string(),
            patient_name: Some("Doe^Jane".to_string()),
            patient_id: Some("PAT-0001".to_string()),
            patient_birth_date: Some("19700101".to_string()),
            patient_sex: Some("F".to_string()),
            study_date: Some("20240131".to_string()),
            study_time: Some("101500".to_string()),
            accession_number: Some("ACC42".to_string()),
            study_id: Some("S1".to_string()),
            referring_physician_name: None,
            study_description: Some("CT head".to_string()),
        },
        sources,
        algorithm: Algorithm {
            name: "ct-hyperdensity".to_string(),
            version: "2.0.0".to_string(),
            sha256: MODEL_SHA256.to_string(),
            engine: "onnx".to_string(),
            demo: true,
            clinical_use: "Not for clinical use: demonstration model".to_string(),
            intended_use: "Flags hyperdense regions in non-contrast head CT".to_string(),
            limitations: vec![
                "Trained on synthetic data".to_string(),
                "Adults only".to_string(),
            ],
        },
        provenance: ResultProvenance {
            route: "ct-head".to_string(),
            step: "primary".to_string(),
            step_reason: Some("route matched modality CT".to_string()),
        },
        findings: vec![
            Finding {
                label: "hyperdensity".to_string(),
                score: 0.87,
                threshold: 0.5,
                positive: true,
            },
            Finding {
                label: "midline_shift".to_string(),
                score: 0.125,
                threshold: 0.4,
                positive: false,
            },
        ],
        series_instance_uid: derived_uid(ROOT, &["series", STUDY_UID, "ct-hyperdensity"]),
        sop_instance_uid: derived_uid(ROOT, &["sop", STUDY_UID, "ct-hyperdensity"]),
        series_number: 9001,
        series_description: "AI result: ct-hyperdensity 2.0.0".to_string(),
        content_date: "20240131".to_string(),
        content_time: "103000".to_string(),
        manufacturer: "DICOM Inference Gateway".to_string(),
        software_version: "0.1.0".to_string(),
        station_ae_title: "DICOMGW".to_string(),
    }
}

pub(super) fn parse(bytes: &[u8]) -> DefaultDicomObject {
    assert_eq!(&bytes[128..132], b"DICM", "part 10 preamble and magic");
    dicom_object::from_reader(&bytes[128..]).expect("the sr parses back")
}

fn string(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element(tag)
        .unwrap_or_else(|_| panic!("{tag} is present"))
        .to_str()
        .expect("a string value")
        .trim_end_matches(['\0', ' '])
        .to_string()
}

fn items(obj: &InMemDicomObject, tag: dicom_core::Tag) -> &[InMemDicomObject] {
    obj.element(tag)
        .unwrap_or_else(|_| panic!("{tag} is present"))
        .items()
        .expect("a sequence")
}

/// One content item, flattened: concept meaning, value type, value.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    pub parent: String,
    pub concept: String,
    pub value_type: String,
    pub value: String,
}

fn concept_meaning(item: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    item.get(tag)
        .and_then(|e| e.items())
        .and_then(|codes| codes.first())
        .map(|code| string(code, tags::CODE_MEANING))
        .unwrap_or_default()
}

pub(super) fn walk(obj: &InMemDicomObject) -> Vec<Node> {
    let mut nodes = Vec::new();
    walk_into(obj, &mut nodes);
    nodes
}

fn walk_into(parent: &InMemDicomObject, nodes: &mut Vec<Node>) {
    let parent_concept = concept_meaning(parent, tags::CONCEPT_NAME_CODE_SEQUENCE);
    let Some(children) = parent.get(tags::CONTENT_SEQUENCE).and_then(|e| e.items()) else {
        return;
    };
    for child in children {
        let value_type = string(child, tags::VALUE_TYPE);
        let value = match value_type.as_str() {
            "TEXT" => string(child, tags::TEXT_VALUE),
            "CODE" => concept_meaning(child, tags::CONCEPT_CODE_SEQUENCE),
            "UIDREF" => string(child, tags::UID),
            "NUM" => string(
                &items(child, tags::MEASURED_VALUE_SEQUENCE)[0],
                tags::NUMERIC_VALUE,
            ),
            "IMAGE" => string(
                &items(child, tags::REFERENCED_SOP_SEQUENCE)[0],
                tags::REFERENCED_SOP_INSTANCE_UID,
            ),
            _ => String::new(),
        };
        nodes.push(Node {
            parent: parent_concept.clone(),
            concept: concept_meaning(child, tags::CONCEPT_NAME_CODE_SEQUENCE),
            value_type,
            value,
        });
        walk_into(child, nodes);
    }
}

fn find<'a>(nodes: &'a [Node], concept: &str) -> Vec<&'a Node> {
    nodes.iter().filter(|n| n.concept == concept).collect()
}

#[test]
fn sr_for_a_ct_series_lands_in_the_source_study_in_a_new_series() {
    let request = ct_request();
    let obj = parse(&write_sr(&request).unwrap());

    assert_eq!(
        obj.meta().media_storage_sop_class_uid(),
        COMPREHENSIVE_SR_STORAGE
    );
    assert_eq!(obj.meta().transfer_syntax(), "1.2.840.10008.1.2.1");
    assert_eq!(
        obj.meta().implementation_class_uid(),
        crate::store::IMPLEMENTATION_CLASS_UID
    );
    assert_eq!(string(&obj, tags::SOP_CLASS_UID), COMPREHENSIVE_SR_STORAGE);
    assert_eq!(
        string(&obj, tags::SOP_INSTANCE_UID),
        request.sop_instance_uid
    );
    assert_eq!(string(&obj, tags::STUDY_INSTANCE_UID), STUDY_UID);
    let series_uid = string(&obj, tags::SERIES_INSTANCE_UID);
    assert_eq!(series_uid, request.series_instance_uid);
    assert_ne!(series_uid, SOURCE_SERIES_UID);
    assert!(series_uid.starts_with(ROOT), "under the gateway's root");
    assert_eq!(string(&obj, tags::MODALITY), "SR");
    assert_eq!(string(&obj, tags::SERIES_NUMBER), "9001");
    assert_eq!(string(&obj, tags::PATIENT_NAME), "Doe^Jane");
    assert_eq!(string(&obj, tags::PATIENT_ID), "PAT-0001");
    assert_eq!(string(&obj, tags::ACCESSION_NUMBER), "ACC42");
    assert_eq!(
        string(&obj, tags::REFERRING_PHYSICIAN_NAME),
        "",
        "type 2, empty"
    );
    assert_eq!(string(&obj, tags::COMPLETION_FLAG), "COMPLETE");
    assert_eq!(string(&obj, tags::VERIFICATION_FLAG), "UNVERIFIED");
    assert_eq!(string(&obj, tags::CONTENT_DATE), "20240131");
    assert_eq!(string(&obj, tags::MANUFACTURER), "DICOM Inference Gateway");
    assert!(items(&obj, tags::PERFORMED_PROCEDURE_CODE_SEQUENCE).is_empty());
    assert!(items(&obj, tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE).is_empty());
    assert!(obj.get(tags::SPECIFIC_CHARACTER_SET).is_none(), "all ASCII");

    let evidence = items(&obj, tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE);
    assert_eq!(evidence.len(), 1);
    assert_eq!(string(&evidence[0], tags::STUDY_INSTANCE_UID), STUDY_UID);
    let series = items(&evidence[0], tags::REFERENCED_SERIES_SEQUENCE);
    assert_eq!(series.len(), 1);
    assert_eq!(
        string(&series[0], tags::SERIES_INSTANCE_UID),
        SOURCE_SERIES_UID
    );
    let referenced: Vec<(String, String)> = items(&series[0], tags::REFERENCED_SOP_SEQUENCE)
        .iter()
        .map(|sop| {
            (
                string(sop, tags::REFERENCED_SOP_CLASS_UID),
                string(sop, tags::REFERENCED_SOP_INSTANCE_UID),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = request
        .sources
        .iter()
        .map(|s| (s.sop_class_uid.clone(), s.sop_instance_uid.clone()))
        .collect();
    assert_eq!(referenced, expected);

    let nodes = walk(&obj);
    let images: Vec<&str> = nodes
        .iter()
        .filter(|n| n.value_type == "IMAGE")
        .map(|n| n.value.as_str())
        .collect();
    assert_eq!(
        images,
        expected.iter().map(|(_, i)| i.as_str()).collect::<Vec<_>>()
    );
}

#[test]
fn tree_names_the_algorithm_its_model_file_and_why_it_ran() {
    let request = ct_request();
    let nodes = walk(&parse(&write_sr(&request).unwrap()));
    let values = |concept: &str| -> Vec<String> {
        find(&nodes, concept)
            .iter()
            .map(|n| n.value.clone())
            .collect()
    };
    // Once in the algorithm container, once per measurement group.
    assert_eq!(values("Algorithm Name"), vec!["ct-hyperdensity"; 3]);
    assert_eq!(values("Algorithm Version"), vec!["2.0.0"; 3]);
    assert_eq!(
        values("Algorithm Parameters"),
        vec![
            "engine=onnx".to_string(),
            format!("model_sha256={MODEL_SHA256}")
        ]
    );
    assert_eq!(values("Demonstration model"), vec!["Yes"]);
    assert_eq!(
        values("Statement of clinical use"),
        vec![request.algorithm.clinical_use]
    );
    assert_eq!(values("Intended use"), vec![request.algorithm.intended_use]);
    assert_eq!(values("Known limitation"), request.algorithm.limitations);
    assert_eq!(values("Inference route"), vec!["ct-head"]);
    assert_eq!(values("Route step"), vec!["primary"]);
    assert_eq!(
        values("Reason for route step"),
        vec!["route matched modality CT"]
    );
    assert_eq!(values("Observer Type"), vec!["Device"]);
    assert_eq!(values("Device Observer Name"), vec!["DICOMGW"]);
    let observer_uid = &values("Device Observer UID")[0];
    assert_eq!(validate_uid(observer_uid), Ok(()));
}

#[test]
fn each_finding_carries_score_threshold_and_the_decision() {
    let request = ct_request();
    let nodes = walk(&parse(&write_sr(&request).unwrap()));
    let groups: Vec<Vec<&Node>> = {
        let mut groups = Vec::new();
        let mut current: Vec<&Node> = Vec::new();
        for node in nodes.iter().filter(|n| n.parent == "Measurement Group") {
            if node.concept == "Tracking Identifier" && !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            current.push(node);
        }
        groups.push(current);
        groups
    };
    assert_eq!(groups.len(), request.findings.len());
    for (group, finding) in groups.iter().zip(&request.findings) {
        let value = |concept: &str| {
            group
                .iter()
                .find(|n| n.concept == concept)
                .map(|n| n.value.clone())
                .unwrap_or_else(|| panic!("{concept} in the group of {}", finding.label))
        };
        assert_eq!(value("Tracking Identifier"), finding.label);
        assert_eq!(value("Finding"), finding.label);
        assert_eq!(value("Score").parse::<f32>().unwrap(), finding.score);
        assert_eq!(
            value("Threshold Value").parse::<f32>().unwrap(),
            finding.threshold
        );
        let decided_positive = finding.score >= finding.threshold;
        assert_eq!(decided_positive, finding.positive, "fixture is consistent");
        let expected = if decided_positive { "Yes" } else { "No" };
        assert_eq!(value("Finding present at operating point"), expected);
    }
}

#[test]
fn writing_is_deterministic() {
    let request = ct_request();
    assert_eq!(write_sr(&request).unwrap(), write_sr(&request).unwrap());
}

#[test]
fn peer_values_are_made_valid_for_their_vr() {
    let mut request = ct_request();
    request.study.patient_name = Some(format!("Müller\\{}^Anna", "x".repeat(90)));
    request.study.accession_number = Some("ACCESSION-NUMBER-TOO-LONG".to_string());
    request.study.patient_birth_date = Some("1970-01-01".to_string());
    request.study.patient_sex = Some("female".to_string());
    request.findings[0].label = "intracranial_hyperdensity_region".to_string();
    let obj = parse(&write_sr(&request).unwrap());
    assert_eq!(string(&obj, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
    let name = string(&obj, tags::PATIENT_NAME);
    assert!(name.starts_with("Müller x"), "{name}");
    assert_eq!(name.chars().count(), 64);
    assert_eq!(string(&obj, tags::ACCESSION_NUMBER), "ACCESSION-NUMBER");
    assert_eq!(string(&obj, tags::PATIENT_BIRTH_DATE), "");
    assert_eq!(string(&obj, tags::PATIENT_SEX), "");
    // A label longer than SH allows goes into Long Code Value.
    let nodes = walk(&obj);
    assert_eq!(
        find(&nodes, "Finding")[0].value,
        "intracranial_hyperdensity_region"
    );
}

#[test]
fn bad_requests_are_refused() {
    let check = |change: fn(&mut SrRequest), expected: &str| {
        let mut request = ct_request();
        change(&mut request);
        let error = write_sr(&request).expect_err(expected);
        assert_eq!(error.as_label(), expected, "{error}");
        assert!(!error.is_retryable());
    };
    check(|r| r.sources.clear(), "no_sources");
    check(|r| r.findings.clear(), "no_findings");
    check(
        |r| r.study.study_instance_uid = "1.2.03".into(),
        "invalid_uid",
    );
    check(
        |r| r.sources[1].sop_instance_uid = "1.2.x".into(),
        "invalid_uid",
    );
    check(|r| r.sop_instance_uid = "x".repeat(65), "invalid_uid");
    check(
        |r| r.series_instance_uid = SOURCE_SERIES_UID.into(),
        "reused_uid",
    );
    check(|r| r.findings[0].score = f32::NAN, "invalid_finding");
    check(|r| r.findings[1].label = " \n ".into(), "invalid_finding");
    check(|r| r.algorithm.sha256 = "abc".into(), "invalid_algorithm");
    check(|r| r.algorithm.version = String::new(), "invalid_algorithm");
    check(
        |r| r.content_date = "2024-01-31".into(),
        "invalid_date_time",
    );
    check(|r| r.content_time = "25".into(), "invalid_date_time");
    check(|r| r.series_number = i64::MAX, "invalid_series_number");
}

#[test]
fn derived_uids_are_deterministic_and_distinct() {
    let a = derived_uid(ROOT, &["series", "1.2.3", "model"]);
    assert_eq!(a, derived_uid(ROOT, &["series", "1.2.3", "model"]));
    assert_ne!(a, derived_uid(ROOT, &["sop", "1.2.3", "model"]));
    assert_ne!(
        derived_uid(ROOT, &["ab", "c"]),
        derived_uid(ROOT, &["a", "bc"])
    );
    assert!(a.starts_with(&format!("{ROOT}.")));
    // As many digits as the root leaves room for, up to 39.
    assert_eq!(a.len(), 64.min(ROOT.len() + 1 + 39));
    assert_eq!(derived_uid("1.2", &["x"]).len(), "1.2.".len() + 39);
    assert_eq!(validate_uid(&a), Ok(()));
    assert_eq!(
        derived_uid(&format!("{ROOT}."), &["x"]),
        derived_uid(ROOT, &["x"])
    );
}

#[test]
fn roots_without_room_fall_back_to_a_uuid_uid() {
    let long_root = format!("1.2.{}", "3".repeat(50));
    let uid = derived_uid(&long_root, &["x"]);
    assert!(uid.starts_with("2.25."), "{uid}");
    assert_eq!(validate_uid(&uid), Ok(()));
    assert!(derived_uid("not a root", &["x"]).starts_with("2.25."));
    assert_eq!(derived_uid("not a root", &["x"]), derived_uid("", &["x"]));
}

fn uid_root() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![Just("0".to_string()), "[1-9][0-9]{0,12}"],
        1..12,
    )
    .prop_map(|components| components.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn derived_uids_are_always_valid(root in uid_root(), parts in prop::collection::vec(".{0,40}", 0..4)) {
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let uid = derived_uid(&root, &parts);
        prop_assert!(uid.len() <= 64);
        prop_assert_eq!(validate_uid(&uid), Ok(()));
        prop_assert_eq!(&uid, &derived_uid(&root, &parts));
        if root.len() + 1 + 20 <= 64 {
            let prefix = format!("{}.", root);
            prop_assert!(uid.starts_with(&prefix));
        } else {
            prop_assert!(uid.starts_with("2.25."));
        }
    }
}
