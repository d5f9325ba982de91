//! Searches against a real index (the store's schema and `upsert`) in a
//! temp directory: grouping, counts, ordering, paging, sites and matching.

use super::super::plan::{Limits, SearchPlan, Target};
use super::*;
use crate::auth::ReadSites;
use crate::store::IndexedAttributes;
use crate::store::index::{self, IndexRow};

const LIMITS: Limits = Limits {
    default: 100,
    max: 1000,
};

struct Instance {
    site: &'static str,
    study: &'static str,
    series: &'static str,
    sop: &'static str,
    patient_name: &'static str,
    patient_id: &'static str,
    study_date: &'static str,
    modality: &'static str,
    series_number: i64,
    instance_number: i64,
}

/// Three studies: 1.1 (north; CT ×3 + MR ×2), 1.2 (north; CT ×1),
/// 1.3 (south; CR ×2).
fn instances() -> Vec<Instance> {
    let i = |site, study, series, sop, name, id, date, modality, series_number, number| Instance {
        site,
        study,
        series,
        sop,
        patient_name: name,
        patient_id: id,
        study_date: date,
        modality,
        series_number,
        instance_number: number,
    };
    vec![
        i(
            "north", "1.1", "1.1.1", "1.1.1.3", "DOE^JANE", "P1", "20240115", "CT", 1, 3,
        ),
        i(
            "north", "1.1", "1.1.1", "1.1.1.1", "DOE^JANE", "P1", "20240115", "CT", 1, 1,
        ),
        i(
            "north", "1.1", "1.1.1", "1.1.1.2", "DOE^JANE", "P1", "20240115", "CT", 1, 2,
        ),
        i(
            "north", "1.1", "1.1.2", "1.1.2.1", "DOE^JANE", "P1", "20240115", "MR", 2, 1,
        ),
        i(
            "north", "1.1", "1.1.2", "1.1.2.2", "DOE^JANE", "P1", "20240115", "MR", 2, 2,
        ),
        i(
            "north", "1.2", "1.2.1", "1.2.1.1", "doe^john", "P_2%", "20231201", "CT", 1, 1,
        ),
        i(
            "south",
            "1.3",
            "1.3.1",
            "1.3.1.1",
            "SMITH^ANN",
            "P3",
            "20240301",
            "CR",
            1,
            1,
        ),
        i(
            "south",
            "1.3",
            "1.3.1",
            "1.3.1.2",
            "SMITH^ANN",
            "P3",
            "20240301",
            "CR",
            1,
            2,
        ),
    ]
}

struct Index {
    _dir: tempfile::TempDir,
    conn: Connection,
}

fn index() -> Index {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = crate::app::schema::open_index(&dir.path().join("index.sqlite")).unwrap();
    let tx = conn.transaction().unwrap();
    for inst in instances() {
        let attributes = IndexedAttributes {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: inst.sop.into(),
            study_instance_uid: inst.study.into(),
            series_instance_uid: inst.series.into(),
            instance_number: Some(inst.instance_number),
            patient_id: Some(inst.patient_id.into()),
            patient_name: Some(inst.patient_name.into()),
            study_date: Some(inst.study_date.into()),
            study_time: Some("101500".into()),
            modality: Some(inst.modality.into()),
            series_number: Some(inst.series_number),
            rows: Some(64),
            columns: Some(64),
            bits_allocated: Some(16),
            ..Default::default()
        };
        let row = IndexRow {
            attributes,
            site: inst.site.into(),
            calling_ae: "TEST".into(),
            protocol: "dimse".into(),
            received_at: "2024-01-01T00:00:00Z".into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            file_size: 1,
            sha256: "00".into(),
            path: format!("instances/{}.dcm", inst.sop),
        };
        index::upsert(&tx, &row).unwrap();
    }
    tx.commit().unwrap();
    Index { _dir: dir, conn }
}

