//! Summaries of DICOMweb runs, in the style of the C-STORE report: a few
//! lines for people, or one JSON object for scripts. Latencies use the same
//! nearest-rank percentiles ([`LatencyMs`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::qido::{QidoRunOutcome, QueryOutcome};
use super::stow::StowRunOutcome;
use super::wado::{WadoOutcome, WadoRunOutcome};
use crate::report::LatencyMs;

fn per_second(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { amount / seconds } else { 0.0 }
}

fn write_failures(out: &mut String, total: usize, by_reason: &BTreeMap<String, usize>) {
    if total == 0 {
        let _ = writeln!(out, "failures: none");
    } else {
        let _ = writeln!(out, "failures: {total}");
        for (reason, count) in by_reason {
            let _ = writeln!(out, "  {reason}: {count}");
        }
    }
}

fn write_latency(out: &mut String, what: &str, l: &LatencyMs) {
    let _ = writeln!(
        out,
        "{what} latency ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
        l.p50, l.p95, l.p99, l.max
    );
}

/// The result of `dicom-loadtest stow`, as printed with `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StowReport {
    /// Instances the run set out to send.
    pub instances: usize,
    /// Instances the server listed in ReferencedSOPSequence.
    pub stored: usize,
    /// Instances not stored: FailedSOPSequence entries, failed requests.
    pub failures: usize,
    /// Failures by FailureReason (`0xA700`), HTTP status or error kind.
    pub failures_by_reason: BTreeMap<String, usize>,
    pub requests: usize,
    /// Requests not answered 200 (202, 409, other statuses, no answer).
    pub requests_not_ok: usize,
    pub requests_by_status: BTreeMap<String, usize>,
    /// Part 10 bytes of stored instances (a partly stored request counts
    /// its share); multipart framing excluded.
    pub bytes: u64,
    /// Wall time from the first request sent to the last response read.
    pub seconds: f64,
    pub instances_per_second: f64,
    /// Stored Part 10 megabytes (10^6 bytes) per second.
    pub megabytes_per_second: f64,
    /// Per request, to the last byte of its response.
    pub latency_ms: LatencyMs,
    pub clients: usize,
    pub per_request: usize,
    pub http_version: String,
}

impl StowReport {
    pub fn from_outcome(outcome: &StowRunOutcome) -> Self {
        let mut stored = 0;
        let mut bytes = 0u64;
        let mut failures_by_reason = BTreeMap::new();
        let mut requests_by_status = BTreeMap::new();
        let mut latencies = Vec::with_capacity(outcome.records.len());
        for record in &outcome.records {
            latencies.push(record.latency);
            *requests_by_status.entry(record.status_label()).or_insert(0) += 1;
            let (ok, failures) = record.account();
            stored += ok;
            if record.instances > 0 {
                bytes += record.part10_bytes * ok as u64 / record.instances as u64;
            }
            for reason in failures {
                *failures_by_reason.entry(reason).or_insert(0) += 1;
            }
        }
        let seconds = outcome.elapsed.as_secs_f64();
        StowReport {
            instances: outcome.records.iter().map(|r| r.instances).sum(),
            stored,
            failures: failures_by_reason.values().sum(),
            failures_by_reason,
            requests: outcome.records.len(),
            requests_not_ok: outcome.records.len()
                - requests_by_status.get("200").copied().unwrap_or(0),
            requests_by_status,
            bytes,
            seconds,
            instances_per_second: per_second(stored as f64, seconds),
            megabytes_per_second: per_second(bytes as f64 / 1e6, seconds),
            latency_ms: LatencyMs::from_latencies(&latencies),
            clients: outcome.clients,
            per_request: outcome
                .records
                .iter()
                .map(|r| r.instances)
                .max()
                .unwrap_or(0),
            http_version: outcome.http_version.clone(),
        }
    }

    pub fn to_human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "stored {}/{} instances ({:.1} MB) in {:.2} s: {} requests of up to {} over {} client(s), {}",
            self.stored,
            self.instances,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.requests,
            self.per_request,
            self.clients,
            self.http_version
        );
        let _ = writeln!(
            out,
            "throughput: {:.1} instances/s, {:.1} MB/s",
            self.instances_per_second, self.megabytes_per_second
        );
        write_latency(&mut out, "request", &self.latency_ms);
        if self.requests_not_ok > 0 {
            let statuses: Vec<String> = self
                .requests_by_status
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            let _ = writeln!(out, "responses: {}", statuses.join(", "));
        }
        write_failures(&mut out, self.failures, &self.failures_by_reason);
        out
    }
}

