//! Runs claimed jobs: pixels → engine (the route's chain of models, each
//! behind its circuit breaker and the attempt timeout) → SR → store →
//! egress queue; or, when every model has been given up, the route's
//! terminal step.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::watch;
use tracing::Instrument as _;

use super::JobsNotifier;
use super::chain::{
    AttemptResult, ChainOutcome, GivenUp, Plan, Scored, publish_circuit, record, step_name,
    step_reason,
};
use super::model_cache::ModelCache;
use super::queue::{self, Job, JobCompletion, JobPurpose};
use super::result::{
    Step, compare_findings, completion_detail, failure_detail, findings_json, served_by,
};
use crate::assemble::{ReadySeries, SeriesInstance, load_instance, load_series};
use crate::audit::{self, AuditEntry};
use crate::egress::EgressHandle;
use crate::infer::{AttemptError, CircuitRegistry, Classification, EngineError, LoadedModel};
use crate::models::PerImage;
use crate::pixels::{PixelError, catch_decoder_panic, image_to_tensor, open_stored};
use crate::results::sr::SrError;
use crate::route::{RouteStateStore, RoutesHandle, Terminal};
use crate::store::{Store, StoreError};
use crate::telemetry::drift::{AcquisitionParams, DriftObservation, InputStats};
use crate::telemetry::{FailureObservation, JobLabels, Metrics, ResultObservation};

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Jobs run at once.
    pub workers: usize,
    /// UID root for result series and instances.
    pub uid_root: String,
    pub ae_title: String,
    /// Attempts for retryable failures (engine overloaded or unavailable,
    /// store or index trouble) before a job is failed.
    pub max_attempts: u32,
    pub retry_delay: Duration,
    /// How often idle runners look for due jobs (retries come due by time).
    pub poll_interval: Duration,
    /// Longest one model may take on one job, unless the route says.
    pub attempt_timeout: Duration,
}

/// What the runners work with besides their configuration.
pub struct RunnerParts {
    pub store: Store,
    pub models: Arc<ModelCache>,
    pub egress: Option<EgressHandle>,
    pub metrics: Metrics,
    pub notifier: JobsNotifier,
    /// The routes and operator state in force, read at each job so a
    /// flip applies to queued work at once.
    pub routes: RoutesHandle,
    pub states: Arc<RouteStateStore>,
    pub circuits: Arc<CircuitRegistry>,
    /// Results already computed for the same model and input tensor.
    pub cache: crate::cache::ResultCache,
}

/// Why a job did not produce its result.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the job's source instances are no longer stored")]
    SourceGone,
    /// One source image cannot be read: the job fails for good (no other
    /// model would read it better, and a retry reads the same bytes).
    #[error("image {position} of {count}: {error}")]
    BadImage {
        /// 1-based, in the job's source order.
        position: usize,
        count: usize,
        #[source]
        error: PixelError,
    },
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("result: {0}")]
    Result(#[from] SrError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("index: {0}")]
    Index(#[from] rusqlite::Error),
    #[error("egress queue: {0}")]
    Egress(String),
    #[error("shadow run gave no result: {0}")]
    ShadowFailed(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl JobError {
    /// Whether running the same job later may succeed unchanged.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Engine(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Index(_) | Self::Egress(_) | Self::Internal(_) => true,
            Self::SourceGone | Self::BadImage { .. } | Self::Result(_) | Self::ShadowFailed(_) => {
                false
            }
        }
    }

    /// A bounded label for metrics and the job row.
    pub fn as_label(&self) -> &'static str {
        match self {
            Self::SourceGone => "source_gone",
            Self::BadImage { .. } => "bad_image",
            Self::Engine(e) => e.as_label(),
            Self::Result(_) => "result_invalid",
            Self::Store(_) => "store_error",
            Self::Index(_) => "index_error",
            Self::Egress(_) => "egress_error",
            Self::ShadowFailed(_) => "shadow_failed",
            Self::Internal(_) => "internal",
        }
    }
}

/// The job workers.
#[derive(Clone)]
pub struct JobRunner {
    inner: Arc<Inner>,
}

struct Inner {
    config: RunnerConfig,
    db_path: PathBuf,
    data_dir: PathBuf,
    parts: RunnerParts,
    depth_refreshed_ms: AtomicI64,
}

