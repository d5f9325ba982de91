//! Drift monitoring, beside the pipeline: after a job's result is stored
//! the runner reports what went in and came out (scores per label,
//! acquisition parameters, input statistics after preprocessing) and the
//! monitor compares it, per (site, scanner, model version), with the model
//! version's baseline by PSI.
//!
//! Memory is bounded: fixed bins per quantity, at most
//! [`quantity::MAX_SCORE_LABELS`] score labels and [`MAX_CATEGORIES`]
//! kernel categories, at most `drift.max_tracked` keys (the least recently
//! seen is evicted, with its metric series), at most
//! [`monitor::MAX_MODEL_VERSIONS`] baselines. `observe` returns the
//! threshold crossings and any state due for persistence; the caller writes
//! them ([`DriftOutcome::write`]), which keeps the monitor free of I/O.

mod baseline;
mod histogram;
mod inputs;
mod metrics;
mod monitor;
pub mod persist;
mod quantity;

use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::Registry;
use serde::Serialize;

pub use baseline::{BaselineMode, BaselineSource, ManifestBaseline, QuantityBaseline};
pub use histogram::{Layout, PSI_EPSILON, ks, psi};
pub use inputs::{AcquisitionParams, InputStats};
pub use metrics::DRIFT_METRIC_NAMES;
pub use monitor::{MAX_MODEL_VERSIONS, RECOVERY_FRACTION};
pub use quantity::{MAX_CATEGORIES, MAX_SCORE_LABELS, Quantity, category_slug};

use crate::audit::AuditEntry;
use crate::config::DriftConfig;
use monitor::DriftMonitor;

/// (model, version).
pub type ModelKey = (String, String);

/// What the monitor keeps distributions for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DriftKey {
    pub site: String,
    /// A bounded label from `telemetry::ScannerLabels`.
    pub scanner: String,
    pub model: String,
    pub version: String,
}

impl DriftKey {
    fn label_values(&self) -> [&str; 4] {
        [&self.site, &self.scanner, &self.model, &self.version]
    }

    fn quantity_label_values<'a>(&'a self, quantity: &'a str) -> [&'a str; 5] {
        [
            &self.site,
            &self.scanner,
            &self.model,
            &self.version,
            quantity,
        ]
    }
}

/// One job's inputs and outputs, as the runner hands them over.
#[derive(Debug, Clone)]
pub struct DriftObservation<'a> {
    pub site: &'a str,
    pub scanner: &'a str,
    pub model: &'a str,
    pub version: &'a str,
    /// (label, score) of the result (for a series, the per-label maximum).
    pub scores: &'a [(&'a str, f32)],
    pub acquisition: &'a AcquisitionParams,
    /// For a series, [`InputStats::mean_of`] its images.
    pub input: Option<InputStats>,
}

enum ObservedValue {
    Number(f64),
    Category(String),
}

impl ObservedValue {
    fn as_value(&self) -> histogram::Value<'_> {
        match self {
            ObservedValue::Number(v) => histogram::Value::Number(*v),
            ObservedValue::Category(c) => histogram::Value::Category(c),
        }
    }
}

impl DriftObservation<'_> {
    fn values(&self) -> Vec<(Quantity, ObservedValue)> {
        let mut values: Vec<(Quantity, ObservedValue)> = self
            .scores
            .iter()
            .map(|(label, score)| {
                let score = ObservedValue::Number(f64::from(*score));
                (Quantity::Score((*label).to_string()), score)
            })
            .collect();
        let a = self.acquisition;
        for (quantity, value) in [
            (Quantity::Kvp, a.kvp),
            (Quantity::SliceThickness, a.slice_thickness),
            (Quantity::PixelSpacing, a.pixel_spacing),
            (Quantity::InputMean, self.input.map(|i| i.mean)),
            (Quantity::InputStd, self.input.map(|i| i.std)),
        ] {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                values.push((quantity, ObservedValue::Number(v)));
            }
        }
        if let Some(kernel) = a.convolution_kernel.as_deref().and_then(category_slug) {
            values.push((Quantity::ConvolutionKernel, ObservedValue::Category(kernel)));
        }
        values
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftEventKind {
    /// PSI rose above the threshold (alerted once per crossing).
    ThresholdCrossed,
    /// PSI fell below [`RECOVERY_FRACTION`] of the threshold again.
    Recovered,
}

/// A threshold crossing, for the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftEvent {
    pub kind: DriftEventKind,
    #[serde(flatten)]
    pub key: DriftKey,
    pub quantity: String,
    pub psi: f64,
    pub threshold: f64,
    /// Observations of this key and quantity since its baseline froze.
    pub observations: u64,
}

impl DriftEvent {
    /// The audit entry: actor `system:drift`, action
    /// `drift.threshold_crossed` or `drift.recovered`, labels and numbers only.
    pub fn audit_entry(&self) -> AuditEntry {
        AuditEntry {
            actor: "system:drift".into(),
            action: match self.kind {
                DriftEventKind::ThresholdCrossed => "drift.threshold_crossed",
                DriftEventKind::Recovered => "drift.recovered",
            }
            .into(),
            detail: serde_json::to_value(self).unwrap_or_default(),
        }
    }

