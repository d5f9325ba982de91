//! `dicom-gateway admin-tokens create|list|revoke`: on the gateway's own
//! database, like `tokens`, so the first token needs no token.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::admin::tokens::AdminTokenStore;
use crate::config::{self, CliOverrides};

/// A bad configuration (sysexits EX_USAGE), as everywhere in the CLI.
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Debug, Subcommand)]
pub enum AdminTokensCommand {
    /// Create an operator token; printed once, never shown again.
    Create {
        /// The operator's identity in the audit trail, e.g. alice.
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List operator tokens (names, roles; never the secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Revoke a token by name or id; a running gateway refuses it at once.
    Revoke {
        name_or_id: String,
        #[command(flatten)]
        data: DataDir,
    },
}

/// Which gateway's database.
#[derive(Debug, Clone, Args)]
pub struct DataDir {
    #[arg(long, env = "DICOM_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl AdminTokensCommand {
    pub fn run(self) -> ExitCode {
        let data = match &self {
            Self::Create { data, .. } | Self::List { data, .. } | Self::Revoke { data, .. } => data,
        };
        let overrides = CliOverrides {
            data_dir: data.data_dir.clone(),
            ..CliOverrides::default()
        };
        let data_dir = match config::load(data.config.as_deref(), &overrides) {
            Ok(config) => config.data_dir,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        };
        // Every stage's tables (a schema 1 index migrated), as `serve` would.
        if let Err(e) = crate::app::schema::prepare_data_dir(&data_dir) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        let mut store = match AdminTokenStore::open(&data_dir) {
            Ok(store) => store,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result = match self {
            Self::Create { name, role, .. } => store.create(&name, &role).map(|(record, token)| {
                eprintln!(
                    "operator token {} for {} ({}); shown once, store it now:",
                    record.id, record.name, record.role
                );
                println!("{token}");
            }),
            Self::List { json, .. } => store.list().map(|records| {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&records).unwrap_or_default()
                    );
                    return;
                }
                println!(
                    "{:<10} {:<24} {:<9} {:<28} STATUS",
                    "ID", "NAME", "ROLE", "CREATED"
                );
                for r in records {
                    let status = match &r.revoked_at {
                        Some(at) => format!("revoked {at}"),
                        None => "active".to_string(),
                    };
                    println!(
                        "{:<10} {:<24} {:<9} {:<28} {status}",
                        r.id, r.name, r.role, r.created_at
                    );
                }
            }),
            Self::Revoke { name_or_id, .. } => store.revoke(&name_or_id).map(|record| {
                println!("operator token {} ({}) revoked", record.id, record.name);
            }),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