/// Latency and result counts of one kind of search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryKindReport {
    pub queries: usize,
    pub failures: usize,
    pub latency_ms: LatencyMs,
    /// Mean number of matches returned by the answered searches.
    pub mean_results: f64,
    pub max_results: usize,
}

/// The result of `dicom-loadtest qido`, as printed with `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QidoReport {
    pub queries: usize,
    /// Statuses other than 200/204, bodies that are not JSON arrays, no answer.
    pub failures: usize,
    pub failures_by_reason: BTreeMap<String, usize>,
    pub seconds: f64,
    pub queries_per_second: f64,
    /// Every search, to the last byte of its response.
    pub latency_ms: LatencyMs,
    pub by_kind: BTreeMap<String, QueryKindReport>,
    pub concurrency: usize,
    /// What discovery found to aim at.
    pub studies_known: usize,
    pub series_known: usize,
    pub http_version: String,
}

impl QidoReport {
    pub fn from_outcome(
        outcome: &QidoRunOutcome,
        studies_known: usize,
        series_known: usize,
    ) -> Self {
        let mut failures_by_reason = BTreeMap::new();
        let mut kinds: BTreeMap<&'static str, (Vec<_>, usize, Vec<usize>)> = BTreeMap::new();
        let mut http_version = String::new();
        for record in &outcome.records {
            let (latencies, failures, results) = kinds.entry(record.kind.label()).or_default();
            latencies.push(record.latency);
            match &record.outcome {
                QueryOutcome::Answered {
                    results: n,
                    version,
                } => {
                    results.push(*n);
                    if http_version.is_empty() {
                        http_version.clone_from(version);
                    }
                }
                QueryOutcome::Failed { reason, .. } => {
                    *failures += 1;
                    *failures_by_reason.entry(reason.clone()).or_insert(0) += 1;
                }
            }
        }
        let by_kind = kinds
            .into_iter()
            .map(|(kind, (latencies, failures, results))| {
                let mean = if results.is_empty() {
                    0.0
                } else {
                    results.iter().sum::<usize>() as f64 / results.len() as f64
                };
                let report = QueryKindReport {
                    queries: latencies.len(),
                    failures,
                    latency_ms: LatencyMs::from_latencies(&latencies),
                    mean_results: mean,
                    max_results: results.iter().copied().max().unwrap_or(0),
                };
                (kind.to_string(), report)
            })
            .collect();
        let all: Vec<_> = outcome.records.iter().map(|r| r.latency).collect();
        let seconds = outcome.elapsed.as_secs_f64();
        QidoReport {
            queries: outcome.records.len(),
            failures: failures_by_reason.values().sum(),
            failures_by_reason,
            seconds,
            queries_per_second: per_second(outcome.records.len() as f64, seconds),
            latency_ms: LatencyMs::from_latencies(&all),
            by_kind,
            concurrency: outcome.concurrency,
            studies_known,
            series_known,
            http_version,
        }
    }

    pub fn to_human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} searches in {:.2} s over {} client(s), {} ({} studies, {} series known): {:.1} queries/s",
            self.queries,
            self.seconds,
            self.concurrency,
            self.http_version,
            self.studies_known,
            self.series_known,
            self.queries_per_second
        );
        let _ = writeln!(
            out,
            "{:<24}{:>8}{:>9}{:>9}{:>9}{:>9}{:>10}{:>6}",
            "kind", "queries", "p50 ms", "p95 ms", "p99 ms", "max ms", "results", "fail"
        );
        let mut row =
            |name: &str, queries: usize, l: &LatencyMs, results: String, failures: usize| {
                let _ = writeln!(
                    out,
                    "{name:<24}{queries:>8}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{results:>10}{failures:>6}",
                    l.p50, l.p95, l.p99, l.max
                );
            };
        for (kind, k) in &self.by_kind {
            row(
                kind,
                k.queries,
                &k.latency_ms,
                format!("{:.1}", k.mean_results),
                k.failures,
            );
        }
        row(
            "all",
            self.queries,
            &self.latency_ms,
            String::new(),
            self.failures,
        );
        write_failures(&mut out, self.failures, &self.failures_by_reason);
        out
    }
}

