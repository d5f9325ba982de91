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
pub fn init_tracing(logging: &LoggingConfig) {
    use tracing_subscriber::EnvFilter;
    // The JPEG 2000 decoder is chatty at info level.
    let default = format!("{},jpeg2k=warn", logging.level);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = if logging.json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}
