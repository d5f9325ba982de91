//! How a job ends, once its attempt chain has an outcome: a production
//! result's SR stored and queued for the route's destinations, a terminal
//! step taken (`store-only`, `forward-unprocessed`), or a shadow result
//! recorded and compared; then the job row and its audit entry in one
//! transaction, and the observations for `monitor`. What is written and
//! forwarded is `result`'s.

use std::time::Duration;

use super::chain::{GivenUp, Scored, step_name, step_reason};
use super::conn::IndexDb;
use super::error::JobError;
use super::monitor::Monitor;
use super::queue::{self, Job, JobCompletion, JobPurpose};
use super::result::{
    ResultOutput, Step, compare_findings, completion_detail, findings_json, served_by,
};
use crate::assemble::{ReadySeries, SeriesInstance};
use crate::audit::{self, AuditEntry};
use crate::infer::{Classification, LoadedModel};
use crate::route::Terminal;
use crate::telemetry::PipelineMetrics;

/// What finishing needs: the index (job row, audit, comparisons), where
/// results go, the pipeline metrics, and the monitoring it reports to.
pub(super) struct Finish<'a> {
    pub db: &'a IndexDb,
    pub output: ResultOutput<'a>,
    pub metrics: &'a PipelineMetrics,
    pub monitor: Monitor<'a>,
}

