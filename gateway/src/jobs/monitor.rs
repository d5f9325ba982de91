//! What a job's end tells the monitoring: per-site performance
//! (`telemetry::performance`, `gateway_site_*`) for every result, terminal
//! step and failure, and the drift monitor's observation of a newly
//! computed result, whose alerts and state are written to the index.

use std::time::Duration;

use super::chain::Scored;
use super::conn::IndexDb;
use super::queue::Job;
use crate::models::ModelId;
use crate::telemetry::drift::DriftObservation;
use crate::telemetry::{FailureObservation, JobLabels, Metrics, ResultObservation};

/// What the observations need: the metric families (performance and
/// drift) and the index the drift state is kept in.
pub(super) struct Monitor<'a> {
    pub metrics: &'a Metrics,
    pub db: &'a IndexDb,
}

impl Monitor<'_> {
    /// Per-site performance and drift of a stored result. A result taken
    /// from the cache is not new data for drift: a re-sent series would
    /// otherwise count twice.
    pub async fn served(
        &self,
        job: &Job,
        served: &ModelId,
        step: &str,
        scored: &Scored,
        waited: Duration,
    ) {
        let version = served.version.to_string();
        let labels = &scored.classification.labels;
        let findings: Vec<(&str, bool)> = labels
            .iter()
            .map(|l| (l.label.as_str(), l.positive))
            .collect();
        let telemetry = self.metrics;
        telemetry.performance.record_result(&ResultObservation {
            job: job_labels(job, &served.name, &version),
            step,
            cache_hit: Some(scored.all_cached),
            end_to_end: waited,
            findings: &findings,
        });
        if scored.all_cached {
            return;
        }
        telemetry.performance.record_inference(
            &job.site,
            &job.scanner,
            &served.name,
            &version,
            scored.inference,
        );
        let scores: Vec<(&str, f32)> = labels.iter().map(|l| (l.label.as_str(), l.score)).collect();
        let outcome = telemetry.drift.observe(&DriftObservation {
            site: &job.site,
            scanner: &job.scanner,
            model: &served.name,
            version: &version,
            scores: &scores,
            acquisition: &scored.acquisition,
            input: scored.input,
        });
        if !outcome.is_empty()
            && let Err(e) = self.db.run(move |c| outcome.write(c)).await
        {
            tracing::warn!(error = %e, "cannot record drift state");
        }
    }

    /// A terminal step taken: a result with no model and no findings,
    /// labelled with the planned model version.
    pub fn terminal(&self, job: &Job, step: &str, waited: Duration) {
        let version = job.model.version.to_string();
        self.metrics.performance.record_result(&ResultObservation {
            job: job_labels(job, &job.model.name, &version),
            step,
            cache_hit: None,
            end_to_end: waited,
            findings: &[],
        });
    }

    /// A failed attempt at `job`, labelled with the planned model version.
    pub fn failure(&self, job: &Job, kind: &str, will_retry: bool) {
        let version = job.model.version.to_string();
        self.metrics
            .performance
            .record_failure(&FailureObservation {
                job: job_labels(job, &job.model.name, &version),
                kind,
                will_retry,
            });
    }
}

/// The per-site labels of `job` for the model version that ran (or was
/// planned to run) it.
fn job_labels<'a>(job: &'a Job, model: &'a str, version: &'a str) -> JobLabels<'a> {
    JobLabels {
        site: &job.site,
        modality: &job.modality,
        scanner: &job.scanner,
        route: &job.route,
        model,
        version,
    }
}
