//! Per-site performance metrics: what ingest received and how the pipeline
//! served it, labelled by site, modality, scanner, route, model and version,
//! so an operator can compare sites and scanners on one dashboard.
//!
//! These sit beside the stage metrics (`gateway_ingest_*`,
//! `gateway_inference_seconds`, `gateway_pipeline_*`), which keep their
//! names and labels for existing dashboards and tests; the families here add
//! the site and scanner dimensions. Every label value is bounded: sites from
//! the config, modalities through `modality_label`, scanners through
//! [`ScannerLabels`], routes and models from the config and repository,
//! outcomes and error kinds from fixed sets.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{HistogramVec, IntCounterVec, Registry};

use super::register::{counter_vec, histogram_vec};
use super::scanner::ScannerLabels;

/// Per-site families; cheap to clone (handles to the registered families).
#[derive(Clone)]
pub struct PerformanceMetrics {
    received_instances: IntCounterVec,
    received_bytes: IntCounterVec,
    jobs: IntCounterVec,
    errors: IntCounterVec,
    fallbacks: IntCounterVec,
    cache_requests: IntCounterVec,
    findings: IntCounterVec,
    end_to_end_seconds: HistogramVec,
    inference_seconds: HistogramVec,
    scanners: ScannerLabels,
}

/// The label values of one job that its result and its failures share.
#[derive(Debug, Clone, Copy)]
pub struct JobLabels<'a> {
    pub site: &'a str,
    /// A bounded label (`telemetry::modality_label`), as on the job row.
    pub modality: &'a str,
    /// From [`PerformanceMetrics::scanner_label`].
    pub scanner: &'a str,
    pub route: &'a str,
    pub model: &'a str,
    pub version: &'a str,
}

/// One finished job, as the runner knows it when the result is stored.
#[derive(Debug, Clone)]
pub struct ResultObservation<'a> {
    pub job: JobLabels<'a>,
    /// `primary`, or the fallback step that produced the result.
    pub step: &'a str,
    /// `Some(true)` when the result came from the cache, `None` without one.
    pub cache_hit: Option<bool>,
    /// Last instance of the series received → result stored.
    pub end_to_end: Duration,
    /// (label, positive) for every finding of the result.
    pub findings: &'a [(&'a str, bool)],
}

/// One failed attempt of a job.
#[derive(Debug, Clone)]
pub struct FailureObservation<'a> {
    pub job: JobLabels<'a>,
    /// A bounded error kind (`JobError::as_label`).
    pub kind: &'a str,
    /// Whether the job will be tried again.
    pub will_retry: bool,
}

const END_TO_END_BUCKETS: &[f64] = &[
    0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];
const INFERENCE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Metric names registered here, for the dashboard check and the docs.
pub const PERFORMANCE_METRIC_NAMES: &[&str] = &[
    "gateway_site_received_instances_total",
    "gateway_site_received_bytes_total",
    "gateway_site_jobs_total",
    "gateway_site_errors_total",
    "gateway_site_fallbacks_total",
    "gateway_site_cache_requests_total",
    "gateway_site_findings_total",
    "gateway_site_end_to_end_seconds",
    "gateway_site_inference_seconds",
];