fn all_sites() -> SiteCondition {
    Visibility::new("north", &ReadSites::All)
}

fn north() -> SiteCondition {
    Visibility::new("north", &ReadSites::parse("north", ""))
}

fn search(index: &Index, target: Target, query: &str, site: &SiteCondition) -> Page {
    let plan = SearchPlan::build(&target, query, LIMITS).unwrap();
    run(&index.conn, &plan, site).unwrap()
}

fn studies(index: &Index, query: &str, site: &SiteCondition) -> Vec<String> {
    search(index, Target::AllStudies, query, site)
        .results
        .into_iter()
        .map(|f| f.study_uid)
        .collect()
}

#[test]
fn studies_are_grouped_ordered_and_counted() {
    let index = index();
    let page = search(&index, Target::AllStudies, "", &all_sites());
    let uids: Vec<&str> = page.results.iter().map(|f| f.study_uid.as_str()).collect();
    assert_eq!(uids, ["1.2", "1.1", "1.3"], "ordered by study date");
    let study = &page.results[1];
    assert_eq!(
        study.study,
        Some(StudyFacts {
            series: 2,
            instances: 5,
            modalities: vec!["CT".into(), "MR".into()],
        })
    );
    assert_eq!(study.text("patient_name"), Some("DOE^JANE"));
    assert!(study.representative.starts_with("instances/1.1."));
    assert_eq!(page.remaining, None);
}

#[test]
fn other_sites_are_invisible() {
    let index = index();
    assert_eq!(studies(&index, "", &north()), ["1.2", "1.1"]);
    let target = Target::StudySeries {
        study: "1.3".into(),
    };
    assert!(search(&index, target, "", &north()).results.is_empty());
    let page = search(&index, Target::AllInstances, "PatientID=P3", &north());
    assert!(page.results.is_empty());
}

/// South holds its own copy of one of north's instances (a study sent to
/// both hospitals): a reader of both sites sees each UID once, its own
/// site's copy first, and counts that match what WADO-RS would return.
#[test]
fn a_reader_of_two_sites_sees_one_copy_of_a_uid_both_hold() {
    let mut index = index();
    let copied = "1.1.1.1";
    let (study, series) = ("1.1", "1.1.1");
    let south_copy = IndexRow {
        attributes: IndexedAttributes {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: copied.into(),
            study_instance_uid: study.into(),
            series_instance_uid: series.into(),
            instance_number: Some(1),
            modality: Some("CT".into()),
            series_number: Some(1),
            study_date: Some("20240115".into()),
            ..Default::default()
        },
        site: "south".into(),
        calling_ae: "TEST".into(),
        protocol: "stow".into(),
        received_at: "2024-01-02T00:00:00Z".into(),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        file_size: 1,
        sha256: "11".into(),
        path: "instances/south/1.1.1.1.dcm".into(),
    };
    let tx = index.conn.transaction().unwrap();
    index::upsert(&tx, &south_copy).unwrap();
    tx.commit().unwrap();

    let south_and_north = Visibility::new("south", &ReadSites::parse("south", "north"));
    for (reader, path_of_copy) in [
        (north(), "instances/1.1.1.1.dcm"),
        (all_sites(), "instances/1.1.1.1.dcm"),
        (south_and_north, "instances/south/1.1.1.1.dcm"),
    ] {
        let studies = search(&index, Target::AllStudies, "StudyInstanceUID=1.1", &reader);
        assert_eq!(
            studies.results[0].study.as_ref().map(|f| f.instances),
            Some(5),
            "{reader:?}: the copy is counted once"
        );
        let target = Target::SeriesInstances {
            study: study.into(),
            series: series.into(),
        };
        let instances = search(&index, target, "", &reader).results;
        let uids: Vec<&str> = instances.iter().map(|f| f.sop_uid.as_str()).collect();
        assert_eq!(uids, ["1.1.1.1", "1.1.1.2", "1.1.1.3"], "{reader:?}");
        assert_eq!(instances[0].representative, path_of_copy, "{reader:?}");
    }
}

