//! The configuration file as written: plain serde structs with defaults.
//!
//! Everything here is strings and numbers exactly as an operator typed them;
//! [`super::validate`] turns them into typed values and reports every problem
//! at once. Unknown keys are collected by `serde_ignored` in [`super::load`]
//! rather than by `deny_unknown_fields`, so that all of them are reported
//! together instead of only the first.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawConfig {
    pub gateway: RawGateway,
    pub dimse: RawDimse,
    pub dicomweb: RawDicomweb,
    pub store: RawStore,
    pub metrics: RawMetrics,
    pub logging: RawLogging,
    pub sites: Vec<RawSite>,
    pub pipeline: super::pipeline::RawPipeline,
    /// Where results are forwarded (DICOM C-STORE SCPs, usually PACS).
    pub destinations: Vec<crate::egress::RawDestination>,
    pub egress: RawEgress,
    pub drift: super::drift::RawDrift,
    /// The operator API's listener.
    pub admin: super::admin::RawAdmin,
    /// Export of the audit trail.
    pub audit: super::admin::RawAudit,
    /// The inference result cache and, with Redis, shared route state.
    pub cache: crate::cache::RawCacheConfig,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawEgress {
    pub retry: crate::egress::RawRetryPolicy,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawGateway {
    pub ae_title: String,
    pub data_dir: String,
    pub shutdown_grace: String,
}

impl Default for RawGateway {
    fn default() -> Self {
        Self {
            ae_title: "GATEWAY".into(),
            data_dir: "./data".into(),
            shutdown_grace: "30s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawDimse {
    pub listen: String,
    pub max_pdu_length: u32,
    pub max_associations: usize,
    pub max_negotiating: usize,
    pub max_negotiating_per_peer: usize,
    pub establish_timeout: String,
    pub message_timeout: String,
    pub idle_timeout: String,
    pub max_instance_size: String,
    pub accept_unknown_ae: bool,
    pub unknown_ae_site: String,
}

impl Default for RawDimse {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:11112".into(),
            max_pdu_length: 65536,
            max_associations: 32,
            max_negotiating: 32,
            max_negotiating_per_peer: 8,
            establish_timeout: "10s".into(),
            message_timeout: "5m".into(),
            idle_timeout: "2m".into(),
            max_instance_size: "4GiB".into(),
            accept_unknown_ae: false,
            unknown_ae_site: "unknown".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawStore {
    pub min_free_space: String,
    pub duplicate_policy: String,
    pub max_nesting_depth: usize,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            min_free_space: "1GiB".into(),
            duplicate_policy: "reject".into(),
            max_nesting_depth: crate::store::validate::DEFAULT_MAX_DEPTH,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawMetrics {
    pub listen: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawLogging {
    pub format: String,
    pub level: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawSite {
    pub name: String,
    pub ae_titles: Vec<String>,
    pub allowed_peers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawDicomweb {
    pub enabled: bool,
    pub listen: String,
    pub tls: bool,
    pub cert: String,
    pub key: String,
    pub dev_certs: bool,
    pub max_body_size: String,
    pub max_parts: usize,
    pub body_timeout: String,
    pub qido_default_limit: usize,
    pub qido_max_limit: usize,
    pub tokens: Vec<RawToken>,
}

impl Default for RawDicomweb {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:8443".into(),
            tls: true,
            cert: "certs/server.pem".into(),
            key: "certs/server.key".into(),
            dev_certs: true,
            max_body_size: "4GiB".into(),
            max_parts: 10_000,
            body_timeout: "10m".into(),
            qido_default_limit: 100,
            qido_max_limit: 1000,
            tokens: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawToken {
    pub id: String,
    pub site: String,
    pub scopes: Vec<String>,
    pub read_sites: Vec<String>,
    pub sha256: String,
}
