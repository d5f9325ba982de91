//! The drift monitor's Prometheus families. Per-key series are removed when
//! a key is evicted, so the registry stays as bounded as the monitor.

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::telemetry::register::register;

/// Names registered here, for the dashboard check and the docs.
pub const DRIFT_METRIC_NAMES: &[&str] = &[
    "gateway_drift_psi",
    "gateway_drift_psi_threshold",
    "gateway_drift_observations_total",
    "gateway_drift_alerts_total",
    "gateway_drift_tracked_keys",
    "gateway_drift_evicted_keys_total",
    "gateway_drift_refused_total",
];

pub(super) const KEY_LABELS: &[&str] = &["site", "scanner", "model", "version"];
const QUANTITY_LABELS: &[&str] = &["site", "scanner", "model", "version", "quantity"];

#[derive(Clone)]
pub(super) struct DriftMetrics {
    pub psi: GaugeVec,
    pub threshold: Gauge,
    pub observations: IntCounterVec,
    pub alerts: IntCounterVec,
    pub tracked_keys: IntGauge,
    pub evicted_keys: IntCounter,
    pub refused: IntCounter,
}

impl DriftMetrics {
    pub fn register(registry: &Registry) -> Self {
        let opts = Opts::new;
        Self {
            psi: register(
                registry,
                GaugeVec::new(
                    opts(
                        "gateway_drift_psi",
                        "Population stability index of a quantity against its model version's baseline",
                    ),
                    QUANTITY_LABELS,
                )
                .expect("valid metric"),
            ),
            threshold: register(
                registry,
                Gauge::with_opts(opts(
                    "gateway_drift_psi_threshold",
                    "PSI above which drift raises an alert (drift.threshold)",
                ))
                .expect("valid metric"),
            ),
            observations: register(
                registry,
                IntCounterVec::new(
                    opts(
                        "gateway_drift_observations_total",
                        "Observations (jobs) seen by the drift monitor per key",
                    ),
                    KEY_LABELS,
                )
                .expect("valid metric"),
            ),
            alerts: register(
                registry,
                IntCounterVec::new(
                    opts(
                        "gateway_drift_alerts_total",
                        "Times a quantity's PSI crossed the threshold upwards",
                    ),
                    QUANTITY_LABELS,
                )
                .expect("valid metric"),
            ),
            tracked_keys: register(
                registry,
                IntGauge::new(
                    "gateway_drift_tracked_keys",
                    "(site, scanner, model, version) keys the drift monitor holds",
                )
                .expect("valid metric"),
            ),
            evicted_keys: register(
                registry,
                IntCounter::new(
                    "gateway_drift_evicted_keys_total",
                    "Least recently seen keys dropped to stay within drift.max_tracked",
                )
                .expect("valid metric"),
            ),
            refused: register(
                registry,
                IntCounter::new(
                    "gateway_drift_refused_total",
                    "Observations not monitored because the model-version limit was reached",
                )
                .expect("valid metric"),
            ),
        }
    }
}
