//! Configuration: raw TOML → validated, typed [`GatewayConfig`].
//!
//! Order of precedence, lowest first: the embedded default
//! (`config/gateway.toml`) or the file given with `--config`, then
//! `DICOM_GATEWAY__…` environment overrides, then command-line flags.
//! [`load`] reports every problem at once, so an operator fixes a file in one
//! pass instead of one error per restart.

mod admin;
mod drift;
mod env;
mod files;
mod pipeline;
mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

pub use admin::{AdminConfig, AuditConfig, DEFAULT_ADMIN_LISTEN, RawAdmin, RawAudit};
pub use drift::{DriftConfig, RawDrift};
pub use env::ENV_PREFIX;
pub use files::check_files;
pub use pipeline::{PipelineConfig, RawPipeline};
pub use raw::RawConfig;
pub use validate::{check_ae_title, check_label_name};

/// The configuration compiled into the binary; `serve` with no flags runs on it.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../config/gateway.toml");

/// Everything the gateway needs, validated.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub ae_title: String,
    pub data_dir: PathBuf,
    /// How long open associations may go on after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    pub dimse: DimseConfig,
    pub dicomweb: DicomwebConfig,
    pub store: StoreConfig,
    pub metrics: MetricsConfig,
    pub logging: LoggingConfig,
    pub sites: Vec<SiteConfig>,
    /// Models, routes, assembly and inference jobs.
    pub pipeline: PipelineConfig,
    /// Where results are forwarded by C-STORE.
    pub destinations: Vec<crate::egress::Destination>,
    /// Backoff and attempts of the forwarding queue.
    pub egress_retry: crate::egress::RetryPolicy,
    /// The drift monitor: bins, baseline, threshold, bounds.
    pub drift: DriftConfig,
    /// The operator API (its own HTTPS listener).
    pub admin: AdminConfig,
    /// Audit trail export.
    pub audit: AuditConfig,
    /// The inference result cache (and Redis for shared route state).
    pub cache: crate::cache::CacheConfig,
    /// The raw form after overrides, for `check-config` to print.
    pub effective: RawConfig,
    /// The file this came from (`None`: the embedded default) and the
    /// command-line overrides applied, so a reload reads it the same way.
    pub source: Option<PathBuf>,
    pub cli: CliOverrides,
}

#[derive(Debug, Clone)]
pub struct DimseConfig {
    pub listen: SocketAddr,
    pub max_pdu_length: u32,
    pub max_associations: usize,
    /// Connections that have not yet sent a valid A-ASSOCIATE-RQ; they take
    /// no association slot (`dimse::admission`).
    pub max_negotiating: usize,
    /// Of those, from one source address.
    pub max_negotiating_per_peer: usize,
    pub establish_timeout: Duration,
    pub message_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_instance_size: u64,
    /// Site that receives calling AE titles no site lists; `None` rejects them.
    pub unknown_ae_site: Option<String>,
}

/// The DICOMweb HTTPS server.
#[derive(Debug, Clone)]
pub struct DicomwebConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// `None`: plain HTTP, only behind a TLS-terminating proxy.
    pub tls: Option<TlsFiles>,
    pub max_body_size: u64,
    pub max_parts: usize,
    /// Deadline for a whole request body, not only its headers.
    pub body_timeout: Duration,
    pub qido_default_limit: usize,
    pub qido_max_limit: usize,
    /// Tokens given (hashed) in the config, besides those in the database.
    pub tokens: Vec<crate::auth::Principal>,
    /// SHA-256 of each configured token, parallel to `tokens`.
    pub token_hashes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Create a development CA and server certificate there if both are missing.
    pub create_dev_certs: bool,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub min_free_space: u64,
    pub duplicate_policy: DuplicatePolicy,
    /// Deepest sequence nesting accepted from a peer (`store::validate`).
    pub max_nesting_depth: usize,
}

/// What to do when a different object arrives with a SOP Instance UID we hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicatePolicy {
    /// Keep the stored object and refuse the new one (the default).
    Reject,
    /// Store the new object; the old file moves to `superseded/`.
    Replace,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub json: bool,
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteConfig {
    pub name: String,
    pub ae_titles: Vec<String>,
    /// Empty means any address.
    pub allowed_peers: Vec<IpNet>,
}

/// Command-line overrides, applied last.
#[derive(Debug, Clone, Default)]
pub struct CliOverrides {
    pub data_dir: Option<PathBuf>,
    pub dimse_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
}

/// Every problem found in a configuration, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration ({} problem{}):\n  - {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// Reads `path` (or the embedded default), applies the process environment
/// and `cli`, and validates.
pub fn load(path: Option<&Path>, cli: &CliOverrides) -> Result<GatewayConfig, ConfigError> {
    load_file(path, cli, Files::Unchecked)
}

/// [`load`], and every file the configuration names exists and parses
/// ([`check_files`]), all problems reported together. What `check-config`,
/// `serve` and a reload use; commands that only need the data directory
/// use [`load`].
pub fn load_checked(path: Option<&Path>, cli: &CliOverrides) -> Result<GatewayConfig, ConfigError> {
    load_file(path, cli, Files::Checked)
}

/// [`load`] without touching the file system or the real environment.
pub fn load_from_str(
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
    cli: &CliOverrides,
) -> Result<GatewayConfig, ConfigError> {
    load_text(text, vars, cli, Files::Unchecked)
}

/// Whether to look at the files the configuration names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Files {
    Checked,
    Unchecked,
}

fn load_file(
    path: Option<&Path>,
    cli: &CliOverrides,
    files: Files,
) -> Result<GatewayConfig, ConfigError> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![format!("cannot read {}: {e}", path.display())]))?,
        None => EMBEDDED_DEFAULT.to_string(),
    };
    let mut config = load_text(&text, std::env::vars(), cli, files)?;
    config.source = path.map(Path::to_path_buf);
    Ok(config)
}

fn load_text(
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
    cli: &CliOverrides,
    files: Files,
) -> Result<GatewayConfig, ConfigError> {
    let mut tree: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError(vec![format!("not valid TOML: {e}")]))?;
    let mut problems = env::apply_overrides(&mut tree, vars);

    let mut unknown = Vec::new();
    let raw: RawConfig = serde_ignored::deserialize(toml::Value::Table(tree), |path| {
        unknown.push(format!("unknown key `{path}`"));
    })
    .map_err(|e| {
        let mut all = problems.clone();
        all.push(format!("{e}"));
        ConfigError(all)
    })?;
    problems.extend(unknown);

    let (config, invalid) = validate::validate(raw, cli);
    problems.extend(invalid);
    if files == Files::Checked {
        // Also when values are bad: the operator sees every problem at once.
        problems.extend(check_files(&config));
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError(problems))
    }
}

impl GatewayConfig {
    /// The effective configuration as TOML, for `check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.effective).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }

    pub fn site(&self, name: &str) -> Option<&SiteConfig> {
        self.sites.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests;