/// Least time between two refreshes of the queue-depth gauge.
const DEPTH_REFRESH_MS: i64 = 500;

impl JobRunner {
    pub fn new(config: RunnerConfig, parts: RunnerParts) -> Self {
        let db_path = parts.store.layout().index_path();
        let data_dir = parts.store.layout().root().to_path_buf();
        Self {
            inner: Arc::new(Inner {
                config,
                db_path,
                data_dir,
                parts,
                depth_refreshed_ms: AtomicI64::new(0),
            }),
        }
    }

    pub(super) fn config(&self) -> &RunnerConfig {
        &self.inner.config
    }

    pub(super) fn store(&self) -> &Store {
        &self.inner.parts.store
    }

    pub(super) fn egress(&self) -> Option<&EgressHandle> {
        self.inner.parts.egress.as_ref()
    }

    fn metrics(&self) -> &crate::telemetry::PipelineMetrics {
        &self.inner.parts.metrics.pipeline
    }

    fn metrics_all(&self) -> &Metrics {
        &self.inner.parts.metrics
    }

    /// Queues jobs a crash left running, then starts the workers.
    pub async fn spawn(
        &self,
        shutdown: watch::Receiver<bool>,
    ) -> rusqlite::Result<Vec<tokio::task::JoinHandle<()>>> {
        let requeued = self.db(|c| queue::requeue_interrupted(c)).await?;
        if requeued > 0 {
            tracing::warn!(jobs = requeued, "jobs interrupted by a stop queued again");
        }
        Ok((0..self.inner.config.workers.max(1))
            .map(|_| {
                let runner = self.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { runner.work(shutdown).await })
            })
            .collect())
    }

    async fn work(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = crate::time::unix_millis();
            match self.db(move |c| queue::claim(c, now)).await {
                Ok(Some(job)) => self.run(job).await,
                Ok(None) => {
                    self.refresh_depth().await;
                    tokio::select! {
                        _ = self.inner.parts.notifier.woken() => {}
                        _ = tokio::time::sleep(self.inner.config.poll_interval) => {}
                        _ = shutdown.changed() => return,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim a job; retrying");
                    tokio::time::sleep(self.inner.config.poll_interval).await;
                }
            }
        }
    }

    /// Updates the queue-depth gauge, at most twice a second: under load
    /// the counts would otherwise cost more than the jobs' own bookkeeping.
    async fn refresh_depth(&self) {
        let now = crate::time::unix_millis();
        let last = self.inner.depth_refreshed_ms.load(Ordering::Relaxed);
        if now - last < DEPTH_REFRESH_MS
            || self
                .inner
                .depth_refreshed_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let counts = self
            .db(|c| {
                let mut counts = queue::counts(c)?;
                counts.push((
                    "assembling".to_string(),
                    crate::assemble::assembling_count(c)?,
                ));
                Ok(counts)
            })
            .await;
        if let Ok(counts) = counts {
            let gauge = &self.metrics().queue_depth;
            for state in ["queued", "running", "done", "failed", "assembling"] {
                let n = counts.iter().find(|(s, _)| s == state).map_or(0, |c| c.1);
                gauge.with_label_values(&[state]).set(n);
            }
        }
    }

    async fn run(&self, job: Job) {
        let span = tracing::info_span!("job", id = job.id, route = %job.route, model = %job.model, site = %job.site);
        async {
            let metrics = self.metrics();
            match self.execute(&job).await {
                Ok(()) => {
                    metrics.jobs.with_label_values(&[job.route.as_str(), "done"]).inc();
                }
                Err(e) => {
                    let retry = e.is_retryable() && job.attempts < self.inner.config.max_attempts;
                    let kind = e.as_label();
                    let message = e.to_string();
                    let retry_at = retry.then(|| {
                        crate::time::unix_millis()
                            + self.inner.config.retry_delay.as_millis() as i64 * i64::from(job.attempts)
                    });
                    let outcome = if retry { "retry" } else { "failed" };
                    metrics.jobs.with_label_values(&[job.route.as_str(), outcome]).inc();
                    let version = job.model.version.to_string();
                    self.metrics_all().performance.record_failure(&FailureObservation {
                        job: job_labels(&job, &job.model.name, &version),
                        kind,
                        will_retry: retry,
                    });
                    tracing::warn!(error_kind = kind, error = %message, attempts = job.attempts, retry, "job failed");
                    let id = job.id;
                    let detail = failure_detail(&job, kind, &message);
                    let recorded = self
                        .db(move |c| {
                            queue::fail(c, id, kind, &message, retry_at)?;
                            if retry_at.is_none() {
                                let tx = c.transaction()?;
                                audit::append(&tx, &AuditEntry {
                                    actor: "system:pipeline".into(),
                                    action: "inference.failed".into(),
                                    detail,
                                })?;
                                tx.commit()?;
                            }
                            Ok(())
                        })
                        .await;
                    if let Err(e) = recorded {
                        tracing::error!(error = %e, "cannot record a job failure; it will run again after a restart");
                    }
                }
            }
            self.refresh_depth().await;
        }
        .instrument(span)
        .await
    }

    async fn execute(&self, job: &Job) -> Result<(), JobError> {
        let (series, sources) = self.load_sources(job).await?;
        let plan = Plan::for_job(
            job,
            &self.inner.parts.routes.current(),
            &self.inner.parts.states.get(&job.route),
            self.inner.config.attempt_timeout,
            crate::time::unix_millis(),
        );
        let outcome = self.run_chain(job, &plan, &sources).await?;
        match (job.purpose, outcome) {
            (
                JobPurpose::Production,
                ChainOutcome::Served {
                    index,
                    model,
                    scored,
                    given_up,
                },
            ) => {
                self.finish_served(job, &series, &sources, index, &model, scored, &given_up)
                    .await
            }
            (JobPurpose::Production, ChainOutcome::Exhausted { given_up }) => {
                let terminal = plan.terminal.unwrap_or(Terminal::StoreOnly);
                self.finish_terminal(job, &sources, terminal, &given_up)
                    .await
            }
            (JobPurpose::Shadow, ChainOutcome::Served { model, scored, .. }) => {
                self.finish_shadow(job, &sources, &model, &scored.classification)
                    .await
            }
            (JobPurpose::Shadow, ChainOutcome::Exhausted { given_up }) => Err(
                JobError::ShadowFailed(step_reason(&given_up).unwrap_or_default()),
            ),
        }
    }

    async fn load_sources(
        &self,
        job: &Job,
    ) -> Result<(ReadySeries, Vec<SeriesInstance>), JobError> {
        // The job's own site's copy: another site's instances with the same
        // UIDs are another series.
        let site = job.site.clone();
        let series_uid = job.series_instance_uid.clone();
        let instance_uid = job.sop_instance_uid.clone();
        let series = self
            .db(move |c| match instance_uid {
                Some(sop) => load_instance(c, &site, &sop),
                None => load_series(c, &site, &series_uid),
            })
            .await?
            .ok_or(JobError::SourceGone)?;
        let sources: Vec<SeriesInstance> = match &job.sop_instance_uid {
            Some(sop) => vec![series.instance(sop).cloned().ok_or(JobError::SourceGone)?],
            None => series.instances.clone(),
        };
        Ok((series, sources))
    }

    /// Tries the plan's models in order until one answers. A model that
    /// cannot load, is refused by its open circuit, fails or overruns the
    /// timeout is given up for the next. An image that cannot be read ends
    /// the job: no other model would read it better.
    async fn run_chain(
        &self,
        job: &Job,
        plan: &Plan,
        sources: &[SeriesInstance],
    ) -> Result<ChainOutcome, JobError> {
        let mut given_up = Vec::new();
        for (index, id) in plan.models.iter().enumerate() {
            if index == 0
                && let Some(reason) = &plan.forced
            {
                let detail = format!("fallback forced by an operator: {reason}");
                given_up.push(GivenUp::new(id, index, "forced", detail));
                continue;
            }
            let model = match self.inner.parts.models.get(id).await {
                Ok(model) => model,
                Err(e) => {
                    given_up.push(GivenUp::new(id, index, "model_unavailable", e.to_string()));
                    continue;
                }
            };
            if model.manifest().per_image != PerImage::TwoD {
                let detail = "volume models are not run by the pipeline yet".to_string();
                given_up.push(GivenUp::new(id, index, "unsupported", detail));
                continue;
            }
            let breaker = self.inner.parts.circuits.breaker(model.engine_kind(), id);
            let attempt = match breaker.try_acquire() {
                Err(open) => AttemptResult::GaveUp(AttemptError::CircuitOpen(open)),
                Ok(permit) => {
                    let call = self.classify_all(job, &model, sources);
                    let outcome = match tokio::time::timeout(plan.timeout, call).await {
                        Ok(Ok(scored)) => AttemptResult::Answered(scored),
                        Ok(Err(JobError::Engine(e))) => AttemptResult::GaveUp(e.into()),
                        // Neither the engine's success nor its failure.
                        Ok(Err(other)) => return Err(other),
                        Err(_) => AttemptResult::GaveUp(AttemptError::Timeout(plan.timeout)),
                    };
                    record(permit, &outcome);
                    outcome
                }
            };
            publish_circuit(
                &self.metrics().circuit_state,
                model.engine_kind(),
                id,
                &breaker,
            );
            match attempt {
                AttemptResult::Answered(scored) => {
                    self.count_given_up(job, &given_up);
                    return Ok(ChainOutcome::Served {
                        index,
                        model,
                        scored,
                        given_up,
                    });
                }
                AttemptResult::GaveUp(error) => {
                    tracing::warn!(model = %id, reason = error.reason(), error = %error, "model given up");
                    given_up.push(GivenUp::from_attempt(id, index, &error));
                }
            }
        }
        self.count_given_up(job, &given_up);
        Ok(ChainOutcome::Exhausted { given_up })
    }

    fn count_given_up(&self, job: &Job, given_up: &[GivenUp]) {
        for step in given_up {
            self.metrics()
                .fallbacks
                .with_label_values(&[job.route.as_str(), step.reason, step.step()])
                .inc();
        }
    }

    /// Stores and forwards the SR of a production result, then records the
    /// job done with its audit entry in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn finish_served(
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
        self.deliver_sr(job, &stored).await?;

        let served = served_by(model);
        let version = served.model.version.to_string();
        for label in &classification.labels {
            let decision = if label.positive {
                "positive"
            } else {
                "negative"
            };
            self.metrics()
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
            self.metrics()
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
        self.monitor(job, &served_model, step, &scored, waited)
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
    async fn finish_terminal(
        &self,
        job: &Job,
        sources: &[SeriesInstance],
        terminal: Terminal,
        given_up: &[GivenUp],
    ) -> Result<(), JobError> {
        let forwarded = match terminal {
            Terminal::StoreOnly => 0,
            Terminal::ForwardUnprocessed => self.deliver_unprocessed(job, sources).await?,
        };
        let step = terminal.as_str();
        self.metrics()
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
        let version = job.model.version.to_string();
        self.metrics_all()
            .performance
            .record_result(&ResultObservation {
                job: job_labels(job, &job.model.name, &version),
                step,
                cache_hit: None,
                end_to_end: waited,
                findings: &[],
            });
        tracing::warn!(step, forwarded, "no model could serve: terminal step taken");
        Ok(())
    }

    /// A shadow result: findings recorded and compared, nothing stored in
    /// the study, nothing forwarded.
    async fn finish_shadow(
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
        self.db(move |c| {
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
            self.metrics()
                .end_to_end_seconds
                .with_label_values(&[&job.site, &job.route])
                .observe(waited.as_secs_f64());
        }
        Ok(waited)
    }

    /// Per-site performance and drift of a stored result. A result taken
    /// from the cache is not new data for drift: a re-sent series would
    /// otherwise count twice.
    async fn monitor(
        &self,
        job: &Job,
        served: &crate::models::ModelId,
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
        let telemetry = self.metrics_all();
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
            && let Err(e) = self.db(move |c| outcome.write(c)).await
        {
            tracing::warn!(error = %e, "cannot record drift state");
        }
    }

    /// When both the production and the shadow job of the same work are
    /// done, records their agreement on the shadow job and in metrics.
    /// Best effort: a failure here loses a comparison, not a result.
    async fn compare_with_counterpart(&self, job: &Job, findings: &serde_json::Value) {
        let lookup = job.clone();
        let Ok(Some((other_id, other))) = self
            .db(move |c| queue::counterpart_findings(c, &lookup))
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
            self.metrics()
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
            .db(move |c| queue::set_comparison(c, shadow_id, &comparison))
            .await
        {
            tracing::warn!(error = %e, "cannot record a shadow comparison");
        }
    }

    /// Runs the model on every source image; a series' score per label is
    /// the highest of its images' (any positive slice makes it positive).
    /// An image whose input tensor this model version has already scored
    /// takes the cached scores instead of an inference. A score that is
    /// not a finite number is the engine's failure: no result may rest on
    /// it, and it is never cached.
    async fn classify_all(
        &self,
        job: &Job,
        model: &LoadedModel,
        sources: &[SeriesInstance],
    ) -> Result<Scored, JobError> {
        let id = model.id();
        let version = id.version.to_string();
        let cache = &self.inner.parts.cache;
        let fingerprint = crate::cache::ModelFingerprint::of(model.manifest());
        let mut combined: Option<Classification> = None;
        let mut all_cached = true;
        let mut inference = Duration::ZERO;
        let mut acquisition: Option<AcquisitionParams> = None;
        let mut inputs: Vec<InputStats> = Vec::new();
        for (index, source) in sources.iter().enumerate() {
            let path = self.inner.data_dir.join(&source.path);
            let manifest = Arc::clone(model.manifest());
            let hash_input = cache.is_enabled();
            let first = acquisition.is_none();
            // The task boundary of the pixel pipeline: a decoder panic is
            // caught here and fails this image like any other bad image.
            let (tensor, input, params, stats) = tokio::task::spawn_blocking(move || {
                catch_decoder_panic(|| {
                    let object = open_stored(&path)?;
                    let tensor =
                        image_to_tensor(&object, 0, &manifest.preprocessing, &manifest.input)?;
                    let input = hash_input.then(|| {
                        crate::cache::InputDigest::of_tensor(&manifest.input.name, &tensor)
                    });
                    let params = first.then(|| AcquisitionParams::from_object(&object));
                    let stats = InputStats::of_tensor(&tensor);
                    Ok::<_, PixelError>((tensor, input, params, stats))
                })
            })
            .await
            .map_err(|e| JobError::Internal(format!("pixel task: {e}")))?
            .map_err(|error| JobError::BadImage {
                position: index + 1,
                count: sources.len(),
                error,
            })?;
            if let Some(params) = params {
                acquisition = Some(params);
            }
            inputs.extend(stats);
            let key = input.map(|input| fingerprint.key(&input));
            let cached = match &key {
                Some(key) => cache.get(key).await,
                None => None,
            };
            let classification = match cached {
                Some(hit) => hit.classification,
                None => {
                    all_cached = false;
                    let started = Instant::now();
                    let result = model.classify(tensor).await.and_then(|c| {
                        match c.labels.iter().find(|l| !l.score.is_finite()) {
                            Some(bad) => Err(EngineError::Execution(format!(
                                "output `{}` gave a score that is not a finite number for label `{}`",
                                bad.output, bad.label
                            ))),
                            None => Ok(c),
                        }
                    });
                    let outcome = if result.is_ok() { "ok" } else { "error" };
                    self.metrics()
                        .inference_seconds
                        .with_label_values(&[&job.route, &id.name, &version, outcome])
                        .observe(started.elapsed().as_secs_f64());
                    inference += started.elapsed();
                    let classification = result?;
                    if let Some(key) = &key {
                        let value = crate::cache::CachedResult::new(
                            key,
                            classification.clone(),
                            model.engine_kind(),
                        );
                        cache.put(key, &value).await;
                    }
                    classification
                }
            };
            combined = Some(match combined {
                None => classification,
                Some(so_far) => max_per_label(so_far, classification),
            });
        }
        Ok(Scored {
            classification: combined.ok_or(JobError::SourceGone)?,
            all_cached,
            inference,
            acquisition: acquisition.unwrap_or_default(),
            input: InputStats::mean_of(&inputs),
        })
    }

    /// Runs `f` on a fresh connection to the index, off the async runtime.
    pub(super) async fn db<T, F>(&self, f: F) -> rusqlite::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let path = self.inner.db_path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            f(&mut conn)
        })
        .await
        .unwrap_or_else(|e| Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
    }
}

fn max_per_label(mut so_far: Classification, next: Classification) -> Classification {
    for (kept, new) in so_far.labels.iter_mut().zip(next.labels) {
        if new.score > kept.score {
            *kept = new;
        }
    }
    so_far
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
