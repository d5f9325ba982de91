//! Assembly against a real index: arrivals recorded with the rows, ready
//! series routed by the embedded rules, jobs idempotent across late arrivals.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use super::{Assembler, AssemblyConfig};
use crate::jobs::JobsNotifier;
use crate::models::ModelRepository;
use crate::route::{
    Deployment, OperatorRequest, RouteCommand, RouteStateStore, RouteTable, RoutesHandle,
};
use crate::store::record_arrival;
use crate::store::{IndexRow, IndexedAttributes, index};
use crate::telemetry::Metrics;

fn assembler(conn: Connection, stable_time: Duration) -> Assembler {
    let routes = RoutesHandle::load(None, Arc::new(|_| Ok(())), &prometheus::Registry::new())
        .expect("embedded routes");
    let memory = Connection::open_in_memory().unwrap();
    crate::route::create_state_schema(&memory).unwrap();
    let states = RouteStateStore::load(memory).expect("an empty state store");
    Assembler {
        conn,
        config: AssemblyConfig {
            stable_time,
            poll_interval: Duration::from_millis(10),
        },
        routes,
        states: Arc::new(states),
        jobs: JobsNotifier::default(),
        metrics: Metrics::new(),
    }
}

/// Commits one instance row and its arrival, as the store's committer does.
fn arrive(conn: &mut Connection, series: &str, sop: &str, modality: &str, body_part: &str) {
    arrive_at(conn, "demo", series, sop, modality, body_part);
}

/// [`arrive`] from `site`.
fn arrive_at(
    conn: &mut Connection,
    site: &str,
    series: &str,
    sop: &str,
    modality: &str,
    body_part: &str,
) {
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
        site: site.into(),
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
    let mut writer = crate::app::schema::open_index(&path).unwrap();
    for sop in ["1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3"] {
        arrive(&mut writer, "1.2.3.1", sop, "DX", "CHEST");
    }
    let mut asm = assembler(
        crate::app::schema::open_index(&path).unwrap(),
        Duration::ZERO,
    );
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
    let mut writer = crate::app::schema::open_index(&path).unwrap();
    arrive(&mut writer, "1.2.3.2", "1.2.3.2.1", "CT", "HEAD");
    arrive(&mut writer, "1.2.3.2", "1.2.3.2.2", "CT", "HEAD");
    arrive(&mut writer, "1.2.3.3", "1.2.3.3.1", "CT", "CHEST");
    let mut asm = assembler(
        crate::app::schema::open_index(&path).unwrap(),
        Duration::ZERO,
    );
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
fn two_sites_sending_one_series_get_two_series_each_with_its_own_instances() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    let mut writer = crate::app::schema::open_index(&path).unwrap();
    // A study transferred between two hospitals reaches the gateway from both.
    for sop in ["1.2.3.9.1", "1.2.3.9.2"] {
        arrive_at(&mut writer, "north", "1.2.3.9", sop, "DX", "CHEST");
    }
    arrive_at(&mut writer, "south", "1.2.3.9", "1.2.3.9.2", "DX", "CHEST");
    arrive_at(&mut writer, "south", "1.2.3.9", "1.2.3.9.3", "DX", "CHEST");
    let mut asm = assembler(
        crate::app::schema::open_index(&path).unwrap(),
        Duration::ZERO,
    );
    assert_eq!(asm.pass().unwrap(), 2, "one series per site");

    let per_site: Vec<(String, i64)> = writer
        .prepare(
            "SELECT site, COUNT(*) FROM jobs WHERE route = 'radiograph-exposure'
             GROUP BY site ORDER BY site",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(per_site, [("north".into(), 2), ("south".into(), 2)]);

    let uids = |site: &str| -> Vec<String> {
        super::load_series(&writer, site, "1.2.3.9")
            .unwrap()
            .expect("series")
            .instances
            .into_iter()
            .map(|i| i.sop_instance_uid)
            .collect()
    };
    assert_eq!(uids("north"), ["1.2.3.9.1", "1.2.3.9.2"]);
    assert_eq!(uids("south"), ["1.2.3.9.2", "1.2.3.9.3"]);
    let shared = super::load_instance(&writer, "south", "1.2.3.9.2")
        .unwrap()
        .expect("south's copy");
    assert_eq!(shared.site, "south");
    assert!(
        super::load_instance(&writer, "south", "1.2.3.9.1")
            .unwrap()
            .is_none()
    );

    // A late arrival at one site sets only that site's series assembling.
    arrive_at(&mut writer, "south", "1.2.3.9", "1.2.3.9.4", "DX", "CHEST");
    assert_eq!(asm.pass().unwrap(), 1);
    assert_eq!(jobs(&writer, "radiograph-exposure"), 5);
}

#[test]
fn nothing_is_ready_before_the_stable_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    let mut writer = crate::app::schema::open_index(&path).unwrap();
    arrive(&mut writer, "1.2.3.4", "1.2.3.4.1", "CT", "HEAD");
    let mut asm = assembler(
        crate::app::schema::open_index(&path).unwrap(),
        Duration::from_secs(3600),
    );
    assert_eq!(asm.pass().unwrap(), 0);
    assert_eq!(jobs(&writer, "ct-head-hyperdensity"), 0);
}

#[test]
fn operator_state_picks_the_version_adds_shadow_jobs_and_stops_new_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    let mut writer = crate::app::schema::open_index(&path).unwrap();
    let store =
        Arc::new(RouteStateStore::load(crate::app::schema::open_index(&path).unwrap()).unwrap());
    let repository =
        ModelRepository::open(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"))
            .unwrap();
    let table = RouteTable::embedded_default();
    let act = |route: &str, command: RouteCommand| {
        store
            .execute(
                Deployment {
                    routes: &table,
                    models: &repository,
                },
                OperatorRequest {
                    route,
                    actor: "alice",
                    reason: "test",
                },
                command,
                |_| Ok(()),
            )
            .unwrap();
    };
    act(
        "ct-head-hyperdensity",
        RouteCommand::Pin("1.0.0".parse().unwrap()),
    );
    act(
        "ct-head-hyperdensity",
        RouteCommand::SetShadow("2.0.0".parse().unwrap()),
    );
    act("radiograph-exposure", RouteCommand::Drain);

    arrive(&mut writer, "1.2.3.7", "1.2.3.7.1", "CT", "HEAD");
    arrive(&mut writer, "1.2.3.8", "1.2.3.8.1", "DX", "CHEST");
    let mut asm = assembler(
        crate::app::schema::open_index(&path).unwrap(),
        Duration::ZERO,
    );
    asm.states = Arc::clone(&store);
    assert_eq!(asm.pass().unwrap(), 2);

    let planned: Vec<(String, String, String, String)> = writer
        .prepare("SELECT version, purpose, version_source, destinations FROM jobs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        planned,
        [
            (
                "1.0.0".into(),
                "production".into(),
                "pinned".into(),
                "[]".into()
            ),
            (
                "2.0.0".into(),
                "shadow".into(),
                "shadow".into(),
                "[]".into()
            ),
        ]
    );
    assert_eq!(
        jobs(&writer, "radiograph-exposure"),
        0,
        "draining takes no new work"
    );
    assert_eq!(
        asm.metrics
            .pipeline
            .skipped_series
            .with_label_values(&["radiograph-exposure", "draining"])
            .get(),
        1
    );
}
