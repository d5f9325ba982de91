//! Assembly against a real index: arrivals recorded with the rows, ready
//! series routed by the embedded rules, jobs idempotent across late arrivals.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use super::{Assembler, AssemblyConfig, record_arrival};
use crate::jobs::JobsNotifier;
use crate::route::RoutesHandle;
use crate::store::{IndexRow, IndexedAttributes, index};
use crate::telemetry::Metrics;

fn assembler(conn: Connection, stable_time: Duration) -> Assembler {
    let routes = RoutesHandle::load(None, Arc::new(|_| Ok(())), &prometheus::Registry::new())
        .expect("embedded routes");
    Assembler {
        conn,
        config: AssemblyConfig {
            stable_time,
            poll_interval: Duration::from_millis(10),
        },
        routes,
        jobs: JobsNotifier::default(),
        metrics: Metrics::new(),
    }
}

/// Commits one instance row and its arrival, as the store's committer does.
fn arrive(conn: &mut Connection, series: &str, sop: &str, modality: &str, body_part: &str) {
    let row = IndexRow {
        attributes: IndexedAttributes {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.1".into(),
            sop_instance_uid: sop.into(),
            study_instance_uid: "1.2.3".into(),
            series_instance_uid: series.into(),
            modality: Some(modality.into()),
            body_part_examined: Some(body_part.into()),
            ..Default::default()
        },
        site: "demo".into(),
        calling_ae: "DEMO-SCU".into(),
        protocol: "dimse".into(),
        received_at: crate::time::now_rfc3339(),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        file_size: 1,
        sha256: "00".into(),
        path: format!("instances/{sop}.dcm"),
    };
    let tx = conn.transaction().unwrap();
    index::upsert(&tx, &row).unwrap();
    record_arrival(&tx, &row).unwrap();
    tx.commit().unwrap();
}

fn jobs(conn: &Connection, route: &str) -> i64 {
    conn.query_row("SELECT COUNT(*) FROM jobs WHERE route = ?1", [route], |r| {
        r.get(0)
    })
    .unwrap()
}

#[test]
fn instance_routes_get_a_job_per_instance_and_late_instances_add_only_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    let mut writer = index::open(&path).unwrap();
    for sop in ["1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3"] {
        arrive(&mut writer, "1.2.3.1", sop, "DX", "CHEST");
    }
    let mut asm = assembler(index::open(&path).unwrap(), Duration::ZERO);
    assert_eq!(asm.pass().unwrap(), 1);
    assert_eq!(jobs(&writer, "radiograph-exposure"), 3);
    assert_eq!(
        asm.pass().unwrap(),
        0,
        "a dispatched series is not dispatched again"
    );

    arrive(&mut writer, "1.2.3.1", "1.2.3.1.4", "DX", "CHEST");
    assert_eq!(asm.pass().unwrap(), 1);
    assert_eq!(jobs(&writer, "radiograph-exposure"), 4);
}

#[test]
fn a_series_route_runs_once_per_series_and_unrouted_series_get_no_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    let mut writer = index::open(&path).unwrap();
    arrive(&mut writer, "1.2.3.2", "1.2.3.2.1", "CT", "HEAD");
    arrive(&mut writer, "1.2.3.2", "1.2.3.2.2", "CT", "HEAD");
    arrive(&mut writer, "1.2.3.3", "1.2.3.3.1", "CT", "CHEST");
    let mut asm = assembler(index::open(&path).unwrap(), Duration::ZERO);
    assert_eq!(asm.pass().unwrap(), 2);
    assert_eq!(jobs(&writer, "ct-head-hyperdensity"), 1);
    let total: i64 = writer
        .query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(total, 1, "the chest CT matches no route");

    arrive(&mut writer, "1.2.3.2", "1.2.3.2.3", "CT", "HEAD");
    assert_eq!(asm.pass().unwrap(), 1);
    assert_eq!(
        jobs(&writer, "ct-head-hyperdensity"),
        1,
        "series jobs are keyed by (series, model version)"
    );
}

#[test]
fn nothing_is_ready_before_the_stable_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    let mut writer = index::open(&path).unwrap();
    arrive(&mut writer, "1.2.3.4", "1.2.3.4.1", "CT", "HEAD");
    let mut asm = assembler(index::open(&path).unwrap(), Duration::from_secs(3600));
    assert_eq!(asm.pass().unwrap(), 0);
    assert_eq!(jobs(&writer, "ct-head-hyperdensity"), 0);
}
