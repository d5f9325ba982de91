//! The `[admin]` section (the operator API's own HTTPS listener) and the
//! `[audit]` section (export of the audit trail to syslog).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::raw::RawConfig;
use super::validate::Problems;
use super::{CliOverrides, TlsFiles};
use crate::audit::syslog::{Facility, SyslogConfig};

/// Default admin listener: loopback, next to DICOMweb's 8443.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8444";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawAdmin {
    pub enabled: bool,
    pub listen: String,
    /// `false`: plain HTTP, allowed only on a loopback address.
    pub tls: bool,
    /// Empty: the DICOMweb certificate and key (and its `dev_certs`).
    pub cert: String,
    pub key: String,
    pub max_body_size: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_ADMIN_LISTEN.into(),
            tls: true,
            cert: String::new(),
            key: String::new(),
            max_body_size: "64KiB".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawAudit {
    /// Empty: no export. `udp://host:port` or `tcp://host:port`.
    pub syslog: String,
    pub syslog_facility: String,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            syslog: String::new(),
            syslog_facility: "audit".into(),
        }
    }
}

/// The validated `[admin]` section.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// `None`: plain HTTP (loopback only, checked here).
    pub tls: Option<TlsFiles>,
    /// Largest request body (the API takes small JSON objects only).
    pub max_body_size: usize,
}

/// The validated `[audit]` section.
#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    /// Export every audit entry to this syslog receiver.
    pub syslog: Option<SyslogConfig>,
}

/// Bounds on `admin.max_body_size`: room for a reason, not for uploads.
const BODY_SIZE_RANGE: std::ops::RangeInclusive<u64> = 1024..=1024 * 1024;

pub(super) fn validate_admin(
    raw: &RawConfig,
    cli: &CliOverrides,
    p: &mut Problems,
    effective: &mut RawConfig,
) -> AdminConfig {
    let a = &raw.admin;
    let listen = match cli.admin_addr {
        Some(addr) => addr,
        None => a.listen.parse().unwrap_or_else(|e| {
            p.push(format!(
                "admin.listen: `{}` is not an address:port ({e})",
                a.listen
            ));
            SocketAddr::from(([127, 0, 0, 1], 0))
        }),
    };
    effective.admin.listen = listen.to_string();
    if a.enabled && !a.tls && !listen.ip().is_loopback() {
        p.push(format!(
            "admin.tls: plain HTTP is allowed only on a loopback address, and {listen} is not one"
        ));
    }
    let tls = a.tls.then(|| match (a.cert.trim(), a.key.trim()) {
        ("", "") => TlsFiles {
            cert: PathBuf::from(&raw.dicomweb.cert),
            key: PathBuf::from(&raw.dicomweb.key),
            create_dev_certs: raw.dicomweb.dev_certs,
        },
        (cert, key) => {
            if cert.is_empty() || key.is_empty() {
                p.push("admin.cert, admin.key: give both or neither".into());
            }
            TlsFiles {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
                create_dev_certs: false,
            }
        }
    });
    let max_body_size = match a.max_body_size.parse::<bytesize::ByteSize>() {
        Ok(size) if BODY_SIZE_RANGE.contains(&size.as_u64()) => size.as_u64() as usize,
        Ok(_) => {
            p.push(format!(
                "admin.max_body_size: `{}` is outside 1KiB..=1MiB",
                a.max_body_size
            ));
            64 * 1024
        }
        Err(e) => {
            p.push(format!(
                "admin.max_body_size: `{}` is not a size like \"64KiB\" ({e})",
                a.max_body_size
            ));
            64 * 1024
        }
    };
    AdminConfig {
        enabled: a.enabled,
        listen,
        tls,
        max_body_size,
    }
}

pub(super) fn validate_audit(raw: &RawAudit, p: &mut Problems) -> AuditConfig {
    let facility = Facility::parse(&raw.syslog_facility).unwrap_or_else(|why| {
        p.push(format!("audit.syslog_facility: {why}"));
        Facility::AUDIT
    });
    let syslog = match raw.syslog.trim() {
        "" => None,
        url => SyslogConfig::parse(url, facility)
            .map_err(|why| p.push(format!("audit.syslog: {why}")))
            .ok(),
    };
    AuditConfig { syslog }
}

#[cfg(test)]
mod tests {
    use crate::config::{CliOverrides, EMBEDDED_DEFAULT, load_from_str};

    /// `text` on the built-in defaults (not the embedded file, whose own
    /// `[admin]` table a second one would clash with).
    fn load(text: &str) -> Result<crate::config::GatewayConfig, crate::config::ConfigError> {
        load_from_str(text, Vec::new(), &CliOverrides::default())
    }

    #[test]
    fn defaults_are_loopback_tls_with_the_dicomweb_certificate() {
        for text in ["", EMBEDDED_DEFAULT] {
            let config = load(text).unwrap();
            assert!(config.admin.enabled);
            assert_eq!(config.admin.listen, "127.0.0.1:8444".parse().unwrap());
            assert!(config.audit.syslog.is_none());
        }
        let config = load(EMBEDDED_DEFAULT).unwrap();
        assert_ne!(config.admin.listen.port(), config.dicomweb.listen.port());
        assert_ne!(config.admin.listen.port(), config.metrics.listen.port());
        let tls = config.admin.tls.expect("TLS by default");
        assert_eq!(tls.cert, std::path::PathBuf::from("certs/server.pem"));
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(load("[admin]\ntls = false\n").is_ok());
        let err = load("[admin]\ntls = false\nlisten = \"0.0.0.0:8444\"\n").unwrap_err();
        assert!(err.0.iter().any(|p| p.contains("admin.tls")), "{err}");
    }

    #[test]
    fn every_admin_and_audit_problem_is_reported() {
        let err = load(
            "[admin]\nlisten = \"nowhere\"\ncert = \"a.pem\"\nmax_body_size = \"1GiB\"\n\
             [audit]\nsyslog = \"syslog.example:514\"\nsyslog_facility = \"kern\"\n",
        )
        .unwrap_err();
        for key in [
            "admin.listen",
            "admin.cert, admin.key",
            "admin.max_body_size",
            "audit.syslog:",
            "audit.syslog_facility",
        ] {
            assert!(err.0.iter().any(|p| p.contains(key)), "{key}: {err}");
        }
    }

    #[test]
    fn admin_addr_flag_wins() {
        let cli = CliOverrides {
            admin_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        };
        let config = load_from_str(EMBEDDED_DEFAULT, Vec::new(), &cli).unwrap();
        assert_eq!(config.admin.listen.port(), 0);
        assert!(config.to_toml().contains("127.0.0.1:0"));
    }
}
