//! The DICOMweb subcommands: `stow`, `qido` and `wado`. Each prepares its
//! work untimed (encode the bodies, learn what the server holds), runs it,
//! and prints a report for people or one JSON object with `--json`. The
//! exit status is success only when nothing failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use dicom_loadtest::dicomweb::catalog::discover;
use dicom_loadtest::dicomweb::qido::{Query, query_mix, run_qido};
use dicom_loadtest::dicomweb::report::{QidoReport, StowReport, WadoReport};
use dicom_loadtest::dicomweb::stow::{StowOutcome, prepare_stow_requests, run_stow};
use dicom_loadtest::dicomweb::wado::{DEFAULT_ACCEPT, discover_series, run_wado};
use dicom_loadtest::dicomweb::{Endpoint, EndpointOptions, HttpVersionChoice};

use super::{SeriesArgs, progress_bar, series_specs};

/// Where the DICOMweb server is and how to talk to it.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Service root, e.g. https://localhost:8443/dicomweb.
    #[arg(long)]
    url: String,
    /// Bearer token. DICOM_LOADTEST_TOKEN keeps it out of the process list.
    #[arg(long, env = "DICOM_LOADTEST_TOKEN", hide_env_values = true)]
    token: String,
    /// Trust only this PEM CA (e.g. the gateway's certs/ca.pem); the
    /// platform's roots when absent.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// auto (TLS ALPN: HTTP/2 when offered), 1.1 or 2.
    #[arg(long, default_value = "auto")]
    http: HttpVersionChoice,
    /// Deadline for one request, response body included, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print one JSON object instead of text (and no progress bar).
    #[arg(long)]
    json: bool,
}

impl WebArgs {
    fn endpoint(&self) -> anyhow::Result<Endpoint> {
        Endpoint::new(&EndpointOptions {
            url: &self.url,
            token: &self.token,
            ca_pem: self.ca.as_deref(),
            http: self.http,
            timeout: Duration::from_secs(self.timeout.max(1)),
        })
        .context("could not set up the DICOMweb client")
    }
}

#[derive(Debug, Args)]
pub struct StowArgs {
    #[command(flatten)]
    web: WebArgs,
    #[command(flatten)]
    series: SeriesArgs,
    /// Instances per STOW-RS request.
    #[arg(long, default_value_t = 10)]
    per_request: usize,
    /// Concurrent clients, each posting its next request when the last is answered.
    #[arg(long, default_value_t = 1)]
    clients: usize,
}

#[derive(Debug, Args)]
pub struct QidoArgs {
    #[command(flatten)]
    web: WebArgs,
    /// Searches to run.
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seed of the mix: which studies and series each search aims at.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `limit` of the one study search that learns what exists.
    #[arg(long, default_value_t = 1000)]
    discover_studies: usize,
    /// Studies (spread over those found) whose series are learned, for the
    /// instances-of-series searches.
    #[arg(long, default_value_t = 20)]
    discover_series_of: usize,
    /// Only aim at studies matching KEY=VALUE (a QIDO attribute), repeatable.
    #[arg(long = "filter", value_parser = parse_key_value)]
    filters: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct WadoArgs {
    #[command(flatten)]
    web: WebArgs,
    /// Series to retrieve, found with QIDO in the order the server lists them.
    #[arg(long, default_value_t = 1)]
    series_count: usize,
    /// Concurrent retrieves.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Only series of this Modality (e.g. CT).
    #[arg(long)]
    modality: Option<String>,
    /// Only studies matching KEY=VALUE (e.g. PatientID=STOW-1), repeatable.
    #[arg(long = "filter", value_parser = parse_key_value)]
    filters: Vec<(String, String)>,
    /// `limit` of the study search that finds the series.
    #[arg(long, default_value_t = 100)]
    discover_studies: usize,
    /// Accept header of the retrieve.
    #[arg(long, default_value = DEFAULT_ACCEPT)]
    accept: String,
}

fn parse_key_value(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("`{value}` is not KEY=VALUE")),
    }
}

