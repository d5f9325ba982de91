//! `dicom-loadtest`: send synthetic series to a storage SCP and report
//! throughput and latency, write the same series as files for reference
//! tools, or check a peer with C-ECHO; drive a DICOMweb server with
//! STOW-RS, QIDO-RS and WADO-RS load (see `dicomweb_commands`).

#![forbid(unsafe_code)]

mod dicomweb_commands;

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
use dicom_loadtest::synth::hostile::{HostileKind, hostile};
use dicom_loadtest::synth::{SeriesGenerator, SeriesSpec, SynthModality, synthetic_patient};

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
    /// Send synthetic series with STOW-RS over concurrent HTTPS clients and
    /// report instances/s, MB/s and request latency.
    Stow(dicomweb_commands::StowArgs),
    /// Run a deterministic mix of QIDO-RS searches aimed at what the server
    /// holds and report latency per kind of search.
    Qido(dicomweb_commands::QidoArgs),
    /// Retrieve whole series with WADO-RS, streaming and checking every
    /// part, and report MB/s and per-series latency.
    Wado(dicomweb_commands::WadoArgs),
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
    /// ct, mr, cr or dx; a comma-separated list gives study k the k-th
    /// modality, round robin (with --studies).
    #[arg(long, default_value = "ct", value_delimiter = ',')]
    modality: Vec<SynthModality>,
    /// Instances per series.
    #[arg(long, default_value_t = 500)]
    instances: usize,
    /// Series per study; series k of a study uses the next seed.
    #[arg(long, default_value_t = 1)]
    series: usize,
    /// Studies, each of its own synthetic patient (IDs `<patient-id>-NNNNN`,
    /// varied names) unless --patient-name/--patient-id say otherwise.
    #[arg(long, default_value_t = 1)]
    studies: usize,
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
    /// Put the series into this study instead of one derived from the seed
    /// (only with one study).
    #[arg(long, conflicts_with = "studies")]
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
    /// Write these hostile objects (comma-separated kind names, or `all`)
    /// as `hostile-KIND.dcm` instead of series: the seed corpus of the
    /// gateway's fuzz targets. The seed is --seed.
    #[arg(long, value_delimiter = ',')]
    hostile: Vec<String>,
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
        Command::Stow(args) => dicomweb_commands::stow(args).await,
        Command::Qido(args) => dicomweb_commands::qido(args).await,
        Command::Wado(args) => dicomweb_commands::wado(args).await,
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

    let progress = progress_bar(prepared.len() as u64, "instances", !args.json);
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
            if let dicom_loadtest::run::InstanceResult::Failed { kind, message } = &record.outcome
                && !shown.contains(kind)
            {
                shown.push(*kind);
                eprintln!("first {kind} error: {message}");
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
    if !args.hostile.is_empty() {
        return generate_hostile(&args);
    }
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

fn generate_hostile(args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let mut kinds = Vec::new();
    for name in &args.hostile {
        if name.eq_ignore_ascii_case("all") {
            kinds.extend(HostileKind::ALL);
        } else {
            kinds.push(name.parse::<HostileKind>()?);
        }
    }
    for kind in kinds {
        let object = hostile(kind, args.series.seed)
            .with_context(|| format!("could not build the {kind} object"))?;
        let path = args.out.join(format!("hostile-{kind}.dcm"));
        write_file(&path, &object.part10)?;
        eprintln!("wrote {} ({} bytes)", path.display(), object.part10.len());
    }
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
    let studies = args.studies.max(1);
    let per_study = args.series.max(1);
    let mut specs = Vec::with_capacity(studies * per_study);
    for study in 0..studies {
        let modality = args
            .modality
            .get(study % args.modality.len().max(1))
            .copied()
            .unwrap_or(SynthModality::Ct);
        let mut group: Vec<SeriesSpec> = (0..per_study)
            .map(|k| {
                let seed = args.seed.wrapping_add((study * per_study + k) as u64);
                series_spec(args, modality, seed)
            })
            .collect();
        if studies > 1 {
            // One patient per study, so searches have patients to tell apart.
            let prefix = args
                .patient_id
                .clone()
                .unwrap_or_else(|| format!("LT{}", args.seed));
            let (patient_id, patient_name) = synthetic_patient(&prefix, study);
            for spec in &mut group {
                spec.patient_id.clone_from(&patient_id);
                if args.patient_name.is_none() {
                    spec.patient_name.clone_from(&patient_name);
                }
            }
        }
        // Several series form one study of one patient: all name the first
        // series' study explicitly, so they also agree on accession and date.
        if per_study > 1 {
            let study_uid = group[0].resolved_study_instance_uid();
            let patient_id = group[0].patient_id.clone();
            for spec in &mut group {
                spec.study_instance_uid = Some(study_uid.clone());
                spec.patient_id.clone_from(&patient_id);
            }
        }
        specs.extend(group);
    }
    specs
}

fn series_spec(args: &SeriesArgs, modality: SynthModality, seed: u64) -> SeriesSpec {
    let mut spec = SeriesSpec::for_modality(modality, args.instances, seed);
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
fn progress_bar(total: u64, unit: &str, wanted: bool) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("could not write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs_for(args: &[&str]) -> Vec<SeriesSpec> {
        let argv = ["dicom-loadtest", "generate", "--out", "unused"];
        let cli = Cli::try_parse_from(argv.iter().chain(args)).expect("parses");
        match cli.command {
            Command::Generate(generate) => series_specs(&generate.series),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn one_study_keeps_the_original_layout() {
        let specs = specs_for(&["--series", "2", "--seed", "9", "--instances", "3"]);
        assert_eq!(specs.len(), 2);
        assert_eq!((specs[0].seed, specs[1].seed), (9, 10));
        assert_eq!(specs[0].study_instance_uid, specs[1].study_instance_uid);
        assert_eq!(specs[0].patient_id, specs[1].patient_id);
        assert_eq!(specs[0].modality, SynthModality::Ct);
    }

    #[test]
    fn studies_get_their_own_patients_and_modalities_in_turn() {
        let specs = specs_for(&["--studies", "3", "--series", "2", "--modality", "ct,mr"]);
        assert_eq!(specs.len(), 6);
        let modalities: Vec<_> = specs.iter().map(|s| s.modality.code()).collect();
        assert_eq!(modalities, ["CT", "CT", "MR", "MR", "CT", "CT"]);
        let seeds: Vec<_> = specs.iter().map(|s| s.seed).collect();
        assert_eq!(seeds, [1, 2, 3, 4, 5, 6]);
        for pair in specs.chunks(2) {
            assert_eq!(pair[0].study_instance_uid, pair[1].study_instance_uid);
            assert_eq!(pair[0].patient_id, pair[1].patient_id);
            assert_eq!(pair[0].patient_name, pair[1].patient_name);
        }
        assert_ne!(specs[0].study_instance_uid, specs[2].study_instance_uid);
        assert_eq!(specs[0].patient_id, "LT1-00000");
        assert_eq!(specs[2].patient_name, "BAKER^ALEX");
        let conflicting = ["dicom-loadtest", "generate", "--out", "x", "--studies", "2"];
        let with_uid = conflicting.iter().chain(&["--study-uid", "1.2.3"]);
        assert!(Cli::try_parse_from(with_uid).is_err());
    }

    #[test]
    fn hostile_flag_writes_one_file_per_kind() {
        let out = std::env::temp_dir().join(format!("loadtest-hostile-{}", std::process::id()));
        let argv = ["dicom-loadtest", "generate", "--out"];
        let rest = ["--hostile", "empty,few-bytes", "--seed", "3"];
        let cli = Cli::try_parse_from(argv.into_iter().chain([out.to_str().unwrap()]).chain(rest))
            .expect("parses");
        let Command::Generate(args) = cli.command else {
            panic!("not generate");
        };
        generate(args).expect("writes");
        let mut names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["hostile-empty.dcm", "hostile-few-bytes.dcm"]);
        let few = std::fs::read(out.join("hostile-few-bytes.dcm")).unwrap();
        assert_eq!(&few[128..132], b"DICM");
        std::fs::remove_dir_all(&out).unwrap();
        let bad = [
            "dicom-loadtest",
            "generate",
            "--out",
            "x",
            "--hostile",
            "nope",
        ];
        let Command::Generate(args) = Cli::try_parse_from(bad).unwrap().command else {
            panic!("not generate");
        };
        assert!(generate_hostile(&args).is_err());
    }
}