impl Finish<'_> {
    /// Stores and forwards the SR of a production result, then records the
    /// job done with its audit entry in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn served(
        &self,
        job: &Job,
        series: &ReadySeries,
        sources: &[SeriesInstance],
        index: usize,
        model: &LoadedModel,
        scored: Scored,
        given_up: &[GivenUp],
    ) -> Result<(), JobError> {
        let classification = &scored.classification;
        let step = step_name(index);
        let reason = step_reason(given_up);
        let stored = self
            .output
            .store_sr(
                job,
                series,
                sources,
                model,
                classification,
                Step {
                    name: step,
                    reason: reason.as_deref(),
                },
            )
            .await?;
        self.output.deliver_sr(job, &stored).await?;

        let served = served_by(model);
        let version = served.model.version.to_string();
        for label in &classification.labels {
            let decision = if label.positive {
                "positive"
            } else {
                "negative"
            };
            self.metrics
                .findings
                .with_label_values(&[
                    &job.route,
                    &served.model.name,
                    &version,
                    &label.label,
                    decision,
                ])
                .inc();
        }
        if index > 0 {
            self.metrics
                .fallback_results
                .with_label_values(&[job.route.as_str(), step])
                .inc();
        }
        let findings = findings_json(classification);
        let mut detail = completion_detail(
            job,
            sources,
            Some(&served),
            step,
            given_up,
            Some(&findings),
            Some(&stored.sop_instance_uid),
        );
        detail["cache_hit"] = scored.all_cached.into();
        let served_model = served.model.clone();
        let completion = JobCompletion {
            served_by: Some(served),
            step: step.to_string(),
            step_reason: reason,
            findings: Some(findings.clone()),
            result_series_uid: Some(stored.series_instance_uid.clone()),
            result_sop_uid: Some(stored.sop_instance_uid.clone()),
            cache_hit: Some(scored.all_cached),
            inference_ms: Some(scored.inference.as_millis() as i64),
        };
        let waited = self
            .complete(job, completion, "inference.completed", detail)
            .await?;
        self.compare_with_counterpart(job, &findings).await;
        self.monitor
            .served(job, &served_model, step, &scored, waited)
            .await;
        tracing::info!(
            step,
            positives = classification.positives().count(),
            sources = sources.len(),
            "result stored"
        );
        Ok(())
    }

    /// Every model was given up: the images stay stored (`store-only`) or
    /// go to the route's destinations as they are (`forward-unprocessed`).
    pub async fn terminal(
        &self,
        job: &Job,
        sources: &[SeriesInstance],
        terminal: Terminal,
        given_up: &[GivenUp],
    ) -> Result<(), JobError> {
        let forwarded = match terminal {
            Terminal::StoreOnly => 0,
            Terminal::ForwardUnprocessed => self.output.deliver_unprocessed(job, sources).await?,
        };
        let step = terminal.as_str();
        self.metrics
            .fallback_results
            .with_label_values(&[job.route.as_str(), step])
            .inc();
        let mut detail = completion_detail(job, sources, None, step, given_up, None, None);
        detail["forwarded_deliveries"] = forwarded.into();
        let completion = JobCompletion {
            served_by: None,
            step: step.to_string(),
            step_reason: step_reason(given_up),
            findings: None,
            result_series_uid: None,
            result_sop_uid: None,
            cache_hit: None,
            inference_ms: None,
        };
        let waited = self
            .complete(job, completion, "inference.not_performed", detail)
            .await?;
        self.monitor.terminal(job, step, waited);
        tracing::warn!(step, forwarded, "no model could serve: terminal step taken");
        Ok(())
    }

    /// A shadow result: findings recorded and compared, nothing stored in
    /// the study, nothing forwarded.
    pub async fn shadow(
        &self,
        job: &Job,
        sources: &[SeriesInstance],
        model: &LoadedModel,
        classification: &Classification,
    ) -> Result<(), JobError> {
        let served = served_by(model);
        let findings = findings_json(classification);
        let detail = completion_detail(
            job,
            sources,
            Some(&served),
            "shadow",
            &[],
            Some(&findings),
            None,
        );
        let completion = JobCompletion {
            served_by: Some(served),
            step: "shadow".into(),
            step_reason: None,
            findings: Some(findings.clone()),
            result_series_uid: None,
            result_sop_uid: None,
            cache_hit: None,
            inference_ms: None,
        };
        self.complete(job, completion, "inference.shadow_completed", detail)
            .await?;
        self.compare_with_counterpart(job, &findings).await;
        Ok(())
    }

    async fn complete(
        &self,
        job: &Job,
        completion: JobCompletion,
        action: &'static str,
        detail: serde_json::Value,
    ) -> Result<Duration, JobError> {
        let id = job.id;
        self.db
            .run(move |c| {
                let tx = c.transaction()?;
                queue::complete(&tx, id, &completion)?;
                audit::append(
                    &tx,
                    &AuditEntry {
                        actor: "system:pipeline".into(),
                        action: action.into(),
                        detail,
                    },
                )?;
                tx.commit()
            })
            .await?;
        let waited =
            Duration::from_millis((crate::time::unix_millis() - job.ready_after_ms).max(0) as u64);
        if job.purpose == JobPurpose::Production {
            self.metrics
                .end_to_end_seconds
                .with_label_values(&[&job.site, &job.route])
                .observe(waited.as_secs_f64());
        }
        Ok(waited)
    }

    /// When both the production and the shadow job of the same work are
    /// done, records their agreement on the shadow job and in metrics.
    /// Best effort: a failure here loses a comparison, not a result.
    async fn compare_with_counterpart(&self, job: &Job, findings: &serde_json::Value) {
        let lookup = job.clone();
        let Ok(Some((other_id, other))) = self
            .db
            .run(move |c| queue::counterpart_findings(c, &lookup))
            .await
        else {
            return;
        };
        let (shadow_id, shadow, production) = match job.purpose {
            JobPurpose::Shadow => (job.id, findings.clone(), other),
            JobPurpose::Production => (other_id, other, findings.clone()),
        };
        let compared = compare_findings(&shadow, &production);
        for (label, agree, _) in &compared {
            let agreement = if *agree { "agree" } else { "disagree" };
            self.metrics
                .shadow_comparisons
                .with_label_values(&[job.route.as_str(), label.as_str(), agreement])
                .inc();
        }
        let comparison = serde_json::Value::Array(
            compared
                .iter()
                .map(|(label, agree, delta)| {
                    serde_json::json!({ "label": label, "agree": agree, "score_delta": delta })
                })
                .collect(),
        );
        if let Err(e) = self
            .db
            .run(move |c| queue::set_comparison(c, shadow_id, &comparison))
            .await
        {
            tracing::warn!(error = %e, "cannot record a shadow comparison");
        }
    }
}
