//! How the operator commands reach the admin API: flags and environment,
//! defaults found from the gateway's configuration and `listeners.json`,
//! and the mapping of answers to output and exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::admin::client::{AdminClient, ClientError, url_for};
use crate::config::{self, CliOverrides};

const EXIT_REFUSED: u8 = 1;
const EXIT_BAD_CONFIG: u8 = 64;
const EXIT_UNREACHABLE: u8 = 69;

/// How to reach the admin API.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Admin API base URL [default: this gateway's admin listener, from
    /// listeners.json in the data directory, else the configuration].
    #[arg(long, env = "DICOM_GATEWAY_ADMIN_URL")]
    pub admin_url: Option<String>,
    /// Operator token (`admin-tokens create`).
    #[arg(long, env = "DICOM_GATEWAY_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate to trust [default: the gateway's development CA,
    /// ca.pem beside the admin certificate, when present; else the system's].
    #[arg(long, env = "DICOM_GATEWAY_ADMIN_CA")]
    pub ca: Option<PathBuf>,
    /// Configuration used to find the defaults above.
    #[arg(long, env = "DICOM_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory used to find listeners.json.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Connects, runs `call`, prints its JSON (`--json`) or its text, and maps
/// failures to exit codes with the gateway's own words on stderr.
pub(super) fn run_on<F, Fut>(connection: &Connection, call: F) -> ExitCode
where
    F: FnOnce(AdminClient) -> Fut,
    Fut: std::future::Future<Output = Result<(Value, String), ClientError>>,
{
    let (url, ca) = match defaults(connection) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let client = match AdminClient::new(&url, connection.token.as_deref(), ca.as_deref()) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(call(client)) {
        Ok((body, text)) => {
            if connection.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&body).unwrap_or_default()
                );
            } else {
                print!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let ClientError::Problem { body, .. } = &e {
                if connection.json {
                    println!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
                }
                eprintln!("error: {e}");
                for problem in body["problems"].as_array().into_iter().flatten() {
                    eprintln!("  - {}", problem.as_str().unwrap_or_default());
                }
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::from(if e.is_answer() {
                EXIT_REFUSED
            } else {
                EXIT_UNREACHABLE
            })
        }
    }
}

/// The admin URL and CA to use when the flags do not say: the bound
/// address in `listeners.json`, else the configured one; the development
/// CA beside the admin certificate when it exists.
/// The configuration is needed only for what the flags leave out, and a
/// bad one matters only when the URL itself must come from it.
fn defaults(connection: &Connection) -> Result<(String, Option<PathBuf>), config::ConfigError> {
    if let (Some(url), Some(ca)) = (&connection.admin_url, &connection.ca) {
        return Ok((url.clone(), Some(ca.clone())));
    }
    let overrides = CliOverrides {
        data_dir: connection.data_dir.clone(),
        ..CliOverrides::default()
    };
    let config = config::load(connection.config.as_deref(), &overrides);
    let url = match (&connection.admin_url, &config) {
        (Some(url), _) => url.clone(),
        (None, Ok(config)) => running_admin_url(&config.data_dir).unwrap_or_else(|| {
            let scheme = if config.admin.tls.is_some() {
                "https"
            } else {
                "http"
            };
            url_for(scheme, config.admin.listen)
        }),
        (None, Err(e)) => return Err(config::ConfigError(e.0.clone())),
    };
    let ca = connection.ca.clone().or_else(|| {
        let cert = &config.as_ref().ok()?.admin.tls.as_ref()?.cert;
        let ca = cert.parent().unwrap_or(Path::new(".")).join("ca.pem");
        ca.exists().then_some(ca)
    });
    Ok((url, ca))
}

/// The admin address a running gateway wrote into `listeners.json`.
fn running_admin_url(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(crate::app::LISTENERS_FILE)).ok()?;
    let listeners: Value = serde_json::from_str(&text).ok()?;
    let addr = listeners["admin"].as_str()?.parse().ok()?;
    let scheme = listeners["admin_scheme"].as_str().unwrap_or("https");
    Some(url_for(scheme, addr))
}
