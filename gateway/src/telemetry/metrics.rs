//! The Prometheus registry and the metric families of each stage.
//!
//! Names follow `gateway_<stage>_<noun>_<unit>[_total]`. Label values come
//! from bounded sets only: site names from the config, modalities from the
//! DICOM defined terms (anything else becomes `OTHER`), fixed outcomes.

use prometheus::{Encoder, HistogramVec, IntCounterVec, IntGauge, Registry, TextEncoder};

use super::register::{counter_vec, histogram_vec, register};

/// All metric families, registered once at start-up and shared by reference.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Association attempts by site and outcome (accepted, rejected_*, aborted…).
    pub dimse_associations: IntCounterVec,
    /// Associations open right now.
    pub dimse_active_associations: IntGauge,
    /// Connections turned away by admission, by reason (negotiating_budget,
    /// per_peer_cap, association_limit).
    pub dimse_connections_refused: IntCounterVec,
    /// DIMSE messages answered, by site, command and status class.
    pub dimse_messages: IntCounterVec,
    /// Instances stored, by site, modality and ingest protocol.
    pub ingest_instances: IntCounterVec,
    /// Bytes of stored instances, by site, modality and ingest protocol.
    pub ingest_bytes: IntCounterVec,
    /// Instances refused, by site and reason.
    pub ingest_failures: IntCounterVec,
    /// From the last data byte received to the instance being durable and indexed.
    pub store_commit_seconds: HistogramVec,
    /// Instances committed per group commit.
    pub store_batch_instances: HistogramVec,
    /// HTTP requests by method, route pattern and status code.
    pub http_requests: IntCounterVec,
    /// HTTP request latency by method and route pattern.
    pub http_request_seconds: HistogramVec,
    /// Assembly, routing, jobs, engines and results.
    pub pipeline: super::pipeline::PipelineMetrics,
    /// Per site and scanner: received, latency, errors, fallbacks, cache, findings.
    pub performance: super::performance::PerformanceMetrics,
    /// The drift monitor (`[drift]` from `with_drift`; defaults with `new`).
    pub drift: super::drift::DriftHandle,
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_drift(Default::default())
    }

    /// With the configured `[drift]` section (what `app::run` should use).
    pub fn with_drift(drift: crate::config::DriftConfig) -> Self {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| counter_vec(&registry, name, help, labels);
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            histogram_vec(&registry, name, help, labels, &buckets)
        };
        let dimse_active_associations = register(
            &registry,
            IntGauge::new(
                "gateway_dimse_active_associations",
                "DIMSE associations open now",
            )
            .expect("valid metric"),
        );
        Self {
            dimse_associations: counter(
                "gateway_dimse_associations_total",
                "DIMSE association attempts by site and outcome",
                &["site", "outcome"],
            ),
            dimse_active_associations,
            dimse_connections_refused: counter(
                "gateway_dimse_connections_refused_total",
                "DIMSE connections refused by admission, by reason",
                &["reason"],
            ),
            dimse_messages: counter(
                "gateway_dimse_messages_total",
                "DIMSE requests answered by site, command and status class",
                &["site", "command", "status"],
            ),
            ingest_instances: counter(
                "gateway_ingest_instances_total",
                "Instances stored durably by site, modality and protocol",
                &["site", "modality", "protocol"],
            ),
            ingest_bytes: counter(
                "gateway_ingest_bytes_total",
                "Bytes of instances stored durably by site, modality and protocol",
                &["site", "modality", "protocol"],
            ),
            ingest_failures: counter(
                "gateway_ingest_failures_total",
                "Instances refused by site and reason",
                &["site", "reason"],
            ),
            store_commit_seconds: histogram(
                "gateway_store_commit_seconds",
                "Time from the last byte received to the instance being durable and indexed",
                &["site"],
                vec![
                    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
                ],
            ),
            store_batch_instances: histogram(
                "gateway_store_batch_instances",
                "Instances made durable together by one group commit",
                &[],
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
            ),
            http_requests: counter(
                "gateway_http_requests_total",
                "HTTP requests by method, route pattern and status code",
                &["method", "route", "status"],
            ),
            http_request_seconds: histogram(
                "gateway_http_request_seconds",
                "HTTP request latency by method and route pattern",
                &["method", "route"],
                vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            ),
            pipeline: super::pipeline::PipelineMetrics::register(&registry),
            performance: super::performance::PerformanceMetrics::register(&registry),
            drift: super::drift::DriftHandle::register(&registry, drift),
            registry,
        }
    }

    /// The registry, for stages that keep their metric families beside
    /// their code (`egress`, `route`, …) and register them here.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format, for `GET /metrics`.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// DICOM defined terms for Modality (PS3.3 C.7.3.1.1.1) that we label by
/// name; anything else, including garbage from a peer, is `OTHER`.
const KNOWN_MODALITIES: &[&str] = &[
    "CT", "MR", "CR", "DX", "MG", "US", "NM", "PT", "XA", "RF", "IO", "PX", "OT", "SR", "SEG",
    "KO", "PR", "DOC", "ECG", "SM", "ES", "OP", "OPT", "RTIMAGE", "RTSTRUCT", "RTPLAN", "RTDOSE",
    "XC", "BMD", "IVUS", "OCT", "AU", "HD", "REG",
];

/// A bounded metric label for a Modality value.
pub fn modality_label(modality: Option<&str>) -> &'static str {
    let value = modality.map(str::trim).unwrap_or("");
    if value.is_empty() {
        return "NONE";
    }
    KNOWN_MODALITIES
        .iter()
        .find(|m| m.eq_ignore_ascii_case(value))
        .copied()
        .unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modality_labels_are_bounded() {
        assert_eq!(modality_label(Some("CT")), "CT");
        assert_eq!(modality_label(Some("mr ")), "MR");
        assert_eq!(modality_label(Some("DROP TABLE")), "OTHER");
        assert_eq!(modality_label(None), "NONE");
    }

    #[test]
    fn rendered_metrics_use_prometheus_names() {
        let m = Metrics::new();
        m.ingest_instances
            .with_label_values(&["demo", "CT", "dimse"])
            .inc();
        let text = m.render();
        assert!(
            text.contains(
                "gateway_ingest_instances_total{modality=\"CT\",protocol=\"dimse\",site=\"demo\"} 1"
            ),
            "{text}"
        );
    }
}
