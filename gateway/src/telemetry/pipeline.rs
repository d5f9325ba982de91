//! Metric families of the inference pipeline: assembly, routing, jobs,
//! engines and results. Labels: site and route names from the config,
//! model names and versions from the repository, fixed outcomes.

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use super::register::{counter_vec, gauge_vec, histogram_vec};

#[derive(Clone)]
pub struct PipelineMetrics {
    /// Ready series that matched no route (stored only).
    pub unrouted_series: IntCounterVec,
    /// Ready series by site and route (a series may take several routes).
    pub routed_series: IntCounterVec,
    /// Engine time per image by route, model, version and outcome.
    pub inference_seconds: HistogramVec,
    /// From the last instance of a series received to its result stored.
    pub end_to_end_seconds: HistogramVec,
    /// Finished jobs by route and outcome (done, failed, retry).
    pub jobs: IntCounterVec,
    /// Findings by route, model, version, label and decision.
    pub findings: IntCounterVec,
    /// Jobs by state (queued, running, done, failed), and series assembling.
    pub queue_depth: IntGaugeVec,
    /// Steps skipped for the next one, by route, reason and the step given up.
    pub fallbacks: IntCounterVec,
    /// Jobs finished by a fallback step (a model after the first, or a
    /// terminal step), by route and step kind.
    pub fallback_results: IntCounterVec,
    /// 1 for each breaker's current state, 0 for the others.
    pub circuit_state: IntGaugeVec,
    /// 1 when a loaded version's last health probe passed, else 0.
    pub model_ready: IntGaugeVec,
    /// 1 for each route's operator state, 0 for the others.
    pub route_state: IntGaugeVec,
    /// Operator actions by action and outcome (ok, refused, forbidden).
    pub operator_actions: IntCounterVec,
    /// Series not started because their route is disabled or draining.
    pub skipped_series: IntCounterVec,
    /// Shadow results compared with production, by route, label and
    /// whether the decisions agree.
    pub shadow_comparisons: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const END_TO_END_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

impl PipelineMetrics {
    pub fn register(registry: &Registry) -> Self {
        let counter =
            |name: &str, help: &str, labels: &[&str]| counter_vec(registry, name, help, labels);
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            histogram_vec(registry, name, help, labels, buckets)
        };
        let queue_depth = gauge_vec(
            registry,
            "gateway_pipeline_queue_depth",
            "Jobs by state, and series still assembling (state=assembling)",
            &["state"],
        );
        let gauge =
            |name: &str, help: &str, labels: &[&str]| gauge_vec(registry, name, help, labels);
        Self {
            fallbacks: counter(
                "gateway_route_fallbacks_total",
                "Fallback activations: a step given up for the next, by route, reason (timeout, circuit_open, engine error kind, model_unavailable, forced) and step",
                &["route", "reason", "step"],
            ),
            fallback_results: counter(
                "gateway_route_fallback_results_total",
                "Jobs whose result came from a fallback step, by route and step (fallback, store-only, forward-unprocessed)",
                &["route", "step"],
            ),
            circuit_state: gauge(
                "gateway_circuit_state",
                "Circuit breaker state per engine and model version: 1 for the current state",
                &["engine", "model", "version", "state"],
            ),
            model_ready: gauge(
                "gateway_model_ready",
                "Loaded model versions by engine: 1 when the last health probe passed (for Triton, ModelReady), 0 when it failed",
                &["engine", "model", "version"],
            ),
            route_state: gauge(
                "gateway_route_operator_state",
                "Operator state per route: 1 for the current status (active, forced_fallback, draining, disabled) and for pinned",
                &["route", "state"],
            ),
            operator_actions: counter(
                "gateway_admin_operator_actions_total",
                "Operator actions through the admin API by action and outcome (ok, refused, forbidden)",
                &["action", "outcome"],
            ),
            skipped_series: counter(
                "gateway_route_skipped_series_total",
                "Series a route did not start because it is disabled or draining",
                &["route", "status"],
            ),
            shadow_comparisons: counter(
                "gateway_shadow_comparisons_total",
                "Shadow results compared with production by route, label and agreement (agree, disagree)",
                &["route", "label", "agreement"],
            ),
            unrouted_series: counter(
                "gateway_route_unrouted_series_total",
                "Ready series that matched no route and were only stored",
                &["site", "modality"],
            ),
            routed_series: counter(
                "gateway_route_series_total",
                "Ready series routed, by site and route",
                &["site", "route"],
            ),
            inference_seconds: histogram(
                "gateway_inference_seconds",
                "Engine time per image by route, model, version and outcome",
                &["route", "model", "version", "outcome"],
                LATENCY_BUCKETS,
            ),
            end_to_end_seconds: histogram(
                "gateway_pipeline_end_to_end_seconds",
                "From the last instance of a series received to its result stored, by site and route",
                &["site", "route"],
                END_TO_END_BUCKETS,
            ),
            jobs: counter(
                "gateway_pipeline_jobs_total",
                "Finished inference jobs by route and outcome",
                &["route", "outcome"],
            ),
            findings: counter(
                "gateway_results_findings_total",
                "Results by route, model, version, label and decision (positive or negative)",
                &["route", "model", "version", "label", "decision"],
            ),
            queue_depth,
        }
    }
}
