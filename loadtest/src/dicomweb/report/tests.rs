use std::time::Duration;

use super::*;
use crate::dicomweb::qido::{QueryKind, QueryRecord};
use crate::dicomweb::stow::{StowOutcome, StowRecord, StowResponseSummary};
use crate::dicomweb::wado::WadoRecord;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn stow_report_counts_instances_requests_and_bytes() {
    let answered = |status, referenced, reasons: Vec<Option<u16>>, latency| StowRecord {
        instances: 10,
        part10_bytes: 10_000_000,
        latency: ms(latency),
        outcome: StowOutcome::Answered {
            status,
            version: "HTTP/2.0".into(),
            summary: Some(StowResponseSummary {
                referenced,
                failure_reasons: reasons,
            }),
        },
    };
    let outcome = StowRunOutcome {
        records: vec![
            answered(200, 10, vec![], 100),
            answered(202, 8, vec![Some(0xA700), Some(0xA700)], 200),
            StowRecord {
                instances: 5,
                part10_bytes: 5_000_000,
                latency: ms(300),
                outcome: StowOutcome::Failed {
                    kind: "timeout",
                    message: String::new(),
                },
            },
        ],
        elapsed: Duration::from_secs(2),
        clients: 4,
        http_version: "HTTP/2.0".into(),
    };
    let report = StowReport::from_outcome(&outcome);
    assert_eq!(report.instances, 25);
    assert_eq!(report.stored, 18);
    assert_eq!(report.failures, 7);
    assert_eq!(report.failures_by_reason["0xA700"], 2);
    assert_eq!(report.failures_by_reason["error: timeout"], 5);
    assert_eq!(report.requests, 3);
    assert_eq!(report.requests_not_ok, 2);
    assert_eq!(report.requests_by_status["202"], 1);
    assert_eq!(report.bytes, 18_000_000);
    assert_eq!(report.instances_per_second, 9.0);
    assert_eq!(report.megabytes_per_second, 9.0);
    assert_eq!(report.latency_ms.p50, 200.0);
    assert_eq!(report.per_request, 10);
    let human = report.to_human();
    assert!(human.contains("stored 18/25"), "{human}");
    assert!(human.contains("0xA700: 2"), "{human}");
    let json = serde_json::to_value(&report).expect("serialises");
    assert!(json["latency_ms"]["p99"].is_number());
    assert_eq!(json["http_version"], "HTTP/2.0");
}

#[test]
fn qido_report_splits_latency_by_kind() {
    let record = |kind, latency, outcome| QueryRecord {
        kind,
        latency: ms(latency),
        outcome,
    };
    let ok = |results| QueryOutcome::Answered {
        results,
        version: "HTTP/2.0".into(),
    };
    let outcome = QidoRunOutcome {
        records: vec![
            record(QueryKind::PatientId, 1, ok(1)),
            record(QueryKind::PatientId, 3, ok(3)),
            record(QueryKind::SeriesOfStudy, 10, ok(4)),
            record(
                QueryKind::SeriesOfStudy,
                20,
                QueryOutcome::Failed {
                    reason: "http 500".into(),
                    message: String::new(),
                },
            ),
        ],
        elapsed: Duration::from_secs(2),
        concurrency: 2,
    };
    let report = QidoReport::from_outcome(&outcome, 100, 400);
    assert_eq!(report.queries, 4);
    assert_eq!(report.failures, 1);
    assert_eq!(report.queries_per_second, 2.0);
    assert_eq!(report.latency_ms.max, 20.0);
    let by_id = &report.by_kind["patient_id"];
    assert_eq!((by_id.queries, by_id.failures), (2, 0));
    assert_eq!(by_id.latency_ms.p50, 1.0);
    assert_eq!(by_id.mean_results, 2.0);
    let series = &report.by_kind["series_of_study"];
    assert_eq!(
        (series.queries, series.failures, series.max_results),
        (2, 1, 4)
    );
    let human = report.to_human();
    assert!(
        human.contains("patient_id") && human.contains("http 500: 1"),
        "{human}"
    );
}

#[test]
fn wado_report_checks_parts_against_qido_counts() {
    let retrieved = |parts, expected, non_dicom| WadoRecord {
        expected_instances: expected,
        latency: ms(500),
        first_byte: Some(ms(5)),
        body_bytes: 50_000_000,
        outcome: WadoOutcome::Retrieved {
            version: "HTTP/1.1".into(),
            parts,
            non_dicom_parts: non_dicom,
            content_bytes: 49_000_000,
        },
    };
    let clean = WadoRunOutcome {
        records: vec![retrieved(100, Some(100), 0), retrieved(100, None, 0)],
        elapsed: Duration::from_secs(1),
        concurrency: 1,
    };
    let report = WadoReport::from_outcome(&clean);
    assert!(report.is_clean());
    assert_eq!(report.instances, 200);
    assert_eq!(report.megabytes_per_second, 100.0);
    assert_eq!(report.first_byte_ms.p99, 5.0);

    let dirty = WadoRunOutcome {
        records: vec![
            retrieved(99, Some(100), 0),
            retrieved(100, Some(100), 1),
            WadoRecord {
                expected_instances: Some(3),
                latency: ms(1),
                first_byte: None,
                body_bytes: 0,
                outcome: WadoOutcome::Failed {
                    reason: "http 404".into(),
                    message: String::new(),
                },
            },
        ],
        elapsed: Duration::from_secs(1),
        concurrency: 1,
    };
    let report = WadoReport::from_outcome(&dirty);
    assert!(!report.is_clean());
    assert_eq!(report.count_mismatches, 1);
    assert_eq!(report.non_dicom_parts, 1);
    assert_eq!(report.failures_by_reason["http 404"], 1);
    assert_eq!(report.retrieved, 2);
    assert!(report.to_human().contains("http 404: 1"));
}
