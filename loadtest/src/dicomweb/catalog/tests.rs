use serde_json::json;

use super::*;

#[test]
fn catalog_entries_are_read_from_dicom_json() {
    let study = json!({
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]},
        "00100020": {"vr": "LO", "Value": ["PID1"]},
        "00080020": {"vr": "DA", "Value": ["20250101"]},
        "00080061": {"vr": "CS", "Value": ["CT", "SR"]}
    });
    assert_eq!(
        study_entry(&study),
        Some(StudyEntry {
            study_uid: "1.2.3".into(),
            patient_id: Some("PID1".into()),
            patient_name: Some("DOE^JANE".into()),
            study_date: Some("20250101".into()),
            modalities: vec!["CT".into(), "SR".into()],
        })
    );
    // Attributes without a value (present, empty) are absent, not errors.
    let sparse = json!({"0020000D": {"vr": "UI", "Value": ["1.2.4"]}, "00100010": {"vr": "PN"}});
    assert_eq!(study_entry(&sparse).unwrap().patient_name, None);
    assert_eq!(study_entry(&json!({})), None);

    let series = json!({
        "0020000E": {"vr": "UI", "Value": ["1.2.3.4"]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
        "00201209": {"vr": "IS", "Value": [500]}
    });
    let entry = series_entry(&series).expect("series");
    assert_eq!(entry.series_uid, "1.2.3.4");
    assert_eq!(entry.study_uid, "");
    assert_eq!(entry.instances, Some(500));
    let as_string = json!({"0020000E": {"vr": "UI", "Value": ["9"]}, "00201209": {"vr": "IS", "Value": ["12"]}});
    assert_eq!(series_entry(&as_string).unwrap().instances, Some(12));
}

#[test]
fn spread_picks_evenly_and_includes_the_first() {
    let items: Vec<u32> = (0..10).collect();
    assert_eq!(spread(&items, 3), vec![&0, &3, &6]);
    assert_eq!(spread(&items, 20).len(), 10);
    assert!(spread(&items, 0).is_empty());
    assert!(spread::<u32>(&[], 3).is_empty());
}
