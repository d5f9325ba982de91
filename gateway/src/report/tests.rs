//! The performance report on a temp index with hand-written job rows.

use rusqlite::{Connection, params};

use super::*;
use crate::telemetry::ScannerLabels;
use crate::telemetry::drift::DriftHandle;

const HOUR: i64 = 3_600_000;
const NOW: i64 = 1_790_000_000_000;

struct Index {
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    conn: Connection,
}

fn index() -> Index {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    let conn = crate::app::schema::open_index(&data_dir.join("index.sqlite")).unwrap();
    Index {
        _dir: dir,
        data_dir,
        conn,
    }
}

fn instance(
    conn: &Connection,
    sop: &str,
    series: &str,
    site: &str,
    scanner: (&str, &str),
    at_ms: i64,
) {
    let at = super::rfc3339(at_ms);
    conn.execute(
        "INSERT INTO instances (sop_instance_uid, sop_class_uid, study_instance_uid,
             series_instance_uid, modality, manufacturer, manufacturer_model_name, site,
             calling_ae, protocol, received_at, transfer_syntax_uid, file_size, sha256, path)
         VALUES (?1, '1.2.840.10008.5.1.4.1.1.2', '1.2.3', ?2, 'CT', ?3, ?4, ?5, 'AE', 'dimse',
                 ?6, '1.2.840.10008.1.2.1', 1000, 'x', 'p')",
        params![sop, series, scanner.0, scanner.1, site, at],
    )
    .unwrap();
}

struct JobSpec<'a> {
    series: &'a str,
    site: &'a str,
    state: &'a str,
    step: Option<&'a str>,
    positive: bool,
    ready: i64,
    started: i64,
    finished: Option<i64>,
    attempts: i64,
}

fn job(conn: &Connection, j: &JobSpec<'_>) {
    let findings = serde_json::json!([
        {"label": "bleed", "score": 0.9, "threshold": 0.5, "positive": j.positive},
        {"label": "other", "score": 0.1, "threshold": 0.5, "positive": false},
    ]);
    conn.execute(
        "INSERT INTO jobs (level, study_instance_uid, series_instance_uid, sop_instance_uid,
             site, modality, route, model, version, destinations, state, attempts,
             ready_after_ms, started_ms, finished_ms, created_at, updated_at, step, findings)
         VALUES ('series', '1.2.3', ?1, '', ?2, 'CT', 'ct-head', 'm', '1.0.0', '[]', ?3, ?4,
                 ?5, ?6, ?7, 'x', 'x', ?8, ?9)",
        params![
            j.series,
            j.site,
            j.state,
            j.attempts,
            j.ready,
            j.started,
            j.finished,
            j.step,
            (j.state == "done").then(|| findings.to_string()),
        ],
    )
    .unwrap();
}

/// North: 10 done jobs on a Siemens (2 positive, 1 fallback, one retried),
/// 1 failed; south: 1 done job on a GE; plus one old north job outside.
fn fill(conn: &Connection) {
    for i in 0..10 {
        let series = format!("1.2.3.{i}");
        for k in 0..3 {
            instance(
                conn,
                &format!("{series}.{k}"),
                &series,
                "north",
                ("SIEMENS", "SOMATOM X"),
                NOW - HOUR,
            );
        }
        job(
            conn,
            &JobSpec {
                series: &series,
                site: "north",
                state: "done",
                step: Some(if i == 9 { "fallback-1" } else { "primary" }),
                positive: i < 2,
                ready: NOW - HOUR,
                started: NOW - HOUR + 1000 + i * 100,
                finished: Some(NOW - HOUR + 2000 + i * 1000),
                attempts: if i == 0 { 2 } else { 1 },
            },
        );
    }
    instance(
        conn,
        "1.2.4.0",
        "1.2.4",
        "north",
        ("SIEMENS", "SOMATOM X"),
        NOW - HOUR,
    );
    job(
        conn,
        &JobSpec {
            series: "1.2.4",
            site: "north",
            state: "failed",
            step: None,
            positive: false,
            ready: NOW - HOUR,
            started: NOW - HOUR + 500,
            finished: None,
            attempts: 3,
        },
    );
    instance(
        conn,
        "1.2.5.0",
        "1.2.5",
        "south",
        ("GE MEDICAL SYSTEMS", "Revolution"),
        NOW - 2 * HOUR,
    );
    job(
        conn,
        &JobSpec {
            series: "1.2.5",
            site: "south",
            state: "done",
            step: Some("primary"),
            positive: true,
            ready: NOW - 2 * HOUR,
            started: NOW - 2 * HOUR + 100,
            finished: Some(NOW - 2 * HOUR + 600),
            attempts: 1,
        },
    );
    instance(
        conn,
        "1.2.6.0",
        "1.2.6",
        "north",
        ("SIEMENS", "SOMATOM X"),
        NOW - 48 * HOUR,
    );
    job(
        conn,
        &JobSpec {
            series: "1.2.6",
            site: "north",
            state: "done",
            step: Some("primary"),
            positive: true,
            ready: NOW - 48 * HOUR,
            started: NOW - 48 * HOUR,
            finished: Some(NOW - 48 * HOUR + 100),
            attempts: 1,
        },
    );
}

