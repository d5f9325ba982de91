//! `dicom-gateway`: the command-line entry point.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dicom_gateway::admin::cli::{AdminTokensCommand, AuditCommand, Connection, RoutesAdminCommand};
use dicom_gateway::auth::TokenStore;
use dicom_gateway::config::{self, CliOverrides};
use dicom_gateway::{app, certs, telemetry};

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
    /// TLS certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// DICOMweb bearer tokens, stored hashed in the data directory.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// The model repository: list versions, verify files against manifests.
    #[command(subcommand)]
    Models(dicom_gateway::models::cli::ModelsCommand),
    /// Routes: test rules on files; list and act on a running gateway's
    /// routes through its admin API (flip, pin, rollback, drain, …).
    #[command(subcommand)]
    Routes(RoutesCommand),
    /// The audit trail of a running gateway, through its admin API.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Re-read and check a running gateway's configuration (admin API);
    /// a refused reload lists every problem and changes nothing.
    Reload(Connection),
    /// Operator tokens for the admin API, stored hashed in the data directory.
    #[command(subcommand)]
    AdminTokens(AdminTokensCommand),
    /// Reports read from the index database.
    #[command(subcommand)]
    Report(ReportCommand),
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Throughput, latency, error, fallback and positive rates, and drift,
    /// per site, scanner, route and model version.
    Performance {
        #[command(flatten)]
        data: DataDirArgs,
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
        /// Start of the window: RFC 3339 UTC or a duration back from now.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Print JSON (as GET /api/v1/performance) instead of tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RoutesCommand {
    /// Print which routes each DICOM file would take, and why (or why not).
    Test {
        /// Configuration whose routes file to use (embedded rules without one).
        #[arg(long, env = "DICOM_GATEWAY_CONFIG")]
        config: Option<PathBuf>,
        /// A routes file to test instead of the configured one.
        #[arg(long)]
        routes: Option<PathBuf>,
        /// The sending site to assume.
        #[arg(long, default_value = "demo")]
        site: String,
        /// The calling AE title to assume.
        #[arg(long, default_value = "DEMO-SCU")]
        calling_ae: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// DICOM Part 10 files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    #[command(flatten)]
    Admin(RoutesAdminCommand),
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Write a development CA and a server certificate (never for production).
    Dev {
        /// Folder for ca.pem, ca.key, server.pem, server.key.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Extra host names or IP addresses for the server certificate
        /// (localhost, 127.0.0.1 and ::1 are always included).
        #[arg(long = "name")]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Create a token; it is printed once and cannot be shown again.
    Create {
        #[command(flatten)]
        data: DataDirArgs,
        /// The site the token acts for (and reads by default).
        #[arg(long)]
        site: String,
        /// read, write, or read,write.
        #[arg(long, default_value = "read")]
        scope: String,
        /// Other sites this token may read, comma-separated; `*` for all.
        #[arg(long, default_value = "")]
        read_sites: String,
        /// A note saying who or what holds the token.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List tokens (ids, sites, scopes; never the secrets).
    List {
        #[command(flatten)]
        data: DataDirArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; a running gateway refuses it at once.
    Revoke {
        #[command(flatten)]
        data: DataDirArgs,
        id: String,
    },
}

#[derive(Args)]
struct DataDirArgs {
    /// Configuration file whose data directory to use.
    #[arg(long, env = "DICOM_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the configuration's).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    fn resolve(&self) -> Result<PathBuf, config::ConfigError> {
        let overrides = CliOverrides {
            data_dir: self.data_dir.clone(),
            ..Default::default()
        };
        Ok(config::load(self.config.as_deref(), &overrides)?.data_dir)
    }
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
    /// DICOMweb (HTTPS) listen address.
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Prometheus metrics listen address.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Admin API listen address (loopback by default).
    #[arg(long)]
    admin_addr: Option<SocketAddr>,
}

impl ConfigArgs {
    /// The configuration and every file it names (certificates, models,
    /// routes), all problems at once.
    fn load(&self) -> Result<config::GatewayConfig, config::ConfigError> {
        let overrides = CliOverrides {
            data_dir: self.data_dir.clone(),
            dimse_addr: self.dimse_addr,
            http_addr: self.http_addr,
            metrics_addr: self.metrics_addr,
            admin_addr: self.admin_addr,
        };
        config::load_checked(self.config.as_deref(), &overrides)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS crypto provider for the whole process (rustls with ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Certs(CertsCommand::Dev { out, names }) => {
            match certs::write_dev_certs(&out.join("server.pem"), &out.join("server.key"), &names) {
                Ok(files) => {
                    println!("development CA:     {}", files.ca_cert.display());
                    println!("server certificate: {}", files.server_cert.display());
                    println!("server key:         {}", files.server_key.display());
                    println!(
                        "trust the CA in clients (e.g. curl --cacert {}); never use these in production",
                        files.ca_cert.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Tokens(command) => tokens_command(command),
        Command::Models(command) => command.run(),
        Command::Routes(command) => routes_command(command),
        Command::Audit(command) => command.run(),
        Command::Reload(connection) => dicom_gateway::admin::cli::reload(connection),
        Command::AdminTokens(command) => command.run(),
        Command::Report(command) => report_command(command),
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

fn routes_command(command: RoutesCommand) -> ExitCode {
    use dicom_gateway::route::{RouteTable, test_files};
    let (config, routes, site, calling_ae, json, files) = match command {
        RoutesCommand::Admin(command) => return command.run(),
        RoutesCommand::Test {
            config,
            routes,
            site,
            calling_ae,
            json,
            files,
        } => (config, routes, site, calling_ae, json, files),
    };
    let routes_file = match routes {
        Some(file) => Some(file),
        None => match config::load(config.as_deref(), &CliOverrides::default()) {
            Ok(config) => config.pipeline.routes_file,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        },
    };
    let table = match routes_file {
        None => RouteTable::embedded_default(),
        Some(file) => {
            let parsed = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))
                .and_then(|text| RouteTable::from_toml(&text).map_err(|e| e.to_string()));
            match parsed {
                Ok(table) => table,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            }
        }
    };
    match test_files(&table, &files, &site, &calling_ae, json) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report_command(command: ReportCommand) -> ExitCode {
    let ReportCommand::Performance {
        data,
        site,
        since,
        json,
    } = command;
    let overrides = CliOverrides {
        data_dir: data.data_dir.clone(),
        ..Default::default()
    };
    let config = match config::load(data.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let args = dicom_gateway::report::cli::ReportArgs {
        data_dir: config.data_dir,
        site,
        since,
        json,
        drift: config.drift,
    };
    match dicom_gateway::report::cli::run(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tokens_command(command: TokensCommand) -> ExitCode {
    let data = match &command {
        TokensCommand::Create { data, .. }
        | TokensCommand::List { data, .. }
        | TokensCommand::Revoke { data, .. } => data,
    };
    let data_dir = match data.resolve() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    // Every stage's tables (a schema 1 index migrated), as `serve` would.
    if let Err(e) = dicom_gateway::app::schema::prepare_data_dir(&data_dir) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let mut store = match TokenStore::open(&data_dir) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        TokensCommand::Create {
            site,
            scope,
            read_sites,
            label,
            ..
        } => store
            .create(&site, &scope, &read_sites, &label)
            .map(|(record, token)| {
                eprintln!(
                    "token {} for site {} ({}); shown once, store it now:",
                    record.id, record.site, record.scopes
                );
                println!("{token}");
            }),
        TokensCommand::List { json, .. } => store.list().map(|records| {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&records).unwrap_or_default()
                );
            } else {
                println!(
                    "{:<10} {:<16} {:<11} {:<16} {:<28} {:<10} LABEL",
                    "ID", "SITE", "SCOPES", "READ SITES", "CREATED", "STATUS"
                );
                for r in records {
                    let status = if r.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<10} {:<16} {:<11} {:<16} {:<28} {:<10} {}",
                        r.id, r.site, r.scopes, r.read_sites, r.created_at, status, r.label
                    );
                }
            }
        }),
        TokensCommand::Revoke { id, .. } => {
            store.revoke(&id).map(|()| println!("token {id} revoked"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
