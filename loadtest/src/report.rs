//! Summaries of a load run: throughput, acknowledgement latency and
//! failures, printed for people or as one JSON object for scripts and the
//! benchmark harness.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::run::{InstanceResult, RunOutcome};

/// Acknowledgement latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl LatencyMs {
    /// Percentiles of `latencies` (any order); all zero when empty.
    pub fn from_latencies(latencies: &[Duration]) -> Self {
        let mut sorted = latencies.to_vec();
        sorted.sort_unstable();
        let ms = |p| percentile(&sorted, p).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        LatencyMs {
            p50: ms(50.0),
            p95: ms(95.0),
            p99: ms(99.0),
            max: ms(100.0),
        }
    }
}

/// Nearest-rank percentile of an ascending slice: the smallest value with
/// at least `p` percent of the values at or below it. `None` when empty.
///
/// Nearest rank always returns an observed latency (no interpolation), so a
/// p99 of a small run is a real acknowledgement, not a blend of two.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The result of `dicom-loadtest store`, as printed with `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreReport {
    /// Instances the run set out to send.
    pub instances: usize,
    /// Instances acknowledged with success or warning status.
    pub stored: usize,
    /// Of those, how many had a warning status (0xB000, 0xB006, 0xB007).
    pub warnings: usize,
    /// Instances not stored: failure statuses and transport errors.
    pub failures: usize,
    /// Failures grouped by status (`0xA700`) or error kind (`error: timeout`).
    pub failures_by_status: BTreeMap<String, usize>,
    /// Data set bytes (no command sets, no PDU headers) of stored instances.
    pub bytes: u64,
    /// Wall time from the first connection to the last association closing.
    pub seconds: f64,
    /// Stored instances per second.
    pub instances_per_second: f64,
    /// Stored data set megabytes (10^6 bytes) per second.
    pub megabytes_per_second: f64,
    /// Latency of every acknowledged C-STORE, whatever its status.
    pub latency_ms: LatencyMs,
    pub associations: usize,
}

impl StoreReport {
    pub fn from_outcome(outcome: &RunOutcome) -> Self {
        let mut stored = 0;
        let mut warnings = 0;
        let mut bytes = 0u64;
        let mut latencies = Vec::with_capacity(outcome.results.len());
        let mut failures_by_status = BTreeMap::new();
        for result in &outcome.results {
            match &result.outcome {
                InstanceResult::Acked(ack) => {
                    latencies.push(ack.latency);
                    if ack.is_failure() {
                        *failures_by_status
                            .entry(format!("{:#06X}", ack.status))
                            .or_insert(0) += 1;
                    } else {
                        stored += 1;
                        warnings += usize::from(ack.is_warning());
                        bytes += result.dataset_bytes as u64;
                    }
                }
                InstanceResult::Failed { kind, .. } => {
                    *failures_by_status
                        .entry(format!("error: {kind}"))
                        .or_insert(0) += 1;
                }
            }
        }
        let seconds = outcome.elapsed.as_secs_f64();
        let per_second = |amount: f64| if seconds > 0.0 { amount / seconds } else { 0.0 };
        StoreReport {
            instances: outcome.results.len(),
            stored,
            warnings,
            failures: failures_by_status.values().sum(),
            failures_by_status,
            bytes,
            seconds,
            instances_per_second: per_second(stored as f64),
            megabytes_per_second: per_second(bytes as f64 / 1e6),
            latency_ms: LatencyMs::from_latencies(&latencies),
            associations: outcome.associations,
        }
    }

    /// A few lines for a terminal.
    pub fn to_human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "stored {}/{} instances ({:.1} MB of data sets) in {:.2} s over {} association(s)",
            self.stored,
            self.instances,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.associations
        );
        let _ = writeln!(
            out,
            "throughput: {:.1} instances/s, {:.1} MB/s",
            self.instances_per_second, self.megabytes_per_second
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "ack latency ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
            l.p50, l.p95, l.p99, l.max
        );
        if self.warnings > 0 {
            let _ = writeln!(out, "warnings: {}", self.warnings);
        }
        if self.failures_by_status.is_empty() {
            let _ = writeln!(out, "failures: none");
        } else {
            let _ = writeln!(out, "failures: {}", self.failures);
            for (status, count) in &self.failures_by_status {
                let _ = writeln!(out, "  {status}: {count}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::InstanceRecord;
    use crate::scu::StoreAck;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 95.0), Some(95));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&values, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 51.0), Some(3));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
    }

    #[test]
    fn latency_summary_sorts_and_converts_to_ms() {
        let latencies: Vec<Duration> = [5, 1, 3, 2, 4].map(Duration::from_millis).to_vec();
        let summary = LatencyMs::from_latencies(&latencies);
        assert_eq!(summary.p50, 3.0);
        assert_eq!(summary.max, 5.0);
        assert_eq!(LatencyMs::from_latencies(&[]), LatencyMs::default());
    }

    fn acked(status: u16, ms: u64) -> InstanceRecord {
        InstanceRecord {
            dataset_bytes: 1_000_000,
            outcome: InstanceResult::Acked(StoreAck {
                status,
                latency: Duration::from_millis(ms),
                error_comment: None,
            }),
        }
    }

    #[test]
    fn report_counts_stored_warnings_and_failures() {
        let outcome = RunOutcome {
            results: vec![
                acked(0x0000, 10),
                acked(0xB007, 20),
                acked(0xA700, 30),
                InstanceRecord {
                    dataset_bytes: 1_000_000,
                    outcome: InstanceResult::Failed {
                        kind: "timeout",
                        message: "timed out".to_string(),
                    },
                },
            ],
            elapsed: Duration::from_secs(2),
            associations: 2,
        };
        let report = StoreReport::from_outcome(&outcome);
        assert_eq!(report.instances, 4);
        assert_eq!(report.stored, 2);
        assert_eq!(report.warnings, 1);
        assert_eq!(report.failures, 2);
        assert_eq!(report.failures_by_status["0xA700"], 1);
        assert_eq!(report.failures_by_status["error: timeout"], 1);
        assert_eq!(report.bytes, 2_000_000);
        assert_eq!(report.instances_per_second, 1.0);
        assert_eq!(report.megabytes_per_second, 1.0);
        assert_eq!(report.latency_ms.max, 30.0);

        let json = serde_json::to_value(&report).expect("serialises");
        for field in [
            "instances",
            "bytes",
            "seconds",
            "instances_per_second",
            "megabytes_per_second",
            "failures",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert!(json["latency_ms"]["p99"].is_number());
        assert!(report.to_human().contains("0xA700: 1"));
    }
}
