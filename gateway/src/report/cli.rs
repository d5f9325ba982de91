//! `dicom-gateway report performance`: the performance report as a table
//! (or JSON), read straight from the index database in the data directory.
//!
//! Reading the database rather than calling the HTTPS API means the command
//! works with the gateway stopped, needs no token, TLS client or CA file,
//! and adds no HTTP client to the binary; whoever can run it on the host can
//! read the data directory anyway. It opens the database read-only, and the
//! drift rows are those the gateway last persisted (every
//! `drift.persist_interval`).

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{DriftSection, Latency, PerformanceReport, ReportError, ReportQuery, build};
use crate::config::DriftConfig;
use crate::store::IndexReader;
use crate::telemetry::ScannerLabels;
use crate::telemetry::drift::DriftHandle;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct ReportArgs {
    pub data_dir: PathBuf,
    pub site: Option<String>,
    /// RFC 3339 UTC or a duration back from now (`24h`).
    pub since: String,
    pub json: bool,
    /// The `[drift]` section, for the threshold.
    pub drift: DriftConfig,
}

/// Builds the report and renders it as text or JSON.
pub fn run(args: &ReportArgs) -> Result<String, ReportError> {
    let index = crate::store::Layout::new(&args.data_dir).index_path();
    if !index.exists() {
        return Err(ReportError::NoIndex(index));
    }
    let conn = IndexReader::new(index).connect()?;
    let sites = args.site.clone().map(|s| vec![s]);
    let query = ReportQuery::new(sites.clone(), &args.since, crate::time::unix_millis())?;
    let drift = persisted_drift(&conn, &args.drift, sites.as_deref())?;
    let report = build(&conn, &query, &ScannerLabels::new(), drift)?;
    Ok(if args.json {
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    } else {
        render_table(&report)
    })
}

/// The drift state the gateway last wrote, through a private monitor (its
/// metrics go to a throw-away registry).
fn persisted_drift(
    conn: &rusqlite::Connection,
    config: &DriftConfig,
    sites: Option<&[String]>,
) -> Result<DriftSection, ReportError> {
    let monitor = DriftHandle::register(&prometheus::Registry::new(), config.clone());
    monitor.restore(conn)?;
    Ok(DriftSection {
        threshold: config.threshold,
        rows: monitor.rows(sites),
        baselines: monitor.baselines(),
    })
}

/// The report as aligned text tables.
pub fn render_table(report: &PerformanceReport) -> String {
    let mut out = String::new();
    let sites = report
        .sites
        .as_ref()
        .map_or("all".to_string(), |s| s.join(", "));
    let _ = writeln!(
        out,
        "Performance {} → {} ({:.1} h), sites: {sites}{}",
        report.since,
        report.until,
        report.hours,
        if report.truncated {
            " (truncated: too many jobs, narrow the window)"
        } else {
            ""
        }
    );

    out.push_str("\nRECEIVED\n");
    let mut table = vec![row(&[
        "SITE",
        "MODALITY",
        "SCANNER",
        "INSTANCES",
        "PER HOUR",
        "MB",
    ])];
    for r in &report.received {
        table.push(vec![
            r.site.clone(),
            r.modality.clone(),
            r.scanner.clone(),
            r.instances.to_string(),
            format!("{:.1}", r.instances_per_hour),
            format!("{:.1}", r.bytes as f64 / 1e6),
        ]);
    }
    out.push_str(&align(&table, "(nothing received)"));

    out.push_str("\nJOBS (latency in seconds: p50 / p95 / p99)\n");
    let mut table = vec![row(&[
        "SITE",
        "SCANNER",
        "ROUTE",
        "MODEL",
        "DONE",
        "FAILED",
        "PENDING",
        "JOBS/H",
        "INSTANCES",
        "END TO END",
        "PROCESSING",
        "INFERENCE",
        "ERROR",
        "FALLBACK",
        "POSITIVE",
        "CACHE HIT",
    ])];
    for g in &report.groups {
        table.push(vec![
            g.site.clone(),
            g.scanner.clone(),
            g.route.clone(),
            format!("{}@{}", g.model, g.version),
            g.jobs.done.to_string(),
            g.jobs.failed.to_string(),
            g.jobs.pending.to_string(),
            format!("{:.1}", g.jobs_per_hour),
            g.instances.to_string(),
            percentiles(&g.end_to_end_seconds),
            percentiles(&g.processing_seconds),
            g.inference_seconds.as_ref().map_or("-".into(), percentiles),
            percent(g.error_rate),
            percent(g.fallback_rate),
            percent(g.positive_rate),
            percent(g.cache_hit_rate),
        ]);
    }
    out.push_str(&align(&table, "(no jobs)"));

    let _ = writeln!(out, "\nDRIFT (PSI threshold {:.2})", report.drift.threshold);
    let mut table = vec![row(&[
        "SITE", "SCANNER", "MODEL", "QUANTITY", "PSI", "KS", "N", "BASELINE", "STATE",
    ])];
    for d in &report.drift.rows {
        let state = match (d.psi, d.over_threshold) {
            (None, _) => "collecting",
            (Some(_), true) => "OVER",
            (Some(_), false) if d.alerting => "alerting",
            (Some(_), false) => "ok",
        };
        table.push(vec![
            d.site.clone(),
            d.scanner.clone(),
            format!("{}@{}", d.model, d.version),
            d.quantity.clone(),
            d.psi.map_or("-".into(), |p| format!("{p:.3}")),
            d.ks.map_or("-".into(), |k| format!("{k:.3}")),
            d.observations.to_string(),
            d.baseline.clone(),
            state.into(),
        ]);
    }
    out.push_str(&align(&table, "(no drift state yet)"));
    let warming: Vec<String> = report
        .drift
        .baselines
        .iter()
        .filter(|b| b.source == "warming")
        .map(|b| {
            format!(
                "{}@{} {} ({})",
                b.model, b.version, b.quantity, b.observations
            )
        })
        .collect();
    if !warming.is_empty() {
        let _ = writeln!(out, "baselines still forming: {}", warming.join(", "));
    }
    out
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned columns, two spaces apart; `empty` when only the header.
fn align(table: &[Vec<String>], empty: &str) -> String {
    if table.len() <= 1 {
        return format!("{empty}\n");
    }
    let columns = table[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in table {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn percentiles(l: &Latency) -> String {
    match (l.p50, l.p95, l.p99) {
        (Some(a), Some(b), Some(c)) => format!("{a:.2} / {b:.2} / {c:.2}"),
        _ => "-".into(),
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
}
