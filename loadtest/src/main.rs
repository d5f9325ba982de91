//! `dicom-loadtest`: send synthetic series to a storage SCP and report
//! throughput and latency, write the same series as files for reference
//! tools, or check a peer with C-ECHO.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use dicom_dictionary_std::uids;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use dicom_loadtest::report::StoreReport;
use dicom_loadtest::run::{StoreRunConfig, prepare_series, run_store};
use dicom_loadtest::scu::{DEFAULT_MAX_PDU, ScuOptions, StoreClient};
use dicom_loadtest::synth::{SeriesGenerator, SeriesSpec, SynthModality};

#[derive(Debug, Parser)]
#[command(name = "dicom-loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send synthetic series over parallel associations and report
    /// instances/s, MB/s and acknowledgement latency.
    Store(StoreArgs),
    /// Write synthetic series as Part 10 files (e.g. for dcmtk `storescu`).
    Generate(GenerateArgs),
    /// Check a peer with C-ECHO.
    Echo(EchoArgs),
}

#[derive(Debug, Args)]
struct PeerArgs {
    /// Peer address, HOST:PORT.
    #[arg(long)]
    addr: String,
    #[arg(long, default_value = "DICOM-LOADTEST")]
    calling_ae: String,
    #[arg(long, default_value = "ANY-SCP")]
    called_ae: String,
    /// Maximum PDU length we accept from the peer.
    #[arg(long, default_value_t = DEFAULT_MAX_PDU)]
    max_pdu: u32,
}

#[derive(Debug, Args)]
struct SeriesArgs {
    /// ct, mr, cr or dx.
    #[arg(long, default_value = "ct")]
    modality: SynthModality,
    /// Instances per series.
    #[arg(long, default_value_t = 500)]
    instances: usize,
    /// Number of series, all in one study; series k uses seed + k.
    #[arg(long, default_value_t = 1)]
    series: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    rows: Option<u16>,
    #[arg(long)]
    columns: Option<u16>,
    #[arg(long)]
    station_name: Option<String>,
    #[arg(long)]
    institution_name: Option<String>,
    #[arg(long)]
    manufacturer: Option<String>,
    #[arg(long)]
    model_name: Option<String>,
    #[arg(long)]
    body_part: Option<String>,
    #[arg(long)]
    protocol_name: Option<String>,
    #[arg(long)]
    series_description: Option<String>,
    #[arg(long)]
    patient_name: Option<String>,
    #[arg(long)]
    patient_id: Option<String>,
    /// Put the series into this study instead of one derived from the seed.
    #[arg(long)]
    study_uid: Option<String>,
}

#[derive(Debug, Args)]
struct StoreArgs {
    #[command(flatten)]
    peer: PeerArgs,
    #[command(flatten)]
    series: SeriesArgs,
    /// Parallel associations; instances are split between them.
    #[arg(long, default_value_t = 1)]
    associations: usize,
    /// implicit, explicit, or a transfer syntax UID.
    #[arg(long, default_value = "implicit")]
    transfer_syntax: String,
    /// Print one JSON object instead of text (and no progress bar).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Directory to write the files into (created if missing).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    series: SeriesArgs,
}