#[test]
fn person_names_match_without_case() {
    let index = index();
    assert_eq!(
        studies(&index, "PatientName=doe*", &all_sites()),
        ["1.2", "1.1"]
    );
    assert_eq!(
        studies(&index, "PatientName=doe%5Ejane", &all_sites()),
        ["1.1"]
    );
    assert_eq!(
        studies(&index, "PatientName=D?E^J*", &all_sites()),
        ["1.2", "1.1"]
    );
    assert_eq!(studies(&index, "PatientName=*ANN", &all_sites()), ["1.3"]);
}

#[test]
fn other_strings_match_exactly_and_sql_metacharacters_are_literal() {
    let index = index();
    assert_eq!(
        studies(&index, "PatientID=p1", &all_sites()),
        Vec::<String>::new()
    );
    assert_eq!(studies(&index, "PatientID=P_2%25", &all_sites()), ["1.2"]);
    // `_` and `%` are not wildcards in DICOM: `P_*` matches only the `P_` prefix.
    assert_eq!(studies(&index, "PatientID=P_*", &all_sites()), ["1.2"]);
    assert_eq!(
        studies(&index, "PatientID=P%25", &all_sites()),
        Vec::<String>::new()
    );
    assert_eq!(
        studies(&index, "PatientID=P?", &all_sites()),
        ["1.1", "1.3"]
    );
}

#[test]
fn injection_attempts_match_nothing_and_change_nothing() {
    let index = index();
    for hostile in [
        "PatientID=%27%20OR%201%3D1%20--",
        "PatientID=P1%27%3B%20DROP%20TABLE%20instances%3B%20--",
        "PatientName=%27%29%20OR%20%271%27%3D%271",
        "StudyDescription=*%27%20OR%20%27%27%3D%27",
    ] {
        assert!(
            studies(&index, hostile, &all_sites()).is_empty(),
            "{hostile}"
        );
    }
    let count: i64 = index
        .conn
        .query_row("SELECT COUNT(*) FROM instances", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 8);
}

#[test]
fn date_ranges_and_uid_lists() {
    let index = index();
    assert_eq!(
        studies(&index, "StudyDate=20240101-", &all_sites()),
        ["1.1", "1.3"]
    );
    assert_eq!(
        studies(&index, "StudyDate=-20231231", &all_sites()),
        ["1.2"]
    );
    assert_eq!(
        studies(&index, "StudyDate=20240101-20240201", &all_sites()),
        ["1.1"]
    );
    assert_eq!(studies(&index, "StudyDate=20240115", &all_sites()), ["1.1"]);
    assert_eq!(
        studies(&index, "StudyInstanceUID=1.3,1.1", &all_sites()),
        ["1.1", "1.3"]
    );
    assert_eq!(
        studies(&index, "StudyInstanceUID=1.3%5C1.2", &north()),
        ["1.2"]
    );
}

#[test]
fn modalities_in_study_matches_any_series_and_keeps_full_facts() {
    let index = index();
    assert_eq!(
        studies(&index, "ModalitiesInStudy=CT", &all_sites()),
        ["1.2", "1.1"]
    );
    let page = search(
        &index,
        Target::AllStudies,
        "ModalitiesInStudy=MR",
        &all_sites(),
    );
    assert_eq!(page.results.len(), 1);
    let facts = page.results[0].study.clone().unwrap();
    assert_eq!((facts.series, facts.instances), (2, 5));
    assert_eq!(
        studies(&index, "ModalitiesInStudy=CR%5CMR", &all_sites()),
        ["1.1", "1.3"]
    );
    assert_eq!(
        studies(&index, "ModalitiesInStudy=CR", &north()),
        Vec::<String>::new()
    );
}

