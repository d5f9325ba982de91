use std::collections::BTreeMap;

use super::*;
use crate::dicomweb::catalog::SeriesEntry;

fn catalog() -> Catalog {
    let study = |n: u32, name: &str, date: &str, modality: &str| StudyEntry {
        study_uid: format!("1.2.3.{n}"),
        patient_id: Some(format!("PID{n}")),
        patient_name: Some(name.to_string()),
        study_date: Some(date.to_string()),
        modalities: vec![modality.to_string()],
    };
    Catalog {
        studies: vec![
            study(1, "ALPHA^ANN", "20250301", "CT"),
            study(2, "BRAVO^BEN", "20250115", "MR"),
            study(3, "CHARLIE^CY", "20241231", "CT"),
        ],
        series: vec![SeriesEntry {
            study_uid: "1.2.3.1".into(),
            series_uid: "1.2.3.1.1".into(),
            modality: Some("CT".into()),
            instances: Some(500),
        }],
    }
}

#[test]
fn the_mix_is_deterministic_and_gives_every_kind_its_share() {
    let mix = query_mix(&catalog(), 60, 7);
    assert_eq!(mix, query_mix(&catalog(), 60, 7));
    assert_ne!(mix, query_mix(&catalog(), 60, 8));
    assert_eq!(mix.len(), 60);
    let mut per_kind = BTreeMap::new();
    for query in &mix {
        *per_kind.entry(query.kind).or_insert(0) += 1;
    }
    assert_eq!(per_kind.len(), QueryKind::ALL.len());
    assert!(per_kind.values().all(|n| *n == 10), "{per_kind:?}");
}

#[test]
fn queries_aim_at_what_the_catalog_holds() {
    let catalog = catalog();
    for query in query_mix(&catalog, 120, 1) {
        let param = |name: &str| {
            query
                .params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{query:?} lacks {name}"))
        };
        match query.kind {
            QueryKind::PatientId => {
                assert_eq!(query.path, "/studies");
                let id = param("PatientID");
                assert!(
                    catalog
                        .studies
                        .iter()
                        .any(|s| s.patient_id.as_ref() == Some(&id))
                );
            }
            QueryKind::StudyDateRange => {
                let range = param("StudyDate");
                let (from, to) = range.split_once('-').expect("a range");
                assert!(
                    catalog
                        .studies
                        .iter()
                        .any(|s| s.study_date.as_deref() == Some(to))
                );
                assert_eq!(days_from_da(to).unwrap() - days_from_da(from).unwrap(), 7);
            }
            QueryKind::PatientNameWildcard => {
                let name = param("PatientName");
                assert!(["ALP*", "BRA*", "CHA*"].contains(&name.as_str()), "{name}");
            }
            QueryKind::Modality => {
                assert!(["CT", "MR"].contains(&param("ModalitiesInStudy").as_str()));
            }
            QueryKind::SeriesOfStudy => {
                let study = query
                    .path
                    .strip_prefix("/studies/")
                    .and_then(|rest| rest.strip_suffix("/series"))
                    .expect("series path");
                assert!(catalog.studies.iter().any(|s| s.study_uid == study));
            }
            QueryKind::InstancesOfSeries => {
                assert_eq!(query.path, "/studies/1.2.3.1/series/1.2.3.1.1/instances");
            }
        }
    }
}

#[test]
fn kinds_without_targets_are_left_out() {
    let mut catalog = catalog();
    catalog.series.clear();
    for study in &mut catalog.studies {
        study.study_date = Some("not a date".into());
    }
    let mix = query_mix(&catalog, 40, 3);
    assert_eq!(mix.len(), 40);
    assert!(mix.iter().all(|q| !matches!(
        q.kind,
        QueryKind::InstancesOfSeries | QueryKind::StudyDateRange
    )));
    assert!(query_mix(&Catalog::default(), 10, 3).is_empty());
}

#[test]
fn dates_convert_both_ways_across_months_years_and_leap_days() {
    for da in ["19700101", "20000229", "20250301", "20241231", "21000101"] {
        assert_eq!(da_from_days(days_from_da(da).unwrap()), da);
    }
    assert_eq!(days_from_da("19700101"), Some(0));
    assert_eq!(
        da_from_days(days_from_da("20250301").unwrap() - 7),
        "20250222"
    );
    assert_eq!(
        da_from_days(days_from_da("20240301").unwrap() - 1),
        "20240229"
    );
    assert_eq!(
        da_from_days(days_from_da("20250103").unwrap() - 7),
        "20241227"
    );
    for bad in ["2025013", "20251301", "2025-01-01", "20250100", ""] {
        assert_eq!(days_from_da(bad), None, "{bad}");
    }
}
