//! Inference jobs, between `assemble` (which queues them) and `results`:
//! a runner claims a job from the durable queue, builds the input tensors
//! (`pixels`), runs the route's model (`infer`), writes a Comprehensive SR
//! (`results::sr`), stores it through the `store`, and queues it for the
//! route's destinations (`egress`).
//!
//! Layout, in the order a job meets it:
//! - `queue.rs`: the durable `jobs` table (insert, claim, complete, fail).
//! - `worker.rs`: `JobRunner`, the worker loop: claim, load sources, plan,
//!   then the steps below; failures retried or recorded and audited.
//! - `chain.rs`: the plan (serving model, fallbacks, terminal step) and the
//!   circuit bookkeeping of one attempt, pure.
//! - `attempt.rs`: `Attempts`, the attempt chain (pixels, result cache,
//!   engine under the circuit and timeout), until one model answers.
//! - `finish.rs`: `Finish`, the job's end: served, terminal or shadow; job
//!   row and audit entry in one transaction; shadow comparison.
//! - `result.rs`: `ResultOutput`, the SR stored in the study and the
//!   deliveries queued, plus the JSON the job row and audit record.
//! - `monitor.rs`: `Monitor`, per-site performance and drift observations.
//! - `model_cache.rs`, `model_health.rs`: the loaded model versions and
//!   their health (load failures, periodic probes).
//! - `error.rs`: `JobError`; `conn.rs`: `IndexDb`, a connection per call.
//!
//! Each step takes a small struct of borrows the runner builds; no step
//! calls back into `JobRunner`.

mod attempt;
mod chain;
mod conn;
mod error;
mod finish;
mod model_cache;
mod model_health;
mod monitor;
pub mod queue;
mod result;
mod worker;

use std::sync::Arc;

use tokio::sync::Notify;

pub use model_cache::{LoadedSummary, ModelCache, ModelUnavailable};
pub use model_health::{HealthState, ModelHealth, spawn_health_watch};
pub use queue::{Job, JobPurpose, JobRecord, NewJob};
pub use worker::{JobRunner, RunnerConfig, RunnerParts};

/// Wakes idle runners when the assembler has queued new jobs.
#[derive(Clone, Default)]
pub struct JobsNotifier(Arc<Notify>);

impl JobsNotifier {
    pub fn wake(&self) {
        self.0.notify_waiters();
        // A runner between its empty claim and its wait would miss
        // `notify_waiters`; one stored permit covers it.
        self.0.notify_one();
    }

    pub async fn woken(&self) {
        self.0.notified().await
    }
}