fn report(conn: &Connection, sites: Option<Vec<String>>) -> PerformanceReport {
    let query = ReportQuery::new(sites, "24h", NOW).unwrap();
    build(conn, &query, &ScannerLabels::new(), DriftSection::default()).unwrap()
}

#[test]
fn groups_by_site_scanner_route_and_model_with_rates_and_percentiles() {
    let ix = index();
    fill(&ix.conn);
    let r = report(&ix.conn, None);
    assert_eq!(r.groups.len(), 2, "{:#?}", r.groups);
    let north = &r.groups[0];
    assert_eq!(
        (
            north.site.as_str(),
            north.scanner.as_str(),
            north.route.as_str()
        ),
        ("north", "siemens_somatom-x", "ct-head")
    );
    assert_eq!(
        north.jobs,
        JobCounts {
            done: 10,
            failed: 1,
            pending: 0,
            retried: 2
        }
    );
    assert_eq!(north.instances, 30);
    assert!((north.jobs_per_hour - 10.0 / 24.0).abs() < 1e-9);
    assert_eq!(north.error_rate, Some(1.0 / 11.0));
    assert_eq!(north.fallback_rate, Some(0.1));
    assert_eq!(north.positive_rate, Some(0.2));
    assert_eq!(north.positive_rate_by_label["bleed"], 0.2);
    assert_eq!(north.positive_rate_by_label["other"], 0.0);
    // End to end: 2 s, 3 s, … 11 s.
    let e2e = &north.end_to_end_seconds;
    assert_eq!(
        (e2e.count, e2e.p50, e2e.p95, e2e.max),
        (10, Some(6.0), Some(11.0), Some(11.0))
    );
    assert_eq!(north.processing_seconds.count, 10);
    assert_eq!(
        north.inference_seconds.as_ref().map_or(0, |l| l.count),
        0,
        "no inference time recorded"
    );
    assert_eq!(north.cache_hit_rate, None);
    assert_eq!(r.groups[1].scanner, "ge_revolution");
    assert_eq!(r.groups[1].positive_rate, Some(1.0));

    assert_eq!(r.received.len(), 2, "{:#?}", r.received);
    assert_eq!(r.received[0].site, "north");
    assert_eq!(
        r.received[0].instances, 31,
        "the 48 h old instance is outside"
    );
    assert_eq!(r.received[0].bytes, 31_000);
    assert!(!r.truncated);
}

#[test]
fn sites_are_filtered_in_sql() {
    let ix = index();
    fill(&ix.conn);
    let r = report(&ix.conn, Some(vec!["south".into()]));
    assert!(r.groups.iter().all(|g| g.site == "south"));
    assert!(r.received.iter().all(|g| g.site == "south"));
    assert_eq!(r.groups.len(), 1);
    let none = report(&ix.conn, Some(vec![]));
    assert!(none.groups.is_empty() && none.received.is_empty());
}

