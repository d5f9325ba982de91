//! `[pipeline.triton]`: how to reach the Triton (KServe v2) server, and
//! building a [`TritonEngine`] for a manifest with a `[triton]` section.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TritonEngine;
use crate::infer::config::infer_on_zeros;
use crate::infer::config::{BuiltEngine, default_max_queued, duration_text};
use crate::infer::error::EngineError;
use crate::models::Manifest;

/// A Triton (or any KServe v2) server over gRPC, serving the model versions
/// whose manifest has a `[triton]` section. See `docs/engines.md`.
///
/// ```toml
/// [pipeline.triton]
/// url = "https://triton.example.org:8001"
/// timeout = "2s"            # per request: the answer or a deadline error
/// tls_ca = "/etc/dicom-gateway/triton-ca.pem"
/// max_concurrent = 4        # requests in flight per model
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TritonConfig {
    /// gRPC endpoint, `http://host:8001` or `https://host:8001` (then
    /// `tls_ca` is required: the gateway trusts no public roots here).
    pub url: String,
    /// Deadline of every call to the server, inference included; also sent
    /// as `grpc-timeout` so the server can give up too.
    #[serde(default = "default_triton_timeout", with = "duration_text")]
    pub timeout: Duration,
    /// Deadline for opening the connection.
    #[serde(default = "default_connect_timeout", with = "duration_text")]
    pub connect_timeout: Duration,
    /// PEM file of the CA that signed the server's certificate.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// The name to check the server's certificate against, when it is not
    /// the host in `url` (e.g. connecting by IP address).
    #[serde(default)]
    pub tls_domain: Option<String>,
    /// Requests in flight per model; the server batches and schedules them.
    #[serde(default = "default_triton_concurrent")]
    pub max_concurrent: NonZeroUsize,
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
}

impl TritonConfig {
    /// A server at `url` with default deadlines and limits, no TLS.
    pub fn new(url: impl Into<String>) -> Self {
        TritonConfig {
            url: url.into(),
            timeout: default_triton_timeout(),
            connect_timeout: default_connect_timeout(),
            tls_ca: None,
            tls_domain: None,
            max_concurrent: default_triton_concurrent(),
            max_queued: default_max_queued(),
        }
    }

    /// Every problem at once, as sentences.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let https = self.url.starts_with("https://");
        let rest = self
            .url
            .strip_prefix("https://")
            .or_else(|| self.url.strip_prefix("http://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => {}
            _ => problems.push(format!(
                "`url` `{}` must be http://host:port or https://host:port",
                self.url
            )),
        }
        if https && self.tls_ca.is_none() {
            problems.push("an https `url` needs `tls_ca` (the CA of the server)".into());
        }
        if !https && (self.tls_ca.is_some() || self.tls_domain.is_some()) {
            problems.push("`tls_ca` and `tls_domain` need an https `url`".into());
        }
        for (key, value) in [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if value.is_zero() {
                problems.push(format!("`{key}` must be more than zero"));
            }
        }
        problems
    }
}

fn default_triton_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

/// A remote server runs requests in parallel and batches them itself.
fn default_triton_concurrent() -> NonZeroUsize {
    NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN)
}

impl TritonConfig {
    /// The engine for `manifest` (which must have a `[triton]` section) and
    /// its start-up check: server ready, model version ready, metadata
    /// against the manifest, then one inference on zeros. Opens no
    /// connection itself (the channel connects on first use), so it is
    /// cheap; it must run inside a tokio runtime.
    pub fn build(&self, manifest: &Arc<Manifest>) -> Result<BuiltEngine, EngineError> {
        let engine = Arc::new(TritonEngine::new(manifest, self)?);
        let probe = Arc::clone(&engine);
        Ok(BuiltEngine {
            engine,
            healthcheck: Box::pin(async move {
                probe.check_deployment().await?;
                infer_on_zeros(probe.as_ref()).await
            }),
        })
    }
}