    fn log(&self) {
        let k = &self.key;
        match self.kind {
            DriftEventKind::ThresholdCrossed => tracing::warn!(
                site = %k.site, scanner = %k.scanner, model = %k.model, version = %k.version,
                quantity = %self.quantity, psi = self.psi, threshold = self.threshold,
                observations = self.observations,
                "drift: PSI above the threshold"
            ),
            DriftEventKind::Recovered => tracing::info!(
                site = %k.site, scanner = %k.scanner, model = %k.model, version = %k.version,
                quantity = %self.quantity, psi = self.psi, threshold = self.threshold,
                "drift: PSI back under the threshold"
            ),
        }
    }
}

/// State due for the index database: JSON per model baseline and per key,
/// and keys evicted since the last write.
#[derive(Debug, Clone, Default)]
pub struct DriftPersist {
    pub models: Vec<(ModelKey, String)>,
    pub keys: Vec<(DriftKey, String)>,
    pub removed: Vec<DriftKey>,
}

/// What one observation asks the caller to write.
#[derive(Debug, Clone, Default)]
pub struct DriftOutcome {
    pub events: Vec<DriftEvent>,
    /// Present every `drift.persist_interval`.
    pub persist: Option<DriftPersist>,
}

impl DriftOutcome {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.persist.is_none()
    }
}

/// One (key, quantity) in the performance report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftRow {
    pub site: String,
    pub scanner: String,
    pub model: String,
    pub version: String,
    pub quantity: String,
    /// `None` until `drift.min_observations` have been seen.
    pub psi: Option<f64>,
    /// Numeric quantities only.
    pub ks: Option<f64>,
    pub observations: u64,
    /// `manifest` or `window`.
    pub baseline: String,
    pub over_threshold: bool,
    /// Alerted and not yet recovered (hysteresis: see [`RECOVERY_FRACTION`]).
    pub alerting: bool,
}

/// A model version's baseline for one quantity, in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineRow {
    pub model: String,
    pub version: String,
    pub quantity: String,
    /// `manifest`, `window`, or `warming` (still filling its window).
    pub source: String,
    /// Observations in the window (0 for a manifest baseline).
    pub observations: u64,
}

/// The shared monitor: cheap to clone, locked briefly per call.
#[derive(Clone)]
pub struct DriftHandle {
    inner: Arc<Mutex<DriftMonitor>>,
    metrics: metrics::DriftMetrics,
}

impl DriftHandle {
    /// Registers the drift families in `registry`.
    pub fn register(registry: &Registry, config: DriftConfig) -> Self {
        let metrics = metrics::DriftMetrics::register(registry);
        Self {
            inner: Arc::new(Mutex::new(DriftMonitor::new(config, metrics.clone()))),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, DriftMonitor> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the configuration, dropping all state: call at start-up,
    /// before [`Self::restore`] and the first observation.
    pub fn configure(&self, config: DriftConfig) {
        *self.lock() = DriftMonitor::new(config, self.metrics.clone());
    }

    pub fn config(&self) -> DriftConfig {
        self.lock().config.clone()
    }

    /// Uses a manifest's `[baseline]` for that model version.
    pub fn register_manifest_baseline(
        &self,
        model: &str,
        version: &str,
        baseline: &ManifestBaseline,
    ) {
        self.lock()
            .register_manifest_baseline((model.to_string(), version.to_string()), baseline);
    }

    /// Counts one job and returns alerts and state to write.
    pub fn observe(&self, observation: &DriftObservation<'_>) -> DriftOutcome {
        self.observe_at(observation, crate::time::unix_millis())
    }

    /// [`Self::observe`] at a given time (Unix ms), for tests.
    pub fn observe_at(&self, observation: &DriftObservation<'_>, now_ms: i64) -> DriftOutcome {
        self.lock().observe(observation, now_ms)
    }

    /// Everything not yet persisted (for a final write at shutdown).
    pub fn take_dirty(&self) -> DriftPersist {
        self.lock().take_dirty()
    }

    /// Loads what `persist::save` wrote before a restart.
    pub fn restore(&self, conn: &rusqlite::Connection) -> rusqlite::Result<usize> {
        let (models, keys) = persist::load(conn)?;
        let mut monitor = self.lock();
        monitor.restore(models, keys);
        Ok(monitor.tracked_keys())
    }

    /// The report's drift rows, limited to `sites` when given.
    pub fn rows(&self, sites: Option<&[String]>) -> Vec<DriftRow> {
        self.lock().rows(sites)
    }

    /// Baselines of the model versions seen (pooled over sites: no shares).
    pub fn baselines(&self) -> Vec<BaselineRow> {
        self.lock().baselines()
    }

    pub fn tracked_keys(&self) -> usize {
        self.lock().tracked_keys()
    }

    /// Bytes of the monitor's own state (see `DriftMonitor::estimated_bytes`).
    pub fn estimated_bytes(&self) -> usize {
        self.lock().estimated_bytes()
    }
}

#[cfg(test)]
mod tests;
