//! Metric families of the inference pipeline: assembly, routing, jobs,
//! engines and results. Labels: site and route names from the config,
//! model names and versions from the repository, fixed outcomes.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

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
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const END_TO_END_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

impl PipelineMetrics {
    pub fn register(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "gateway_pipeline_queue_depth",
                "Jobs by state, and series still assembling (state=assembling)",
            ),
            &["state"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(queue_depth.clone()))
            .expect("unique metric");
        Self {
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