impl PerformanceMetrics {
    pub fn register(registry: &Registry) -> Self {
        let counter =
            |name: &str, help: &str, labels: &[&str]| counter_vec(registry, name, help, labels);
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            histogram_vec(registry, name, help, labels, buckets)
        };
        Self {
            received_instances: counter(
                "gateway_site_received_instances_total",
                "Instances stored durably, by site, modality and scanner",
                &["site", "modality", "scanner"],
            ),
            received_bytes: counter(
                "gateway_site_received_bytes_total",
                "Bytes of instances stored durably, by site, modality and scanner",
                &["site", "modality", "scanner"],
            ),
            jobs: counter(
                "gateway_site_jobs_total",
                "Inference jobs finished (done), failed or retried, by site, scanner, route and model",
                &[
                    "site", "modality", "scanner", "route", "model", "version", "outcome",
                ],
            ),
            errors: counter(
                "gateway_site_errors_total",
                "Failed job attempts by site, scanner, route, model and error kind",
                &["site", "scanner", "route", "model", "version", "kind"],
            ),
            fallbacks: counter(
                "gateway_site_fallbacks_total",
                "Results produced by a fallback step rather than the primary model",
                &["site", "scanner", "route", "model", "version", "step"],
            ),
            cache_requests: counter(
                "gateway_site_cache_requests_total",
                "Result-cache lookups of finished jobs by outcome (hit, miss)",
                &["site", "scanner", "model", "version", "outcome"],
            ),
            findings: counter(
                "gateway_site_findings_total",
                "Findings of stored results by label and decision (positive, negative)",
                &[
                    "site", "scanner", "route", "model", "version", "label", "decision",
                ],
            ),
            end_to_end_seconds: histogram(
                "gateway_site_end_to_end_seconds",
                "Last instance of a series received to its result stored, by site, scanner and route",
                &["site", "scanner", "route"],
                END_TO_END_BUCKETS,
            ),
            inference_seconds: histogram(
                "gateway_site_inference_seconds",
                "Engine time per image by site, scanner, model and version",
                &["site", "scanner", "model", "version"],
                INFERENCE_BUCKETS,
            ),
            scanners: ScannerLabels::new(),
        }
    }

    /// The bounded scanner label of a header (see `telemetry::scanner`).
    pub fn scanner_label(&self, manufacturer: Option<&str>, model_name: Option<&str>) -> Arc<str> {
        self.scanners.label(manufacturer, model_name)
    }

    /// The label folder itself, for the report and the drift monitor.
    pub fn scanner_labels(&self) -> &ScannerLabels {
        &self.scanners
    }

    /// One instance stored durably (called where ingest counts
    /// `gateway_ingest_instances_total`).
    pub fn record_received(&self, site: &str, modality: &str, scanner: &str, bytes: u64) {
        let labels = [site, modality, scanner];
        self.received_instances.with_label_values(&labels).inc();
        self.received_bytes.with_label_values(&labels).inc_by(bytes);
    }

    /// Engine time of one image.
    pub fn record_inference(
        &self,
        site: &str,
        scanner: &str,
        model: &str,
        version: &str,
        elapsed: Duration,
    ) {
        self.inference_seconds
            .with_label_values(&[site, scanner, model, version])
            .observe(elapsed.as_secs_f64());
    }

    /// A job whose result was stored.
    pub fn record_result(&self, o: &ResultObservation<'_>) {
        let j = &o.job;
        self.jobs
            .with_label_values(&[
                j.site, j.modality, j.scanner, j.route, j.model, j.version, "done",
            ])
            .inc();
        if o.step != "primary" {
            self.fallbacks
                .with_label_values(&[j.site, j.scanner, j.route, j.model, j.version, o.step])
                .inc();
        }
        if let Some(hit) = o.cache_hit {
            let outcome = if hit { "hit" } else { "miss" };
            self.cache_requests
                .with_label_values(&[j.site, j.scanner, j.model, j.version, outcome])
                .inc();
        }
        for (label, positive) in o.findings {
            let decision = if *positive { "positive" } else { "negative" };
            self.findings
                .with_label_values(&[
                    j.site, j.scanner, j.route, j.model, j.version, label, decision,
                ])
                .inc();
        }
        self.end_to_end_seconds
            .with_label_values(&[j.site, j.scanner, j.route])
            .observe(o.end_to_end.as_secs_f64());
    }

    /// A failed attempt: counted as an error, and as a job `retry` or `failed`.
    pub fn record_failure(&self, o: &FailureObservation<'_>) {
        let j = &o.job;
        let outcome = if o.will_retry { "retry" } else { "failed" };
        self.jobs
            .with_label_values(&[
                j.site, j.modality, j.scanner, j.route, j.model, j.version, outcome,
            ])
            .inc();
        self.errors
            .with_label_values(&[j.site, j.scanner, j.route, j.model, j.version, o.kind])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, line_start: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{line_start}` in\n{text}"))
    }

    #[test]
    fn records_land_in_prometheus_families_with_bounded_labels() {
        let metrics = crate::telemetry::Metrics::new();
        let perf = &metrics.performance;
        let scanner = perf.scanner_label(Some("SIEMENS"), Some("SOMATOM go.Up"));
        perf.record_received("north", "CT", &scanner, 1000);
        perf.record_received("north", "CT", &scanner, 24);
        perf.record_inference("north", &scanner, "m", "1.0.0", Duration::from_millis(20));
        let job = JobLabels {
            site: "north",
            modality: "CT",
            scanner: &scanner,
            route: "r",
            model: "m",
            version: "1.0.0",
        };
        perf.record_result(&ResultObservation {
            job,
            step: "fallback-1",
            cache_hit: Some(true),
            end_to_end: Duration::from_secs(3),
            findings: &[("bleed", true), ("other", false)],
        });
        perf.record_failure(&FailureObservation {
            job,
            kind: "engine_timeout",
            will_retry: true,
        });
        let text = metrics.render();
        let s = "scanner=\"siemens_somatom-go-up\"";
        assert_eq!(
            value(
                &text,
                &format!("gateway_site_received_bytes_total{{modality=\"CT\",{s},site=\"north\"}}")
            ),
            1024.0
        );
        assert_eq!(
            value(
                &text,
                &format!(
                    "gateway_site_received_instances_total{{modality=\"CT\",{s},site=\"north\"}}"
                )
            ),
            2.0
        );
        assert!(text.contains("gateway_site_fallbacks_total{model=\"m\",route=\"r\",scanner=\"siemens_somatom-go-up\",site=\"north\",step=\"fallback-1\",version=\"1.0.0\"} 1"), "{text}");
        assert!(text.contains("gateway_site_cache_requests_total{model=\"m\",outcome=\"hit\""));
        assert!(text.contains("decision=\"positive\",label=\"bleed\""));
        assert!(text.contains("outcome=\"retry\""));
        assert!(text.contains("kind=\"engine_timeout\""));
        assert!(text.contains("gateway_site_end_to_end_seconds_bucket"));
        assert!(text.contains("gateway_site_inference_seconds_bucket"));
        for name in PERFORMANCE_METRIC_NAMES {
            assert!(text.contains(name), "{name} not rendered");
        }
    }
}
