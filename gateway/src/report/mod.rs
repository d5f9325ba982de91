//! The performance report, read from the index database after the fact:
//! per site × scanner × route × model version, throughput, latency
//! percentiles, error, fallback, positive and cache-hit rates, instances
//! received, and the drift monitor's state. Served by
//! `GET /api/v1/performance` (`dicomweb::performance_api`) and
//! printed by `dicom-gateway report performance` ([`cli`]).
//!
//! Latencies come from the job rows: end to end is `finished_ms −
//! ready_after_ms` (last instance of the series received → result stored),
//! processing is `finished_ms − started_ms` (the last claim → result stored:
//! pixels, engine, SR, store), inference is the engine time when the runner
//! records it (`jobs.inference_ms`).

pub mod cli;
mod groups;
mod query;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use rusqlite::Connection;
use serde::Serialize;

pub use groups::latency;
pub use query::{JobColumns, MAX_JOB_ROWS};

use crate::telemetry::ScannerLabels;
use crate::telemetry::drift::{BaselineRow, DriftRow};

/// Longest window a report may cover.
pub const MAX_WINDOW: Duration = Duration::from_secs(92 * 24 * 3600);

/// The window when none is asked for.
pub const DEFAULT_SINCE: &str = "24h";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "since: `{0}` is neither an RFC 3339 UTC time (2026-11-21T08:00:00Z) nor a duration (24h)"
    )]
    BadSince(String),
    #[error("since: the window must start in the past and span at most {} days", MAX_WINDOW.as_secs() / 86_400)]
    BadWindow,
    #[error("no index database at {0}: is this the gateway's data directory?")]
    NoIndex(PathBuf),
    #[error("index: {0}")]
    Index(#[from] rusqlite::Error),
}

impl ReportError {
    /// The caller's mistake (400), not ours.
    pub fn is_caller_error(&self) -> bool {
        matches!(self, ReportError::BadSince(_) | ReportError::BadWindow)
    }
}

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    /// Only these sites; `None`: every site. The API passes the token's
    /// readable sites (narrowed by `?site=`), so the filter is in SQL.
    pub sites: Option<Vec<String>>,
    pub since_ms: i64,
    pub until_ms: i64,
}

impl ReportQuery {
    /// From `since` (RFC 3339 or a duration back from `now_ms`).
    pub fn new(sites: Option<Vec<String>>, since: &str, now_ms: i64) -> Result<Self, ReportError> {
        Ok(Self {
            sites,
            since_ms: parse_since(since, now_ms)?,
            until_ms: now_ms,
        })
    }
}

/// `2026-11-21T08:00:00Z` or `24h`/`7days`/`90m` → Unix ms.
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64, ReportError> {
    let text = text.trim();
    let since_ms = if let Ok(d) = humantime::parse_duration(text) {
        now_ms - d.as_millis().min(i64::MAX as u128) as i64
    } else if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        t.duration_since(UNIX_EPOCH)
            .map_err(|_| ReportError::BadWindow)?
            .as_millis() as i64
    } else {
        return Err(ReportError::BadSince(text.chars().take(64).collect()));
    };
    if since_ms >= now_ms || now_ms - since_ms > MAX_WINDOW.as_millis() as i64 {
        return Err(ReportError::BadWindow);
    }
    Ok(since_ms)
}

