//! Runs claimed jobs: pixels → engine → SR → store → egress queue.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::watch;
use tracing::Instrument as _;

use super::JobsNotifier;
use super::models::{ModelCache, ModelUnavailable};
use super::queue::{self, Job, JobCompletion};
use crate::assemble::{ReadySeries, SeriesInstance, load_instance, load_series};
use crate::audit::{self, AuditEntry};
use crate::egress::{EgressHandle, NewDelivery};
use crate::infer::{Classification, EngineError, LoadedModel};
use crate::models::PerImage;
use crate::pixels::{PixelError, image_to_tensor};
use crate::results::sr::{
    self, Algorithm, COMPREHENSIVE_SR_STORAGE, Finding, ResultProvenance, SourceInstance, SrError,
    SrRequest, StudyContext,
};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

/// Explicit VR Little Endian: what the SR writer produces.
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// Series Number of result series (the highest a scanner rarely uses).
const RESULT_SERIES_NUMBER: i64 = 9900;

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
}

/// Why a job did not produce its result.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the job's source instances are no longer stored")]
    SourceGone,
    #[error("image: {0}")]
    Pixels(#[from] PixelError),
    #[error(transparent)]
    Model(#[from] ModelUnavailable),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("result: {0}")]
    Result(#[from] SrError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("index: {0}")]
    Index(#[from] rusqlite::Error),
    #[error("egress queue: {0}")]
    Egress(String),
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
            Self::SourceGone
            | Self::Pixels(_)
            | Self::Model(_)
            | Self::Unsupported(_)
            | Self::Result(_) => false,
        }
    }

    /// A bounded label for metrics and the job row.
    pub fn as_label(&self) -> &'static str {
        match self {
            Self::SourceGone => "source_gone",
            Self::Pixels(_) => "bad_image",
            Self::Model(_) => "model_unavailable",
            Self::Engine(e) => e.as_label(),
            Self::Unsupported(_) => "unsupported",
            Self::Result(_) => "result_invalid",
            Self::Store(_) => "store_error",
            Self::Index(_) => "index_error",
            Self::Egress(_) => "egress_error",
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
    store: Store,
    models: Arc<ModelCache>,
    egress: Option<EgressHandle>,
    metrics: Metrics,
    notifier: JobsNotifier,
    depth_refreshed_ms: AtomicI64,
}

/// Least time between two refreshes of the queue-depth gauge.
const DEPTH_REFRESH_MS: i64 = 500;

/// What one finished job produced.
struct Produced {
    completion: JobCompletion,
    sources: Vec<String>,
    stored_path: PathBuf,
    classification: Classification,
}

impl JobRunner {
    pub fn new(
        config: RunnerConfig,
        store: Store,
        models: Arc<ModelCache>,
        egress: Option<EgressHandle>,
        metrics: Metrics,
        notifier: JobsNotifier,
    ) -> Self {
        let db_path = store.layout().index_path();
        let data_dir = store.layout().root().to_path_buf();
        Self {
            inner: Arc::new(Inner {
                config,
                db_path,
                data_dir,
                store,
                models,
                egress,
                metrics,
                notifier,
                depth_refreshed_ms: AtomicI64::new(0),
            }),
        }
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
                        _ = self.inner.notifier.woken() => {}
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
            let gauge = &self.inner.metrics.pipeline.queue_depth;
            for state in ["queued", "running", "done", "failed", "assembling"] {
                let n = counts.iter().find(|(s, _)| s == state).map_or(0, |c| c.1);
                gauge.with_label_values(&[state]).set(n);
            }
        }
    }

    async fn run(&self, job: Job) {
        let span = tracing::info_span!("job", id = job.id, route = %job.route, model = %job.model, site = %job.site);
        async {
            let metrics = &self.inner.metrics.pipeline;
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
        let series_uid = job.series_instance_uid.clone();
        let instance_uid = job.sop_instance_uid.clone();
        let series = self
            .db(move |c| match instance_uid {
                Some(sop) => load_instance(c, &sop),
                None => load_series(c, &series_uid),
            })
            .await?
            .ok_or(JobError::SourceGone)?;
        let sources: Vec<SeriesInstance> = match &job.sop_instance_uid {
            Some(sop) => vec![series.instance(sop).cloned().ok_or(JobError::SourceGone)?],
            None => series.instances.clone(),
        };
        let model = self.inner.models.get(&job.model).await?;
        if model.manifest().per_image != PerImage::TwoD {
            return Err(JobError::Unsupported(
                "volume models are not run by the pipeline yet".into(),
            ));
        }
        let classification = self.classify_all(job, &model, &sources).await?;
        let produced = self
            .write_result(job, &series, &sources, &model, classification)
            .await?;
        self.deliver(job, &produced).await?;

        let metrics = &self.inner.metrics.pipeline;
        let version = job.model.version.to_string();
        for label in &produced.classification.labels {
            let decision = if label.positive {
                "positive"
            } else {
                "negative"
            };
            metrics
                .findings
                .with_label_values(&[
                    &job.route,
                    &job.model.name,
                    &version,
                    &label.label,
                    decision,
                ])
                .inc();
        }
        let id = job.id;
        let completion = produced.completion.clone();
        let detail = completion_detail(job, &produced);
        self.db(move |c| {
            let tx = c.transaction()?;
            queue::complete(&tx, id, &completion)?;
            audit::append(
                &tx,
                &AuditEntry {
                    actor: "system:pipeline".into(),
                    action: "inference.completed".into(),
                    detail,
                },
            )?;
            tx.commit()
        })
        .await?;
        let waited = (crate::time::unix_millis() - job.ready_after_ms).max(0) as f64 / 1000.0;
        metrics
            .end_to_end_seconds
            .with_label_values(&[&job.site, &job.route])
            .observe(waited);
        tracing::info!(
            positives = produced.classification.positives().count(),
            sources = produced.sources.len(),
            "result stored"
        );
        Ok(())
    }

    /// Runs the model on every source image; a series' score per label is
    /// the highest of its images' (any positive slice makes it positive).
    async fn classify_all(
        &self,
        job: &Job,
        model: &LoadedModel,
        sources: &[SeriesInstance],
    ) -> Result<Classification, JobError> {
        let version = job.model.version.to_string();
        let mut combined: Option<Classification> = None;
        for source in sources {
            let path = self.inner.data_dir.join(&source.path);
            let manifest = Arc::clone(model.manifest());
            let tensor = tokio::task::spawn_blocking(move || {
                let object = dicom_object::open_file(&path)
                    .map_err(|e| PixelError::Decode(format!("cannot read stored instance: {e}")))?;
                image_to_tensor(&object, 0, &manifest.preprocessing, &manifest.input)
            })
            .await
            .map_err(|e| JobError::Internal(format!("pixel task: {e}")))??;
            let started = Instant::now();
            let result = model.classify(tensor).await;
            let outcome = if result.is_ok() { "ok" } else { "error" };
            self.inner
                .metrics
                .pipeline
                .inference_seconds
                .with_label_values(&[&job.route, &job.model.name, &version, outcome])
                .observe(started.elapsed().as_secs_f64());
            let classification = result?;
            combined = Some(match combined {
                None => classification,
                Some(so_far) => max_per_label(so_far, classification),
            });
        }
        combined.ok_or(JobError::SourceGone)
    }

    async fn write_result(
        &self,
        job: &Job,
        series: &ReadySeries,
        sources: &[SeriesInstance],
        model: &LoadedModel,
        classification: Classification,
    ) -> Result<Produced, JobError> {
        let config = &self.inner.config;
        let key = job.key();
        let key_refs: Vec<&str> = key.iter().map(String::as_str).collect();
        let sop_instance_uid =
            sr::derived_uid(&config.uid_root, &[&["result"], &key_refs[..]].concat());
        let model_id = job.model.to_string();
        let series_instance_uid = sr::derived_uid(
            &config.uid_root,
            &[
                "result-series",
                &job.series_instance_uid,
                &model_id,
                &job.route,
            ],
        );
        let manifest = model.manifest();
        let (content_date, content_time) = utc_date_time();
        let request = SrRequest {
            study: study_context(series),
            sources: sources
                .iter()
                .map(|s| SourceInstance {
                    sop_class_uid: s.sop_class_uid.clone(),
                    sop_instance_uid: s.sop_instance_uid.clone(),
                    series_instance_uid: series.series_instance_uid.clone(),
                })
                .collect(),
            algorithm: Algorithm {
                name: manifest.name.clone(),
                version: manifest.version.to_string(),
                sha256: manifest.sha256.clone(),
                engine: model.engine_kind().to_string(),
                demo: manifest.demo,
                clinical_use: manifest.clinical_use.clone(),
                intended_use: manifest.intended_use.clone(),
                limitations: manifest.limitations.clone(),
            },
            provenance: ResultProvenance {
                route: job.route.clone(),
                step: "primary".into(),
                step_reason: None,
            },
            findings: classification
                .labels
                .iter()
                .map(|l| Finding {
                    label: l.label.clone(),
                    score: l.score,
                    threshold: l.threshold,
                    positive: l.positive,
                })
                .collect(),
            series_instance_uid: series_instance_uid.clone(),
            sop_instance_uid: sop_instance_uid.clone(),
            series_number: RESULT_SERIES_NUMBER,
            series_description: format!("AI result: {} {}", manifest.name, manifest.version),
            content_date,
            content_time,
            manufacturer: "DICOM Inference Gateway".into(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            station_ae_title: config.ae_title.clone(),
        };

        // A re-run after a crash finds its result already stored: keep it.
        let existing_uid = sop_instance_uid.clone();
        let existing = self
            .db(move |c| crate::store::index::find(c, &existing_uid))
            .await?;
        let stored_path = match existing {
            Some(found) => PathBuf::from(found.path),
            None => {
                let bytes = tokio::task::spawn_blocking(move || sr::write_sr(&request))
                    .await
                    .map_err(|e| JobError::Internal(format!("SR task: {e}")))??;
                self.inner
                    .store
                    .store_generated(&bytes, &job.site, &config.ae_title)
                    .await?
                    .path
            }
        };
        Ok(Produced {
            completion: JobCompletion {
                engine: model.engine_kind().to_string(),
                model_sha256: manifest.sha256.clone(),
                step: "primary".into(),
                findings: findings_json(&classification),
                result_series_uid: series_instance_uid,
                result_sop_uid: sop_instance_uid,
            },
            sources: sources.iter().map(|s| s.sop_instance_uid.clone()).collect(),
            stored_path,
            classification,
        })
    }

    /// Queues the result for each of the route's destinations (idempotent).
    async fn deliver(&self, job: &Job, produced: &Produced) -> Result<(), JobError> {
        if job.destinations.is_empty() {
            return Ok(());
        }
        let egress = self.inner.egress.as_ref().ok_or_else(|| {
            JobError::Egress("route names destinations but egress is not running".into())
        })?;
        for destination in &job.destinations {
            egress
                .enqueue(NewDelivery {
                    destination: destination.clone(),
                    sop_class_uid: COMPREHENSIVE_SR_STORAGE.to_string(),
                    sop_instance_uid: produced.completion.result_sop_uid.clone(),
                    transfer_syntax_uid: EXPLICIT_VR_LITTLE_ENDIAN.to_string(),
                    path: produced.stored_path.to_string_lossy().into_owned(),
                    origin: format!("job:{}", job.id),
                })
                .await
                .map_err(|e| JobError::Egress(e.to_string()))?;
        }
        Ok(())
    }

    /// Runs `f` on a fresh connection to the index, off the async runtime.
    async fn db<T, F>(&self, f: F) -> rusqlite::Result<T>
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

fn findings_json(classification: &Classification) -> serde_json::Value {
    serde_json::Value::Array(
        classification
            .labels
            .iter()
            .map(|l| {
                serde_json::json!({
                    "label": l.label,
                    "score": l.score,
                    "threshold": l.threshold,
                    "positive": l.positive,
                })
            })
            .collect(),
    )
}

fn study_context(series: &ReadySeries) -> StudyContext {
    let a = &series.first;
    StudyContext {
        study_instance_uid: series.study_instance_uid.clone(),
        patient_name: a.patient_name.clone(),
        patient_id: a.patient_id.clone(),
        patient_birth_date: a.patient_birth_date.clone(),
        patient_sex: a.patient_sex.clone(),
        study_date: a.study_date.clone(),
        study_time: a.study_time.clone(),
        accession_number: a.accession_number.clone(),
        study_id: a.study_id.clone(),
        referring_physician_name: a.referring_physician_name.clone(),
        study_description: a.study_description.clone(),
    }
}

/// Today's date and time in UTC as DICOM DA and TM values.
fn utc_date_time() -> (String, String) {
    // RFC 3339 in UTC: 2026-11-21T22:40:00Z (fraction optional).
    let now = crate::time::now_rfc3339();
    let date: String = now.chars().take(10).filter(char::is_ascii_digit).collect();
    let time: String = now
        .chars()
        .skip(11)
        .take(8)
        .filter(char::is_ascii_digit)
        .collect();
    (date, time)
}

/// The audit record of a result: inputs, route, step, model and output.
fn completion_detail(job: &Job, produced: &Produced) -> serde_json::Value {
    serde_json::json!({
        "job": job.id,
        "route": job.route,
        "step": produced.completion.step,
        "model": job.model.name,
        "version": job.model.version.to_string(),
        "model_sha256": produced.completion.model_sha256,
        "engine": produced.completion.engine,
        "study_instance_uid": job.study_instance_uid,
        "series_instance_uid": job.series_instance_uid,
        "source_instances": produced.sources,
        "result_sop_instance_uid": produced.completion.result_sop_uid,
        "findings": produced.completion.findings,
    })
}

fn failure_detail(job: &Job, kind: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "job": job.id,
        "route": job.route,
        "model": job.model.name,
        "version": job.model.version.to_string(),
        "study_instance_uid": job.study_instance_uid,
        "series_instance_uid": job.series_instance_uid,
        "sop_instance_uid": job.sop_instance_uid,
        "error_kind": kind,
        "error": message,
    })
}