#[test]
fn optional_job_columns_are_used_when_the_runner_records_them() {
    let ix = index();
    fill(&ix.conn);
    ix.conn
        .execute_batch(
            "UPDATE jobs SET scanner = 'siemens_recorded', cache_hit = (id % 2), inference_ms = 40
             WHERE site = 'north';",
        )
        .unwrap();
    let r = report(&ix.conn, Some(vec!["north".into()]));
    assert!(r.job_columns.scanner && r.job_columns.cache_hit && r.job_columns.inference_ms);
    let north = &r.groups[0];
    assert_eq!(north.scanner, "siemens_recorded");
    assert_eq!(north.cache_hit_rate, Some(0.5));
    assert_eq!(north.inference_seconds.as_ref().unwrap().p50, Some(0.04));
}

#[test]
fn since_takes_durations_and_utc_times_within_bounds() {
    assert_eq!(parse_since("24h", NOW).unwrap(), NOW - 24 * HOUR);
    let t = parse_since("2026-09-21T08:00:00Z", NOW).unwrap();
    assert_eq!(super::rfc3339(t), "2026-09-21T08:00:00.000000Z");
    assert!(matches!(
        parse_since("yesterday", NOW),
        Err(ReportError::BadSince(_))
    ));
    assert!(matches!(
        parse_since("400days", NOW),
        Err(ReportError::BadWindow)
    ));
    assert!(matches!(
        parse_since("2099-01-01T00:00:00Z", NOW),
        Err(ReportError::BadWindow)
    ));
    assert!(parse_since("0s", NOW).is_err());
}

#[test]
fn nearest_rank_percentiles() {
    let l = latency((1..=100).map(f64::from).collect());
    assert_eq!(
        (l.p50, l.p95, l.p99, l.max),
        (Some(50.0), Some(95.0), Some(99.0), Some(100.0))
    );
    assert_eq!(latency(vec![]).p50, None);
    assert_eq!(latency(vec![3.0]).p99, Some(3.0));
}

#[test]
fn the_cli_prints_tables_from_the_data_directory_with_persisted_drift() {
    use crate::telemetry::drift::{AcquisitionParams, DriftObservation, InputStats};
    let mut ix = index();
    fill(&ix.conn);
    let now = crate::time::unix_millis();
    // Recent rows so that the CLI's real clock sees them.
    ix.conn
        .execute(
            "UPDATE jobs SET started_ms = ?1 - 500,
                 finished_ms = CASE WHEN finished_ms IS NULL THEN NULL ELSE ?1 END
             WHERE ready_after_ms > ?2",
            [now - 1000, NOW - 24 * HOUR],
        )
        .unwrap();
    let config = crate::config::DriftConfig {
        window: 10,
        min_observations: 5,
        persist_interval: std::time::Duration::from_millis(1),
        ..Default::default()
    };
    let drift = DriftHandle::register(&prometheus::Registry::new(), config.clone());
    for i in 0..30 {
        let outcome = drift.observe_at(
            &DriftObservation {
                site: "north",
                scanner: "siemens_somatom-x",
                model: "m",
                version: "1.0.0",
                scores: &[("bleed", if i < 10 { 0.1 } else { 0.9 })],
                acquisition: &AcquisitionParams::default(),
                input: Some(InputStats {
                    mean: 0.3,
                    std: 0.1,
                }),
            },
            i * 10,
        );
        outcome.write(&mut ix.conn).unwrap();
    }
    let args = cli::ReportArgs {
        data_dir: ix.data_dir.clone(),
        site: None,
        since: "24h".into(),
        json: false,
        drift: config,
    };
    let text = cli::run(&args).unwrap();
    for expected in [
        "RECEIVED",
        "siemens_somatom-x",
        "m@1.0.0",
        "score:bleed",
        "OVER",
        "DRIFT (PSI threshold 0.20)",
        "9.1%",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in\n{text}");
    }
    let json: serde_json::Value = serde_json::from_str(
        &cli::run(&cli::ReportArgs {
            json: true,
            ..args.clone()
        })
        .unwrap(),
    )
    .unwrap();
    assert_eq!(json["drift"]["rows"][0]["quantity"], "input_mean");
    let missing = cli::ReportArgs {
        data_dir: ix.data_dir.join("nowhere"),
        ..args
    };
    assert!(matches!(cli::run(&missing), Err(ReportError::NoIndex(_))));
}
