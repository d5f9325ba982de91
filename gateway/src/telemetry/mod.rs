//! Observability for every stage: tracing set-up and Prometheus metrics.
//!
//! Nothing here ever sees patient data: spans and metric labels carry sites,
//! AE titles, modalities and outcomes only (bounded sets), never names, IDs,
//! birth dates or UIDs.

#[cfg(test)]
mod dashboard_check;
pub mod drift;
mod metrics;
mod metrics_http;
mod performance;
mod pipeline;
mod register;
mod scanner;

pub use drift::DriftHandle;
pub use metrics::{Metrics, modality_label};
pub use metrics_http::serve_metrics;
pub use performance::{
    FailureObservation, JobLabels, PERFORMANCE_METRIC_NAMES, PerformanceMetrics, ResultObservation,
};
pub use pipeline::PipelineMetrics;
pub use scanner::{MODELS_PER_VENDOR, ScannerLabels, model_slug, vendor_label};

use crate::config::LoggingConfig;

/// Installs the global tracing subscriber. `RUST_LOG` wins over the config.
/// The filter sits behind a reload layer so that [`set_log_level`] can
/// change `logging.level` without a restart.
pub fn init_tracing(logging: &LoggingConfig) {
    use tracing_subscriber::EnvFilter;
    let from_env = EnvFilter::try_from_default_env().ok();
    let overridden = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| config_filter(&logging.level));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // The two formats are two subscriber types, so two reload handles: each
    // is kept as the same closure. A second init (tests) is harmless: keep
    // the first subscriber and its handle.
    let installed = if logging.json {
        let builder = builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_env_filter(filter)
            .with_filter_reloading();
        let handle = builder.reload_handle();
        builder
            .try_init()
            .map(|()| reloader(move |f| handle.reload(f)))
    } else {
        let builder = builder.with_env_filter(filter).with_filter_reloading();
        let handle = builder.reload_handle();
        builder
            .try_init()
            .map(|()| reloader(move |f| handle.reload(f)))
    };
    if let Ok(set) = installed {
        let _ = LOG_FILTER.set(LogFilter { overridden, set });
    }
}

/// What [`set_log_level`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLevelChange {
    /// The new level is in force.
    Applied,
    /// `RUST_LOG` set the filter at start-up and still decides it.
    OverriddenByEnvironment,
    /// This process did not install the subscriber ([`init_tracing`]).
    NotInstalled,
    Failed(String),
}

/// Puts `logging.level` in force without a restart (unless `RUST_LOG`
/// decides the filter).
pub fn set_log_level(level: &str) -> LogLevelChange {
    let Some(filter) = LOG_FILTER.get() else {
        return LogLevelChange::NotInstalled;
    };
    if filter.overridden {
        return LogLevelChange::OverriddenByEnvironment;
    }
    match (filter.set)(config_filter(level)) {
        Ok(()) => LogLevelChange::Applied,
        Err(e) => LogLevelChange::Failed(e),
    }
}

/// The filter for `logging.level`. The JPEG 2000 decoder is chatty at
/// info level.
fn config_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::new(format!("{level},jpeg2k=warn"))
}

type SetFilter = Box<dyn Fn(tracing_subscriber::EnvFilter) -> Result<(), String> + Send + Sync>;

struct LogFilter {
    /// `RUST_LOG` chose the filter at start-up.
    overridden: bool,
    set: SetFilter,
}

static LOG_FILTER: std::sync::OnceLock<LogFilter> = std::sync::OnceLock::new();

fn reloader<E: std::fmt::Display>(
    reload: impl Fn(tracing_subscriber::EnvFilter) -> Result<(), E> + Send + Sync + 'static,
) -> SetFilter {
    Box::new(move |filter| reload(filter).map_err(|e| e.to_string()))
}