#[test]
fn pages_are_stable_and_the_server_cap_reports_the_rest() {
    let index = index();
    assert_eq!(studies(&index, "limit=1&offset=1", &all_sites()), ["1.1"]);
    assert_eq!(studies(&index, "limit=2&offset=2", &all_sites()), ["1.3"]);
    assert!(studies(&index, "offset=3", &all_sites()).is_empty());
    // A client's own limit: no report of what remains.
    let page = search(&index, Target::AllStudies, "limit=1", &all_sites());
    assert_eq!((page.results.len(), page.remaining), (1, None));
    // The server's cap: the rest is counted.
    let plan = SearchPlan::build(
        &Target::AllStudies,
        "limit=50",
        Limits { default: 1, max: 2 },
    )
    .unwrap();
    let page = run(&index.conn, &plan, &all_sites()).unwrap();
    assert_eq!((page.results.len(), page.remaining), (2, Some(1)));
    let plan = SearchPlan::build(
        &Target::AllInstances,
        "",
        Limits {
            default: 3,
            max: 10,
        },
    )
    .unwrap();
    let page = run(&index.conn, &plan, &all_sites()).unwrap();
    assert_eq!((page.results.len(), page.remaining), (3, Some(5)));
}

#[test]
fn series_of_a_study_with_counts() {
    let index = index();
    let target = || Target::StudySeries {
        study: "1.1".into(),
    };
    let page = search(&index, target(), "", &north());
    let series: Vec<(&str, Option<i64>)> = page
        .results
        .iter()
        .map(|f| (f.series_uid.as_str(), f.series_instances))
        .collect();
    assert_eq!(series, [("1.1.1", Some(3)), ("1.1.2", Some(2))]);
    let page = search(&index, target(), "Modality=MR", &north());
    assert_eq!(page.results.len(), 1);
    assert_eq!(page.results[0].series_instances, Some(2));
    assert!(page.results[0].study.is_none(), "study facts not asked for");
    let page = search(&index, Target::AllSeries, "PatientID=P1", &north());
    assert_eq!(page.results.len(), 2);
    assert_eq!(page.results[0].study.as_ref().map(|s| s.instances), Some(5));
}

#[test]
fn instances_in_order_with_parent_counts() {
    let index = index();
    let target = Target::SeriesInstances {
        study: "1.1".into(),
        series: "1.1.1".into(),
    };
    let page = search(&index, target, "", &north());
    let sops: Vec<&str> = page.results.iter().map(|f| f.sop_uid.as_str()).collect();
    assert_eq!(sops, ["1.1.1.1", "1.1.1.2", "1.1.1.3"]);
    assert_eq!(
        page.results[0].columns.get("rows"),
        Some(&Value::Integer(64))
    );
    let page = search(
        &index,
        Target::StudyInstances {
            study: "1.1".into(),
        },
        "Modality=MR",
        &north(),
    );
    assert_eq!(page.results.len(), 2);
    assert_eq!(page.results[0].series_instances, Some(2));
    let page = search(
        &index,
        Target::AllInstances,
        "InstanceNumber=2",
        &all_sites(),
    );
    assert_eq!(page.results.len(), 3);
    assert!(page.results.iter().all(|f| f.study.is_some()));
    // Wrong study for the series: nothing, exactly like an unknown series.
    let target = Target::SeriesInstances {
        study: "1.2".into(),
        series: "1.1.1".into(),
    };
    assert!(search(&index, target, "", &all_sites()).results.is_empty());
}

