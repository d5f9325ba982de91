//! The worker loop: `JobRunner` re-queues jobs a crash left running,
//! starts the workers, and each claims a due job, loads its source images,
//! plans it (`chain::Plan`), hands it to the attempt chain (`attempt`) and
//! the outcome to `finish`, and records a failure (retry or give up,
//! audited). The steps get explicit borrows of what they need and never
//! call back into the runner.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument as _;

use super::JobsNotifier;
use super::attempt::Attempts;
use super::chain::{ChainOutcome, Plan, step_reason};
use super::conn::IndexDb;
use super::error::JobError;
use super::finish::Finish;
use super::model_cache::ModelCache;
use super::monitor::Monitor;
use super::queue::{self, Job, JobPurpose};
use super::result::{ResultOutput, failure_detail};
use crate::assemble::{ReadySeries, SeriesInstance, load_instance, load_series};
use crate::audit::{self, AuditEntry};
use crate::egress::EgressHandle;
use crate::infer::CircuitRegistry;
use crate::route::{RouteStateStore, RoutesHandle, Terminal};
use crate::store::Store;
use crate::telemetry::Metrics;

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

/// The job workers.
#[derive(Clone)]
pub struct JobRunner {
    inner: Arc<Inner>,
}

struct Inner {
    config: RunnerConfig,
    db: IndexDb,
    data_dir: PathBuf,
    parts: RunnerParts,
    depth_refreshed_ms: AtomicI64,
}

/// Least time between two refreshes of the queue-depth gauge.
const DEPTH_REFRESH_MS: i64 = 500;

impl JobRunner {
    pub fn new(config: RunnerConfig, parts: RunnerParts) -> Self {
        let db = IndexDb::new(parts.store.layout().index_path());
        let data_dir = parts.store.layout().root().to_path_buf();
        Self {
            inner: Arc::new(Inner {
                config,
                db,
                data_dir,
                parts,
                depth_refreshed_ms: AtomicI64::new(0),
            }),
        }
    }

    /// What the attempt chain works with.
    fn attempts(&self) -> Attempts<'_> {
        let parts = &self.inner.parts;
        Attempts {
            models: &parts.models,
            circuits: &parts.circuits,
            cache: &parts.cache,
            data_dir: &self.inner.data_dir,
            metrics: &parts.metrics.pipeline,
        }
    }

    /// What finishing a job works with.
    fn finish(&self) -> Finish<'_> {
        let parts = &self.inner.parts;
        Finish {
            db: &self.inner.db,
            output: ResultOutput {
                db: &self.inner.db,
                store: &parts.store,
                egress: parts.egress.as_ref(),
                uid_root: &self.inner.config.uid_root,
                ae_title: &self.inner.config.ae_title,
            },
            metrics: &parts.metrics.pipeline,
            monitor: self.monitor(),
        }
    }

    /// What the monitoring observations work with.
    fn monitor(&self) -> Monitor<'_> {
        Monitor {
            metrics: &self.inner.parts.metrics,
            db: &self.inner.db,
        }
    }

    /// Queues jobs a crash left running, then starts the workers.
    pub async fn spawn(
        &self,
        shutdown: watch::Receiver<bool>,
    ) -> rusqlite::Result<Vec<tokio::task::JoinHandle<()>>> {
        let requeued = self.inner.db.run(|c| queue::requeue_interrupted(c)).await?;
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
            match self.inner.db.run(move |c| queue::claim(c, now)).await {
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
            .inner
            .db
            .run(|c| {
                let mut counts = queue::counts(c)?;
                counts.push((
                    "assembling".to_string(),
                    crate::assemble::assembling_count(c)?,
                ));
                Ok(counts)
            })
            .await;
        if let Ok(counts) = counts {
            let gauge = &self.inner.parts.metrics.pipeline.queue_depth;
            for state in ["queued", "running", "done", "failed", "assembling"] {
                let n = counts.iter().find(|(s, _)| s == state).map_or(0, |c| c.1);
                gauge.with_label_values(&[state]).set(n);
            }
        }
    }

    async fn run(&self, job: Job) {
        let span = tracing::info_span!("job", id = job.id, route = %job.route, model = %job.model, site = %job.site);
        async {
            let metrics = &self.inner.parts.metrics.pipeline;
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
                    self.monitor().failure(&job, kind, retry);
                    tracing::warn!(error_kind = kind, error = %message, attempts = job.attempts, retry, "job failed");
                    let id = job.id;
                    let detail = failure_detail(&job, kind, &message);
                    let recorded = self
                        .inner
                        .db
                        .run(move |c| {
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
        let outcome = self.attempts().run_chain(job, &plan, &sources).await?;
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
                self.finish()
                    .served(job, &series, &sources, index, &model, scored, &given_up)
                    .await
            }
            (JobPurpose::Production, ChainOutcome::Exhausted { given_up }) => {
                let terminal = plan.terminal.unwrap_or(Terminal::StoreOnly);
                self.finish()
                    .terminal(job, &sources, terminal, &given_up)
                    .await
            }
            (JobPurpose::Shadow, ChainOutcome::Served { model, scored, .. }) => {
                self.finish()
                    .shadow(job, &sources, &model, &scored.classification)
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
            .inner
            .db
            .run(move |c| match instance_uid {
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
}
