//! One gRPC channel per server endpoint, shared by every model served
//! there: HTTP/2 multiplexes their requests over one connection, and
//! cloning a [`Channel`] is cheap. Channels connect lazily and reconnect by
//! themselves, so a server that is down at start serves once it is back.
//! A channel's worker task lives on the runtime that created it, so the
//! registry is per runtime (one in the gateway; one per test in tests).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::TritonConfig;
use crate::infer::error::EngineError;

/// What makes two configurations share a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChannelKey {
    url: String,
    tls_ca: Option<PathBuf>,
    tls_domain: Option<String>,
    connect_timeout: Duration,
    runtime: tokio::runtime::Id,
}

static CHANNELS: LazyLock<Mutex<HashMap<ChannelKey, Channel>>> = LazyLock::new(Mutex::default);

/// The channel for `config`'s endpoint, created on first use. Must be
/// called inside a tokio runtime (the channel spawns its worker there).
pub fn channel_for(config: &TritonConfig) -> Result<Channel, EngineError> {
    let key = ChannelKey {
        url: config.url.clone(),
        tls_ca: config.tls_ca.clone(),
        tls_domain: config.tls_domain.clone(),
        connect_timeout: config.connect_timeout,
        runtime: tokio::runtime::Handle::try_current()
            .map_err(|_| EngineError::Internal("triton engine built outside a runtime".into()))?
            .id(),
    };
    let mut channels = CHANNELS
        .lock()
        .map_err(|_| EngineError::Internal("triton channel registry poisoned".into()))?;
    if let Some(channel) = channels.get(&key) {
        return Ok(channel.clone());
    }
    let channel = endpoint(config)?.connect_lazy();
    channels.insert(key, channel.clone());
    Ok(channel)
}

fn endpoint(config: &TritonConfig) -> Result<Endpoint, EngineError> {
    let invalid =
        |e: &dyn std::fmt::Display| EngineError::Load(format!("triton url `{}`: {e}", config.url));
    let mut endpoint = Endpoint::from_shared(config.url.clone())
        .map_err(|e| invalid(&e))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        // Find a dead peer between bursts instead of on the next request.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    if let Some(ca) = &config.tls_ca {
        let pem = std::fs::read(ca).map_err(|e| {
            EngineError::Load(format!("cannot read triton tls_ca {}: {e}", ca.display()))
        })?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        if let Some(domain) = &config.tls_domain {
            tls = tls.domain_name(domain.clone());
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| invalid(&e))?;
    }
    Ok(endpoint)
}