#[test]
fn series_and_instances_of_a_study_stay_together_when_study_attributes_disagree() {
    let index = index();
    // The MR series of study 1.1 carries another study date and time, as
    // series from two devices can; the study's latest date orders it.
    index
        .conn
        .execute(
            "UPDATE instances SET study_date = '20240401', study_time = '000000' \
             WHERE series_instance_uid = '1.1.2'",
            [],
        )
        .unwrap();
    let page = search(&index, Target::AllSeries, "", &all_sites());
    let series: Vec<&str> = page.results.iter().map(|f| f.series_uid.as_str()).collect();
    assert_eq!(series, ["1.2.1", "1.3.1", "1.1.1", "1.1.2"]);
    let page = search(&index, Target::AllInstances, "", &all_sites());
    let sops: Vec<&str> = page.results.iter().map(|f| f.sop_uid.as_str()).collect();
    assert_eq!(
        sops,
        [
            "1.2.1.1", "1.3.1.1", "1.3.1.2", "1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.1", "1.1.2.2"
        ]
    );
}

/// 20,000 instances (200 studies of 2 series × 50) over two sites: every
/// search shape answers well within a second, and the study, series and
/// instance lookups by UID use the store's indexes.
#[test]
fn searches_stay_fast_on_twenty_thousand_instances() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = crate::app::schema::open_index(&dir.path().join("index.sqlite")).unwrap();
    let tx = conn.transaction().unwrap();
    for study in 0..200 {
        for series in 0..2 {
            for number in 0..50 {
                let sop = format!("2.{study}.{series}.{number}");
                let attributes = IndexedAttributes {
                    sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                    sop_instance_uid: sop.clone(),
                    study_instance_uid: format!("2.{study}"),
                    series_instance_uid: format!("2.{study}.{series}"),
                    instance_number: Some(number),
                    patient_id: Some(format!("P{study}")),
                    patient_name: Some(format!("PATIENT^{study}")),
                    study_date: Some(format!("2024{:02}{:02}", study % 12 + 1, study % 28 + 1)),
                    modality: Some(if series == 0 { "CT" } else { "MR" }.into()),
                    series_number: Some(series + 1),
                    ..Default::default()
                };
                let row = IndexRow {
                    attributes,
                    site: if study % 2 == 0 { "north" } else { "south" }.into(),
                    calling_ae: "TEST".into(),
                    protocol: "dimse".into(),
                    received_at: "2024-01-01T00:00:00Z".into(),
                    transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
                    file_size: 1,
                    sha256: "00".into(),
                    path: format!("instances/{sop}.dcm"),
                };
                index::upsert(&tx, &row).unwrap();
            }
        }
    }
    tx.commit().unwrap();
    let index = Index { _dir: dir, conn };
    for (target, query, expected) in [
        (Target::AllStudies, "", 100),
        (Target::AllStudies, "PatientName=patient%5E1*", 56),
        (
            Target::AllStudies,
            "ModalitiesInStudy=MR&StudyDate=20240101-20240630",
            100,
        ),
        (Target::AllSeries, "", 100),
        (Target::AllInstances, "limit=1000&offset=5000", 1000),
        (
            Target::StudySeries {
                study: "2.42".into(),
            },
            "",
            2,
        ),
        (
            Target::SeriesInstances {
                study: "2.42".into(),
                series: "2.42.1".into(),
            },
            "",
            50,
        ),
    ] {
        let started = std::time::Instant::now();
        let page = search(&index, target.clone(), query, &north());
        let elapsed = started.elapsed();
        assert!(
            page.results.len() <= expected && !page.results.is_empty(),
            "{target:?} {query}"
        );
        assert!(
            elapsed < std::time::Duration::from_secs(1),
            "{target:?}?{query} took {elapsed:?}"
        );
        eprintln!(
            "{target:?}?{query}: {} results in {elapsed:?}",
            page.results.len()
        );
    }
    let plan = |sql: &str| -> String {
        let mut stmt = index
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    };
    for (key, index_name) in [
        ("study_instance_uid", "instances_study"),
        ("series_instance_uid", "instances_series"),
    ] {
        let sql = format!(
            "SELECT COUNT(*) FROM instances WHERE site IN ('north') AND {key} IN ('2.42', '2.44') GROUP BY {key}"
        );
        assert!(plan(&sql).contains(index_name), "{}", plan(&sql));
    }
}
