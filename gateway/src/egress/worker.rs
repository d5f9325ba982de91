//! The delivery worker: one task per destination takes due rows from the
//! queue, sends them in one association, and records each outcome.
//!
//! A task wakes when [`EgressHandle::enqueue`] notifies it (so a new result
//! goes out at once), and every [`POLL_INTERVAL`] otherwise (so retries come
//! due, and rows left pending by a restart go out).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prometheus::Registry;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::metrics::EgressMetrics;
use super::pool::{DestinationChanges, Spawner, WorkerPool};
use super::{
    DeliveryFilter, DeliveryQueue, DeliveryRecord, DeliveryState, Destination, Disposition,
    ForwardAssociation, ForwardError, NewDelivery, PreparedInstance, QueueError, RetryPolicy,
};

/// How often each destination task looks for due rows without being woken.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Instances sent in one association before the queue is read again.
const BATCH: u32 = 32;

/// Starts and owns the destination tasks.
pub struct Egress;

impl Egress {
    /// Spawns one task per destination; they stop when `shutdown` completes
    /// (an association in flight is dropped: its rows stay pending and are
    /// sent again after restart). The returned handle enqueues, queries and
    /// changes the destinations in force.
    pub fn spawn(
        queue: DeliveryQueue,
        destinations: Vec<Destination>,
        policy: RetryPolicy,
        data_dir: PathBuf,
        gateway_ae: String,
        registry: &Registry,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(EgressHandle, JoinHandle<()>), prometheus::Error> {
        let metrics = EgressMetrics::register(registry)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let spawner = Spawner {
            queue: queue.clone(),
            policy,
            data_dir,
            gateway_ae,
            metrics,
            stop: stop_rx,
        };
        let pool = Arc::new(WorkerPool::start(spawner, destinations));
        let stopping = Arc::clone(&pool);
        let join = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
            futures::future::join_all(stopping.take_tasks()).await;
        });
        Ok((EgressHandle { queue, pool }, join))
    }
}

/// What the rest of the gateway holds: enqueue results, query the queue,
/// change the destinations (reload).
#[derive(Clone)]
pub struct EgressHandle {
    queue: DeliveryQueue,
    pool: Arc<WorkerPool>,
}

impl EgressHandle {
    /// Enqueues durably (the row is committed when this returns) and wakes
    /// the destination's worker so delivery starts at once. A destination
    /// that is not configured (or no longer) takes nothing.
    pub async fn enqueue(&self, delivery: NewDelivery) -> Result<i64, QueueError> {
        let wake = self
            .pool
            .waker(&delivery.destination)
            .ok_or_else(|| QueueError::UnknownDestination(delivery.destination.clone()))?;
        let id = self.queue.enqueue(delivery).await?;
        wake.notify_one();
        Ok(id)
    }

    pub async fn list(&self, filter: DeliveryFilter) -> Result<Vec<DeliveryRecord>, QueueError> {
        self.queue.list(filter).await
    }

    pub async fn get(&self, id: i64) -> Result<Option<DeliveryRecord>, QueueError> {
        self.queue.get(id).await
    }

    pub async fn counts(&self) -> Result<Vec<(String, DeliveryState, u64)>, QueueError> {
        self.queue.counts().await
    }

    /// Requeues a dead-lettered delivery (audited with `actor`) and wakes
    /// its destination's worker.
    pub async fn retry_dead(&self, id: i64, actor: &str) -> Result<DeliveryRecord, QueueError> {
        let record = self.queue.retry_dead(id, actor).await?;
        if let Some(wake) = self.pool.waker(&record.destination) {
            wake.notify_one();
        }
        Ok(record)
    }

    /// The destinations in force, by name.
    pub fn destinations(&self) -> Vec<Destination> {
        self.pool.destinations()
    }

    /// The names of the destinations in force, for route checks.
    pub fn destination_names(&self) -> Vec<String> {
        self.pool
            .destinations()
            .into_iter()
            .map(|d| d.name)
            .collect()
    }

    /// Puts exactly `destinations` in force (a configuration reload) and
    /// says what changed. Rows queued for a removed destination stay in
    /// the queue, unsent, until it is configured again.
    pub fn apply_destinations(&self, destinations: Vec<Destination>) -> DestinationChanges {
        self.pool.apply(destinations)
    }

    /// Pending deliveries of each of `destinations` that has any.
    pub async fn pending_deliveries(
        &self,
        destinations: &[String],
    ) -> Result<std::collections::BTreeMap<String, u64>, QueueError> {
        self.pool.pending(destinations).await
    }
}

pub(super) struct DestinationWorker {
    pub queue: DeliveryQueue,
    pub destination: Destination,
    pub calling_ae: String,
    pub policy: RetryPolicy,
    pub data_dir: PathBuf,
    pub metrics: EgressMetrics,
}

impl DestinationWorker {
    /// Delivers until `stop` (shutdown: an association in flight is
    /// dropped) or `retire` (a reload removed or changed the destination:
    /// the batch in flight finishes first).
    pub async fn run(
        self,
        wake: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
        mut retire: watch::Receiver<bool>,
    ) {
        loop {
            if *stop.borrow() || *retire.borrow() {
                return;
            }
            tokio::select! {
                _ = self.deliver_due(&retire) => {}
                _ = stop.changed() => return,
            }
            self.refresh_depth().await;
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = stop.changed() => return,
                changed = retire.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Sends batches until nothing is due or the task is retired.
    async fn deliver_due(&self, retire: &watch::Receiver<bool>) {
        loop {
            if *retire.borrow() {
                return;
            }
            let due = match self
                .queue
                .due_for(&self.destination.name, SystemTime::now(), BATCH)
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(destination = %self.destination.name, error = %e, "cannot read the delivery queue");
                    return;
                }
            };
            if due.is_empty() {
                return;
            }
            if let Err(e) = self.deliver_batch(due).await {
                tracing::warn!(destination = %self.destination.name, error = %e, "cannot record a delivery outcome");
                return;
            }
        }
    }