fn exit_code(clean: bool) -> ExitCode {
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub async fn stow(args: StowArgs) -> anyhow::Result<ExitCode> {
    let endpoint = args.web.endpoint()?;
    let specs = series_specs(&args.series);
    let per_request = args.per_request.max(1);
    // Generation and encoding are not part of the measurement.
    let started = Instant::now();
    let requests = tokio::task::spawn_blocking(move || prepare_stow_requests(&specs, per_request))
        .await
        .context("generator task failed")?
        .context("could not prepare the STOW-RS requests")?;
    let instances: usize = requests.iter().map(|r| r.instances).sum();
    if !args.web.json {
        eprintln!(
            "prepared {instances} instances in {} requests in {:.1} s",
            requests.len(),
            started.elapsed().as_secs_f64()
        );
    }
    let progress = progress_bar(instances as u64, "instances", !args.web.json);
    let outcome = run_stow(&endpoint, requests, args.clients, progress).await;
    let report = StowReport::from_outcome(&outcome);
    if args.web.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_human());
        let mut shown = Vec::new();
        for record in &outcome.records {
            if let StowOutcome::Failed { kind, message } = &record.outcome
                && !shown.contains(kind)
            {
                shown.push(*kind);
                eprintln!("first {kind} error: {message}");
            }
        }
    }
    Ok(exit_code(
        report.failures == 0 && report.stored == report.instances,
    ))
}

pub async fn qido(args: QidoArgs) -> anyhow::Result<ExitCode> {
    let endpoint = args.web.endpoint()?;
    let catalog = discover(
        &endpoint,
        args.discover_studies.max(1),
        args.discover_series_of,
        &args.filters,
    )
    .await
    .context("could not learn what the server holds")?;
    if catalog.studies.is_empty() {
        bail!("the server lists no studies to search for");
    }
    let queries: Vec<Query> = query_mix(&catalog, args.queries, args.seed);
    if !args.web.json {
        eprintln!(
            "learned {} studies and {} series; running {} searches",
            catalog.studies.len(),
            catalog.series.len(),
            queries.len()
        );
    }
    let progress = progress_bar(queries.len() as u64, "queries", !args.web.json);
    let outcome = run_qido(&endpoint, queries, args.concurrency, progress).await;
    let report = QidoReport::from_outcome(&outcome, catalog.studies.len(), catalog.series.len());
    if args.web.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_human());
        let mut shown = Vec::new();
        for record in &outcome.records {
            if let dicom_loadtest::dicomweb::qido::QueryOutcome::Failed { reason, message } =
                &record.outcome
                && !shown.contains(reason)
            {
                shown.push(reason.clone());
                eprintln!("first `{reason}` ({}): {message}", record.kind.label());
            }
        }
    }
    Ok(exit_code(report.failures == 0 && report.queries > 0))
}

pub async fn wado(args: WadoArgs) -> anyhow::Result<ExitCode> {
    let endpoint = args.web.endpoint()?;
    let series = discover_series(
        &endpoint,
        args.series_count.max(1),
        args.discover_studies.max(1),
        &args.filters,
        args.modality.as_deref(),
    )
    .await
    .context("could not find series to retrieve")?;
    if series.is_empty() {
        bail!("QIDO found no series matching the filters");
    }
    if !args.web.json {
        let expected: u64 = series.iter().filter_map(|s| s.instances).sum();
        eprintln!(
            "retrieving {} series ({expected} instances by QIDO's count)",
            series.len()
        );
    }
    let progress = progress_bar(series.len() as u64, "series", !args.web.json);
    let outcome = run_wado(&endpoint, series, args.concurrency, &args.accept, progress).await;
    let report = WadoReport::from_outcome(&outcome);
    if args.web.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_human());
        let mut shown = Vec::new();
        for record in &outcome.records {
            if let dicom_loadtest::dicomweb::wado::WadoOutcome::Failed { reason, message } =
                &record.outcome
                && !shown.contains(reason)
            {
                shown.push(reason.clone());
                eprintln!("first `{reason}`: {message}");
            }
        }
    }
    Ok(exit_code(report.is_clean()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_key_value_pairs() {
        assert_eq!(
            parse_key_value("PatientID=A=B"),
            Ok(("PatientID".into(), "A=B".into()))
        );
        assert!(parse_key_value("PatientID").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
