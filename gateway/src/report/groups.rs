//! Per-group arithmetic of the report: counting job rows into one
//! site × scanner × route × model version, and the percentiles.

use std::collections::BTreeMap;

use super::query::JobRow;
use super::{GroupReport, JobCounts, Latency};

#[derive(Default)]
pub(super) struct Accumulator {
    jobs: JobCounts,
    instances: u64,
    end_to_end: Vec<f64>,
    processing: Vec<f64>,
    inference: Vec<f64>,
    fallbacks: u64,
    with_step: u64,
    positives: u64,
    with_findings: u64,
    labels: BTreeMap<String, (u64, u64)>,
    cache_hits: u64,
    cache_known: u64,
}

pub(super) fn accumulate(acc: &mut Accumulator, row: &JobRow) {
    if row.attempts > 1 {
        acc.jobs.retried += 1;
    }
    match row.state.as_str() {
        "done" => acc.jobs.done += 1,
        "failed" => {
            acc.jobs.failed += 1;
            return;
        }
        _ => {
            acc.jobs.pending += 1;
            return;
        }
    }
    acc.instances += row.instances.max(0) as u64;
    let seconds = |from: i64, to: i64| (to - from).max(0) as f64 / 1000.0;
    if let Some(finished) = row.finished_ms {
        acc.end_to_end.push(seconds(row.ready_after_ms, finished));
        if let Some(started) = row.started_ms {
            acc.processing.push(seconds(started, finished));
        }
    }
    if let Some(ms) = row.inference_ms {
        acc.inference.push(ms.max(0) as f64 / 1000.0);
    }
    if let Some(step) = &row.step {
        acc.with_step += 1;
        if step != "primary" {
            acc.fallbacks += 1;
        }
    }
    if let Some(hit) = row.cache_hit {
        acc.cache_known += 1;
        acc.cache_hits += u64::from(hit);
    }
    // findings: [{"label", "score", "threshold", "positive"}, …]
    let findings: Vec<serde_json::Value> = row
        .findings
        .as_deref()
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or_default();
    if findings.is_empty() {
        return;
    }
    acc.with_findings += 1;
    let mut any = false;
    for f in &findings {
        let (Some(label), positive) = (f["label"].as_str(), f["positive"].as_bool() == Some(true))
        else {
            continue;
        };
        let entry = acc.labels.entry(label.to_string()).or_default();
        entry.0 += u64::from(positive);
        entry.1 += 1;
        any |= positive;
    }
    acc.positives += u64::from(any);
}

#[allow(clippy::too_many_arguments)]
pub(super) fn finish_group(
    site: String,
    scanner: String,
    route: String,
    model: String,
    version: String,
    acc: Accumulator,
    hours: f64,
    has_inference: bool,
) -> GroupReport {
    let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
    GroupReport {
        jobs_per_hour: acc.jobs.done as f64 / hours,
        instances: acc.instances,
        end_to_end_seconds: latency(acc.end_to_end),
        processing_seconds: latency(acc.processing),
        inference_seconds: has_inference.then(|| latency(acc.inference)),
        error_rate: ratio(acc.jobs.failed, acc.jobs.done + acc.jobs.failed),
        fallback_rate: ratio(acc.fallbacks, acc.with_step),
        positive_rate: ratio(acc.positives, acc.with_findings),
        positive_rate_by_label: acc
            .labels
            .into_iter()
            .map(|(label, (positive, total))| (label, positive as f64 / total.max(1) as f64))
            .collect(),
        cache_hit_rate: ratio(acc.cache_hits, acc.cache_known),
        jobs: acc.jobs,
        site,
        scanner,
        route,
        model,
        version,
    }
}

/// Nearest-rank percentiles of `samples` (seconds).
pub fn latency(mut samples: Vec<f64>) -> Latency {
    samples.retain(|v| v.is_finite());
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let at = |p: f64| (n > 0).then(|| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1]);
    Latency {
        count: n,
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: samples.last().copied(),
    }
}