    /// One association for the batch. An association-level failure counts
    /// as a failed attempt for every instance; a failure that leaves the
    /// association out of step ends the batch, and the untried rows, still
    /// due, go out in a new association on the next pass.
    async fn deliver_batch(&self, due: Vec<DeliveryRecord>) -> Result<(), QueueError> {
        let mut ready = Vec::with_capacity(due.len());
        for record in due {
            match self.prepare(&record).await {
                Ok(instance) => ready.push((record, instance)),
                Err(e) => self.record(&record, Err(e), Duration::ZERO).await?,
            }
        }
        if ready.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let instances: Vec<&PreparedInstance> = ready.iter().map(|(_, i)| i).collect();
        let mut association =
            match ForwardAssociation::establish(&self.destination, &self.calling_ae, &instances)
                .await
            {
                Ok(association) => association,
                Err(e) => {
                    let elapsed = started.elapsed();
                    for (record, _) in &ready {
                        let copy = association_error_copy(&e);
                        self.record(record, Err(copy), elapsed).await?;
                    }
                    return Ok(());
                }
            };
        let mut first = true;
        for (record, instance) in &ready {
            let attempt_started = if first { started } else { Instant::now() };
            first = false;
            let result = association.store(instance).await;
            self.record(record, result, attempt_started.elapsed())
                .await?;
            if !association.is_usable() {
                break;
            }
        }
        association.close().await;
        Ok(())
    }

    async fn prepare(&self, record: &DeliveryRecord) -> Result<PreparedInstance, ForwardError> {
        let path = self.data_dir.join(&record.path);
        let instance = PreparedInstance::open(&path).await?;
        if instance.sop_instance_uid != record.sop_instance_uid {
            tracing::debug!(
                queued = %record.sop_instance_uid,
                in_file = %instance.sop_instance_uid,
                "file holds another SOP instance"
            );
            return Err(ForwardError::NotDicom {
                path,
                detail: "the file holds a different SOP instance than the delivery names".into(),
            });
        }
        Ok(instance)
    }

    /// Turns one attempt's result into a queue state, a metric and a log line.
    async fn record(
        &self,
        record: &DeliveryRecord,
        result: Result<u16, ForwardError>,
        elapsed: Duration,
    ) -> Result<(), QueueError> {
        let name = self.destination.name.as_str();
        if !elapsed.is_zero() {
            self.metrics
                .attempt_seconds
                .with_label_values(&[name])
                .observe(elapsed.as_secs_f64());
        }
        let outcome = match result {
            Ok(status) => {
                self.queue.mark_delivered(record.id, status).await?;
                tracing::info!(
                    destination = name,
                    delivery = record.id,
                    status = format!("{status:#06x}"),
                    "delivered"
                );
                "delivered"
            }
            Err(e) => {
                let attempts = record.attempts.saturating_add(1);
                let give_up = e.disposition() == Disposition::DeadLetter
                    || attempts >= self.policy.max_attempts;
                let error = e.to_string();
                if give_up {
                    let why = if e.disposition() == Disposition::DeadLetter {
                        error
                    } else {
                        format!("gave up after {attempts} attempts: {error}")
                    };
                    self.queue.mark_dead(record.id, e.status(), &why).await?;
                    tracing::warn!(destination = name, delivery = record.id, error = %why, "delivery dead-lettered");
                    "dead"
                } else {
                    let backoff = self.policy.backoff(attempts);
                    self.queue
                        .mark_retry(record.id, SystemTime::now() + backoff, e.status(), &error)
                        .await?;
                    tracing::info!(destination = name, delivery = record.id, attempts, retry_in = ?backoff, error = %error, "delivery failed, will retry");
                    "retry"
                }
            }
        };
        tracing::debug!(delivery = record.id, sop_instance_uid = %record.sop_instance_uid, outcome, "delivery attempt");
        self.metrics
            .deliveries
            .with_label_values(&[name, outcome])
            .inc();
        Ok(())
    }

    async fn refresh_depth(&self) {
        match self.queue.counts().await {
            Ok(counts) => self.metrics.set_depth(&self.destination.name, &counts),
            Err(e) => tracing::debug!(error = %e, "cannot count the delivery queue"),
        }
    }
}

/// An association failure applies to each instance of the batch; the
/// error is not `Clone` (it holds an `io::Error`), so rebuild what matters.
fn association_error_copy(e: &ForwardError) -> ForwardError {
    match e {
        ForwardError::Timeout { operation, after } => ForwardError::Timeout {
            operation,
            after: *after,
        },
        ForwardError::Rejected { result, reason } => ForwardError::Rejected {
            result: result.clone(),
            reason: reason.clone(),
        },
        ForwardError::NoPresentationContext {
            sop_class_uid,
            transfer_syntax_uid,
        } => ForwardError::NoPresentationContext {
            sop_class_uid: sop_class_uid.clone(),
            transfer_syntax_uid: transfer_syntax_uid.clone(),
        },
        ForwardError::InvalidOption(text) => ForwardError::InvalidOption(text.clone()),
        ForwardError::Connect { source } => ForwardError::Connect {
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        ForwardError::Io { operation, source } => ForwardError::Io {
            operation,
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        ForwardError::Aborted { detail } => ForwardError::Aborted {
            detail: detail.clone(),
        },
        other if other.disposition() == Disposition::DeadLetter => {
            ForwardError::InvalidOption(other.to_string())
        }
        other => ForwardError::Protocol {
            detail: other.to_string(),
        },
    }
}