/// The result of `dicom-loadtest wado`, as printed with `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WadoReport {
    pub series: usize,
    /// Series retrieved completely as multipart/related.
    pub retrieved: usize,
    /// Parts (instances) in the retrieved series.
    pub instances: usize,
    /// Parts that were not `application/dicom` Part 10 files (no `DICM`).
    pub non_dicom_parts: usize,
    /// Series whose part count differs from QIDO's NumberOfSeriesRelatedInstances.
    pub count_mismatches: usize,
    pub failures: usize,
    pub failures_by_reason: BTreeMap<String, usize>,
    /// Body bytes received (framing included), over all series.
    pub bytes: u64,
    /// Part content bytes (the Part 10 files) of retrieved series.
    pub content_bytes: u64,
    pub seconds: f64,
    /// Body megabytes (10^6 bytes) per second.
    pub megabytes_per_second: f64,
    pub instances_per_second: f64,
    /// Per series, to the last byte.
    pub latency_ms: LatencyMs,
    /// Per series, to the response headers.
    pub first_byte_ms: LatencyMs,
    pub concurrency: usize,
    pub http_version: String,
}

impl WadoReport {
    pub fn from_outcome(outcome: &WadoRunOutcome) -> Self {
        let (mut retrieved, mut instances, mut non_dicom, mut content, mut mismatches) =
            (0, 0, 0, 0u64, 0);
        let mut failures_by_reason = BTreeMap::new();
        let mut http_version = String::new();
        for record in &outcome.records {
            match &record.outcome {
                WadoOutcome::Retrieved {
                    version,
                    parts,
                    non_dicom_parts,
                    content_bytes,
                } => {
                    retrieved += 1;
                    instances += parts;
                    non_dicom += non_dicom_parts;
                    content += content_bytes;
                    mismatches += usize::from(record.count_mismatch());
                    if http_version.is_empty() {
                        http_version.clone_from(version);
                    }
                }
                WadoOutcome::Failed { reason, .. } => {
                    *failures_by_reason.entry(reason.clone()).or_insert(0) += 1;
                }
            }
        }
        let bytes = outcome.records.iter().map(|r| r.body_bytes).sum::<u64>();
        let latencies: Vec<_> = outcome.records.iter().map(|r| r.latency).collect();
        let first: Vec<_> = outcome
            .records
            .iter()
            .filter_map(|r| r.first_byte)
            .collect();
        let seconds = outcome.elapsed.as_secs_f64();
        WadoReport {
            series: outcome.records.len(),
            retrieved,
            instances,
            non_dicom_parts: non_dicom,
            count_mismatches: mismatches,
            failures: failures_by_reason.values().sum(),
            failures_by_reason,
            bytes,
            content_bytes: content,
            seconds,
            megabytes_per_second: per_second(bytes as f64 / 1e6, seconds),
            instances_per_second: per_second(instances as f64, seconds),
            latency_ms: LatencyMs::from_latencies(&latencies),
            first_byte_ms: LatencyMs::from_latencies(&first),
            concurrency: outcome.concurrency,
            http_version,
        }
    }

    /// Every series retrieved, every part a Part 10 file, counts as QIDO said.
    pub fn is_clean(&self) -> bool {
        self.series > 0
            && self.failures == 0
            && self.non_dicom_parts == 0
            && self.count_mismatches == 0
    }

    pub fn to_human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "retrieved {}/{} series ({} instances, {:.1} MB) in {:.2} s over {} client(s), {}",
            self.retrieved,
            self.series,
            self.instances,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.concurrency,
            self.http_version
        );
        let _ = writeln!(
            out,
            "throughput: {:.1} MB/s, {:.1} instances/s",
            self.megabytes_per_second, self.instances_per_second
        );
        write_latency(&mut out, "series", &self.latency_ms);
        write_latency(&mut out, "first byte", &self.first_byte_ms);
        let _ = writeln!(
            out,
            "parts without DICM or not application/dicom: {}; series with a part count unlike QIDO's: {}",
            self.non_dicom_parts, self.count_mismatches
        );
        write_failures(&mut out, self.failures, &self.failures_by_reason);
        out
    }
}

#[cfg(test)]
mod tests;
