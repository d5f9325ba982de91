//! Wires the stages together and runs them until shutdown.

mod control;
mod pipeline;
mod reload;
mod route_health;
pub mod schema;

pub use control::{ChainStepView, Control, ROUTE_STATUSES, RouteView};
pub use reload::{APPLIED_LIVE, RESTART_SECTIONS, ReloadRefused, ReloadReport};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;

use crate::config::GatewayConfig;
use crate::dicomweb::{DicomwebState, serve_dicomweb};
use crate::dimse::{DimseContext, run_listener};
use crate::sites::{SharedSites, SiteRegistry};
use crate::store::Store;
use crate::telemetry::{Metrics, serve_metrics};

/// Addresses the gateway actually bound (ports may have been 0), written to
/// `<data_dir>/listeners.json` so scripts and tests can find them.
#[derive(Debug, Clone, Serialize)]
pub struct Listeners {
    pub dimse: SocketAddr,
    /// DICOMweb; absent when disabled.
    pub http: Option<SocketAddr>,
    /// `https` or `http`.
    pub http_scheme: &'static str,
    pub metrics: SocketAddr,
    /// The admin API; absent when disabled.
    pub admin: Option<SocketAddr>,
    /// `https` or `http` (loopback only).
    pub admin_scheme: &'static str,
    pub pid: u32,
}

pub const LISTENERS_FILE: &str = "listeners.json";

/// Runs the gateway until `shutdown` resolves, then drains and returns.
pub async fn run(config: GatewayConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let metrics = Metrics::with_drift(config.drift.clone());
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    // Every stage's tables, a schema 1 index migrated, before any stage opens it.
    schema::prepare_data_dir(&config.data_dir).context("cannot open the index database")?;
    let (store, report) = Store::open(&config.data_dir, config.store.clone(), metrics.clone())
        .context("cannot open the store")?;
    if report.repaired_anything() || report.temp_files_removed > 0 {
        tracing::warn!(?report, "store reconciled after an unclean stop");
    } else {
        tracing::info!(instances = report.indexed_instances, "store opened");
    }
    match store
        .reader()
        .connect()
        .and_then(|c| metrics.drift.restore(&c))
    {
        Ok(keys) => tracing::info!(keys, "drift state restored"),
        Err(e) => tracing::warn!(error = %e, "drift state not restored; starting empty"),
    }

    // One registry for DIMSE negotiation and for reload to replace.
    let sites = SharedSites::new(SiteRegistry::from_config(&config));
    let pipeline = if config.pipeline.enabled {
        Some(pipeline::start(&config, &store, &metrics, &sites).await?)
    } else {
        tracing::info!("pipeline disabled: instances are stored and served only");
        None
    };

    let dimse_listener = tokio::net::TcpListener::bind(config.dimse.listen)
        .await
        .with_context(|| format!("cannot listen for DIMSE on {}", config.dimse.listen))?;
    let dimse_addr = dimse_listener.local_addr()?;
    let (metrics_addr, metrics_server) = serve_metrics(config.metrics.listen, metrics.clone())
        .with_context(|| format!("cannot listen for metrics on {}", config.metrics.listen))?;
    let metrics_handle = metrics_server.handle();
    let metrics_task = tokio::spawn(metrics_server);

    let (http_addr, http_server) = if config.dicomweb.enabled {
        let state = DicomwebState {
            config: config.dicomweb.clone(),
            store: store.clone(),
            index: store.reader(),
            metrics: metrics.clone(),
            models: pipeline.as_ref().map(|p| Arc::clone(&p.repository)),
            egress: pipeline.as_ref().map(|p| p.egress.clone()),
        };
        let (addr, server) = serve_dicomweb(state)
            .with_context(|| format!("cannot start DICOMweb on {}", config.dicomweb.listen))?;
        (Some(addr), Some(server))
    } else {
        (None, None)
    };
    let http_handle = http_server.as_ref().map(|s| s.handle());
    let http_task = http_server.map(tokio::spawn);

    // After DICOMweb, which creates the development certificate the admin
    // listener shares by default.
    let (admin_addr, admin_server) = if config.admin.enabled {
        let state = crate::admin::AdminState {
            config: config.admin.clone(),
            control: pipeline.as_ref().map(|p| Arc::clone(&p.control)),
            index: store.reader(),
            index_path: store.layout().index_path(),
            metrics: metrics.clone(),
            started: std::time::Instant::now(),
        };
        let (addr, server) = crate::admin::serve_admin(state)
            .with_context(|| format!("cannot start the admin API on {}", config.admin.listen))?;
        (Some(addr), Some(server))
    } else {
        (None, None)
    };
    let admin_handle = admin_server.as_ref().map(|s| s.handle());
    let admin_task = admin_server.map(tokio::spawn);

    let (audit_stop, audit_stop_rx) = tokio::sync::watch::channel(false);
    let audit_export = config.audit.syslog.clone().map(|syslog| {
        crate::audit::syslog::spawn(syslog, store.layout().index_path(), audit_stop_rx)
    });

    let listeners = Listeners {
        dimse: dimse_addr,
        http: http_addr,
        http_scheme: if config.dicomweb.tls.is_some() {
            "https"
        } else {
            "http"
        },
        metrics: metrics_addr,
        admin: admin_addr,
        admin_scheme: if config.admin.tls.is_some() {
            "https"
        } else {
            "http"
        },
        pid: std::process::id(),
    };
    let listeners_path = config.data_dir.join(LISTENERS_FILE);
    std::fs::write(&listeners_path, serde_json::to_vec_pretty(&listeners)?)
        .with_context(|| format!("cannot write {}", listeners_path.display()))?;
    tracing::info!(dimse = %dimse_addr, http = ?http_addr, metrics = %metrics_addr, admin = ?admin_addr, ae_title = %config.ae_title, "gateway ready");

    let ctx = Arc::new(DimseContext {
        ae_title: config.ae_title.clone(),
        config: config.dimse.clone(),
        sites,
        store,
        metrics,
    });
    run_listener(dimse_listener, ctx, shutdown, config.shutdown_grace).await;
    // Operators cannot act on a pipeline that is stopping.
    if let Some(handle) = admin_handle {
        handle.stop(true).await;
    }
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    if let Some(pipeline) = pipeline {
        pipeline.stop(config.shutdown_grace).await;
    }

    if let Some(handle) = http_handle {
        // Let in-flight HTTP requests (a STOW upload) finish, within the grace period.
        let _ = tokio::time::timeout(config.shutdown_grace, handle.stop(true)).await;
    }
    if let Some(task) = http_task {
        let _ = task.await;
    }
    metrics_handle.stop(true).await;
    let _ = metrics_task.await;
    // Last, so the entries of the shutdown itself go out too.
    let _ = audit_stop.send(true);
    if let Some(task) = audit_export {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    let _ = std::fs::remove_file(&listeners_path);
    tracing::info!("gateway stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
