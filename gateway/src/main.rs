//! `dicom-gateway`: the command-line entry point.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dicom_gateway::config::{self, CliOverrides};
use dicom_gateway::{app, telemetry};

/// Exit code for a configuration error (sysexits EX_USAGE).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "dicom-gateway", version, about = "DICOM inference gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (embedded default configuration unless --config is given).
    Serve(ConfigArgs),
    /// Validate a configuration and print the effective result.
    CheckConfig(ConfigArgs),
}

#[derive(Args)]
struct ConfigArgs {
    /// Configuration file (TOML). Without it, the embedded default is used.
    #[arg(long, env = "DICOM_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (instances, index, audit trail).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// DIMSE listen address, e.g. 0.0.0.0:11112 (port 0: any free port).
    #[arg(long)]
    dimse_addr: Option<SocketAddr>,
    /// Prometheus metrics listen address.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

impl ConfigArgs {
    fn load(&self) -> Result<config::GatewayConfig, config::ConfigError> {
        let overrides = CliOverrides {
            data_dir: self.data_dir.clone(),
            dimse_addr: self.dimse_addr,
            metrics_addr: self.metrics_addr,
        };
        config::load(self.config.as_deref(), &overrides)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig(args) => match args.load() {
            Ok(config) => {
                println!("# configuration is valid\n{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Serve(args) => {
            let config = match args.load() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            telemetry::init_tracing(&config.logging);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(app::run(config, app::shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "gateway failed");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