#[derive(Debug, Args)]
struct EchoArgs {
    #[command(flatten)]
    peer: PeerArgs,
    /// C-ECHOs to send in one association.
    #[arg(long, default_value_t = 1)]
    count: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Store(args) => store(args).await,
        Command::Generate(args) => generate(args),
        Command::Echo(args) => echo(args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn store(args: StoreArgs) -> anyhow::Result<ExitCode> {
    let addr = resolve(&args.peer.addr).await?;
    let transfer_syntax = transfer_syntax_uid(&args.transfer_syntax);
    let scu = scu_options(&args.peer, transfer_syntax.clone());
    scu.validate()?;
    let specs = series_specs(&args.series);

    // Generation and encoding are not part of the measurement.
    let started = Instant::now();
    let prepared = tokio::task::spawn_blocking({
        let transfer_syntax = transfer_syntax.clone();
        move || prepare_series(&specs, &transfer_syntax)
    })
    .await
    .context("generator task failed")?
    .context("could not generate the series")?;
    if !args.json {
        eprintln!(
            "generated {} instances in {:.1} s",
            prepared.len(),
            started.elapsed().as_secs_f64()
        );
    }

    let progress = progress_bar(prepared.len() as u64, !args.json);
    let config = StoreRunConfig {
        addr,
        scu,
        associations: args.associations,
    };
    let outcome = run_store(&config, prepared, progress).await;
    let report = StoreReport::from_outcome(&outcome);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_human());
        // Say why, not only how many: the first error of each kind.
        let mut shown = Vec::new();
        for record in &outcome.results {
            if let dicom_loadtest::run::InstanceResult::Failed { kind, message } = &record.outcome {
                if !shown.contains(kind) {
                    shown.push(*kind);
                    eprintln!("first {kind} error: {message}");
                }
            }
        }
    }
    Ok(
        if report.failures == 0 && report.stored == report.instances {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("could not create {}", args.out.display()))?;
    let mut files = 0usize;
    let mut bytes = 0usize;
    for (series_index, spec) in series_specs(&args.series).iter().enumerate() {
        for (instance_index, inst) in SeriesGenerator::new(spec).enumerate() {
            let file = inst.to_part10().context("could not encode instance")?;
            let name = format!(
                "{}-{:02}-{:05}.dcm",
                spec.modality.code(),
                series_index + 1,
                instance_index + 1
            );
            write_file(&args.out.join(name), &file)?;
            files += 1;
            bytes += file.len();
        }
    }
    eprintln!(
        "wrote {files} files ({:.1} MB) to {}",
        bytes as f64 / 1e6,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn echo(args: EchoArgs) -> anyhow::Result<ExitCode> {
    let addr = resolve(&args.peer.addr).await?;
    let options = scu_options(&args.peer, uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string());
    let mut client = StoreClient::connect(addr, &options, &[])
        .await
        .with_context(|| format!("could not associate with {addr}"))?;
    let mut all_ok = true;
    for _ in 0..args.count.max(1) {
        let started = Instant::now();
        let status = client.echo().await.context("C-ECHO failed")?;
        println!(
            "C-ECHO status {status:#06X} in {:.2} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        all_ok &= status == 0;
    }
    client.release().await.context("release failed")?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn series_specs(args: &SeriesArgs) -> Vec<SeriesSpec> {
    let count = args.series.max(1);
    let mut specs: Vec<SeriesSpec> = (0..count)
        .map(|k| {
            let seed = args.seed.wrapping_add(k as u64);
            let mut spec = SeriesSpec::for_modality(args.modality, args.instances, seed);
            let set = |field: &mut String, value: &Option<String>| {
                if let Some(value) = value {
                    field.clone_from(value);
                }
            };
            set(&mut spec.station_name, &args.station_name);
            set(&mut spec.institution_name, &args.institution_name);
            set(&mut spec.manufacturer, &args.manufacturer);
            set(&mut spec.model_name, &args.model_name);
            set(&mut spec.body_part, &args.body_part);
            set(&mut spec.protocol_name, &args.protocol_name);
            set(&mut spec.series_description, &args.series_description);
            set(&mut spec.patient_name, &args.patient_name);
            set(&mut spec.patient_id, &args.patient_id);
            spec.rows = args.rows.unwrap_or(spec.rows);
            spec.columns = args.columns.unwrap_or(spec.columns);
            spec.study_instance_uid.clone_from(&args.study_uid);
            spec
        })
        .collect();
    // Several series form one study of one patient: all name the first
    // series' study explicitly, so they also agree on accession and date.
    if count > 1 {
        let study_uid = specs[0].resolved_study_instance_uid();
        let patient_id = specs[0].patient_id.clone();
        for spec in &mut specs {
            spec.study_instance_uid = Some(study_uid.clone());
            spec.patient_id.clone_from(&patient_id);
        }
    }
    specs
}

fn scu_options(peer: &PeerArgs, transfer_syntax: String) -> ScuOptions {
    ScuOptions {
        calling_ae: peer.calling_ae.clone(),
        called_ae: peer.called_ae.clone(),
        max_pdu: peer.max_pdu,
        transfer_syntax,
    }
}

fn transfer_syntax_uid(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "implicit" => uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string(),
        "explicit" => uids::EXPLICIT_VR_LITTLE_ENDIAN.to_string(),
        _ => name.to_string(),
    }
}

async fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    let mut addrs = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("could not resolve `{addr}` (expected HOST:PORT)"))?;
    match addrs.next() {
        Some(addr) => Ok(addr),
        None => bail!("`{addr}` resolves to no address"),
    }
}

/// A bar on stderr when someone is watching; hidden for scripts and `--json`.
fn progress_bar(total: u64, wanted: bool) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} instances  {per_sec}  eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("could not write {}", path.display()))
}
