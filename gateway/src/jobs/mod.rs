//! Inference jobs, between `assemble` (which queues them) and `results`:
//! a runner claims a job from the durable queue, builds the input tensors
//! (`pixels`), runs the route's model (`infer`), writes a Comprehensive SR
//! (`results::sr`), stores it through the `store`, and queues it for the
//! route's destinations (`egress`).

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