#[derive(Debug, Clone, Serialize)]
pub struct PerformanceReport {
    pub since: String,
    pub until: String,
    pub hours: f64,
    /// Sites reported on; `null` for all.
    pub sites: Option<Vec<String>>,
    pub received: Vec<ReceivedRow>,
    pub groups: Vec<GroupReport>,
    pub drift: DriftSection,
    /// Optional `jobs` columns found (scanner, cache_hit, inference_ms).
    pub job_columns: JobColumnsView,
    /// More than [`MAX_JOB_ROWS`] jobs in the window: only the first counted.
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct JobColumnsView {
    pub scanner: bool,
    pub cache_hit: bool,
    pub inference_ms: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReceivedRow {
    pub site: String,
    pub modality: String,
    pub scanner: String,
    pub instances: u64,
    pub bytes: u64,
    pub instances_per_hour: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct DriftSection {
    pub threshold: f64,
    pub rows: Vec<DriftRow>,
    pub baselines: Vec<BaselineRow>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct JobCounts {
    pub done: u64,
    pub failed: u64,
    /// Queued or running now.
    pub pending: u64,
    /// Needed more than one attempt (whatever the end).
    pub retried: u64,
}

/// Percentiles in seconds (nearest rank); `None` without samples.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupReport {
    pub site: String,
    pub scanner: String,
    pub route: String,
    pub model: String,
    pub version: String,
    pub jobs: JobCounts,
    pub jobs_per_hour: f64,
    /// Source instances of the finished jobs.
    pub instances: u64,
    pub end_to_end_seconds: Latency,
    pub processing_seconds: Latency,
    /// Engine time, when the runner records `jobs.inference_ms`.
    pub inference_seconds: Option<Latency>,
    /// failed / (done + failed).
    pub error_rate: Option<f64>,
    /// Results from a step other than `primary` / done.
    pub fallback_rate: Option<f64>,
    /// Results with at least one positive finding / done.
    pub positive_rate: Option<f64>,
    pub positive_rate_by_label: BTreeMap<String, f64>,
    /// Cache hits / done jobs with a recorded cache outcome.
    pub cache_hit_rate: Option<f64>,
}

/// Reads the report for `query`; `scanners` folds header values into the
/// same labels the metrics use, `drift` is the monitor's current state.
pub fn build(
    conn: &Connection,
    query: &ReportQuery,
    scanners: &ScannerLabels,
    drift: DriftSection,
) -> Result<PerformanceReport, ReportError> {
    let columns = query::job_columns(conn)?;
    let sites = query.sites.as_deref();
    let mut rows = query::jobs_in_window(conn, columns, sites, query.since_ms, query.until_ms)?;
    let truncated = rows.len() > MAX_JOB_ROWS;
    rows.truncate(MAX_JOB_ROWS);
    let hours = (query.until_ms - query.since_ms).max(1) as f64 / 3_600_000.0;

    let mut by_group: BTreeMap<(String, String, String, String, String), groups::Accumulator> =
        BTreeMap::new();
    for row in rows {
        let scanner = match &row.scanner {
            Some(label) => label.clone(),
            None => scanners
                .label(
                    row.manufacturer.as_deref(),
                    row.manufacturer_model_name.as_deref(),
                )
                .to_string(),
        };
        let key = (
            row.site.clone(),
            scanner,
            row.route.clone(),
            row.model.clone(),
            row.version.clone(),
        );
        groups::accumulate(by_group.entry(key).or_default(), &row);
    }
    let groups = by_group
        .into_iter()
        .map(|((site, scanner, route, model, version), acc)| {
            groups::finish_group(
                site,
                scanner,
                route,
                model,
                version,
                acc,
                hours,
                columns.inference_ms,
            )
        })
        .collect();

    let since = rfc3339(query.since_ms);
    let until = rfc3339(query.until_ms);
    let mut received: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
    for g in query::received_in_window(conn, sites, &since, &until)? {
        let modality = crate::telemetry::modality_label(g.modality.as_deref()).to_string();
        let scanner = scanners
            .label(
                g.manufacturer.as_deref(),
                g.manufacturer_model_name.as_deref(),
            )
            .to_string();
        let entry = received.entry((g.site, modality, scanner)).or_default();
        entry.0 += g.instances.max(0) as u64;
        entry.1 += g.bytes.max(0) as u64;
    }
    let received = received
        .into_iter()
        .map(
            |((site, modality, scanner), (instances, bytes))| ReceivedRow {
                site,
                modality,
                scanner,
                instances,
                bytes,
                instances_per_hour: instances as f64 / hours,
            },
        )
        .collect();
    Ok(PerformanceReport {
        since,
        until,
        hours,
        sites: query.sites.clone(),
        received,
        groups,
        drift,
        job_columns: JobColumnsView {
            scanner: columns.scanner,
            cache_hit: columns.cache_hit,
            inference_ms: columns.inference_ms,
        },
        truncated,
    })
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests;
