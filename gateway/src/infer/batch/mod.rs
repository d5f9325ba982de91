//! Dynamic batching, shared by every engine kind: single requests for a
//! model with a dynamic batch axis are stacked on axis 0 into one call, up
//! to `max_batch_size` requests or until the first has waited
//! `max_queue_delay`, and the outputs are split back to their callers.
//!
//! One gathering task per model takes a free execution slot (the engine's
//! `max_concurrent`) before it gathers, so while every slot is busy
//! requests pile up and the next batch leaves full: batches grow with load
//! and a lone request waits at most the delay. The wait queue is bounded
//! (`max_queued`); the excess is refused at once with a retryable
//! `Overloaded`. Each request's tensors are checked before it queues, so a
//! bad image fails alone; a failed call fails every request in its batch.

mod config;
#[cfg(test)]
mod tests;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

pub use config::{BatchOverride, BatchPolicy, BatchingConfig};

use super::InferenceEngine;
use super::error::EngineError;
use super::limit::EngineStats;
use super::tensor::{Tensors, check_inputs};
use crate::models::TensorSpec;

/// An engine that batches the requests of one model (see the module docs).
pub struct BatchingEngine {
    inner: Arc<dyn InferenceEngine>,
    queue: mpsc::Sender<Pending>,
    policy: BatchPolicy,
    concurrency: usize,
    counters: Arc<Counters>,
}

/// Counts for metrics, tests and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchStats {
    /// Calls made to the wrapped engine.
    pub batches: u64,
    /// Requests those calls carried.
    pub requests: u64,
    /// The largest batch so far.
    pub largest: usize,
}

struct Pending {
    inputs: Tensors,
    queued_at: Instant,
    reply: oneshot::Sender<Result<Tensors, EngineError>>,
}

#[derive(Debug, Default)]
struct Counters {
    waiting: AtomicUsize,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    completed: AtomicU64,
    rejected: AtomicU64,
    batches: AtomicU64,
    largest: AtomicUsize,
}

impl BatchingEngine {
    /// Wraps `inner`, which must take a dynamic batch on axis 0 and allow
    /// `concurrency` calls at once. Spawns the gathering task, so it must
    /// run inside a tokio runtime; the task ends when the engine is dropped.
    pub fn new(
        inner: Arc<dyn InferenceEngine>,
        policy: BatchPolicy,
        concurrency: NonZeroUsize,
    ) -> BatchingEngine {
        let (queue, receiver) = mpsc::channel(policy.max_queued.max(1));
        let counters = Arc::new(Counters::default());
        let slots = Arc::new(Semaphore::new(concurrency.get()));
        tokio::spawn(gather(
            receiver,
            Arc::clone(&inner),
            policy,
            slots,
            Arc::clone(&counters),
        ));
        BatchingEngine {
            inner,
            queue,
            policy,
            concurrency: concurrency.get(),
            counters,
        }
    }

    pub fn policy(&self) -> BatchPolicy {
        self.policy
    }

    pub fn batch_stats(&self) -> BatchStats {
        BatchStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            requests: self.counters.completed.load(Ordering::Relaxed),
            largest: self.counters.largest.load(Ordering::Relaxed),
        }
    }
}

impl InferenceEngine for BatchingEngine {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn inputs(&self) -> &[TensorSpec] {
        self.inner.inputs()
    }

    fn outputs(&self) -> &[TensorSpec] {
        self.inner.outputs()
    }

    fn infer(&self, inputs: Tensors) -> BoxFuture<'_, Result<Tensors, EngineError>> {
        Box::pin(async move {
            // One request, one image: its own shape, checked before it can
            // share a batch with others.
            check_inputs(self.inner.inputs(), &inputs)?;
            let (reply, answer) = oneshot::channel();
            let pending = Pending {
                inputs,
                queued_at: Instant::now(),
                reply,
            };
            self.counters.waiting.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = self.queue.try_send(pending) {
                self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
                return Err(match e {
                    mpsc::error::TrySendError::Full(_) => {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        EngineError::Overloaded {
                            running: self.concurrency,
                            queued: self.policy.max_queued,
                        }
                    }
                    mpsc::error::TrySendError::Closed(_) => {
                        EngineError::Internal("the batching task has stopped".into())
                    }
                });
            }
            answer
                .await
                .map_err(|_| EngineError::Internal("the batching task dropped a request".into()))?
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        self.inner.health()
    }

    /// Requests, not calls: `in_flight` counts the requests in running
    /// batches, `waiting` those queued or being gathered.
    fn stats(&self) -> EngineStats {
        EngineStats {
            in_flight: self.counters.in_flight.load(Ordering::Acquire),
            waiting: self.counters.waiting.load(Ordering::Acquire),
            peak_in_flight: self.counters.peak_in_flight.load(Ordering::Acquire),
            completed: self.counters.completed.load(Ordering::Relaxed),
            rejected: self.counters.rejected.load(Ordering::Relaxed),
        }
    }
}

/// The gathering loop: a free slot, then the first request, then more
/// until the batch is full or the first request's delay is over.
async fn gather(
    mut queue: mpsc::Receiver<Pending>,
    inner: Arc<dyn InferenceEngine>,
    policy: BatchPolicy,
    slots: Arc<Semaphore>,
    counters: Arc<Counters>,
) {
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let deadline = first.queued_at + policy.max_queue_delay;
        let mut batch = vec![first];
        while batch.len() < policy.max_batch_size {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(pending)) => batch.push(pending),
                Ok(None) | Err(_) => break,
            }
        }
        counters.waiting.fetch_sub(batch.len(), Ordering::AcqRel);
        // Callers that gave up while waiting are not computed for.
        batch.retain(|pending| !pending.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        tokio::spawn(run_batch(
            Arc::clone(&inner),
            batch,
            slot,
            Arc::clone(&counters),
        ));
    }
}

async fn run_batch(
    inner: Arc<dyn InferenceEngine>,
    batch: Vec<Pending>,
    _slot: OwnedSemaphorePermit,
    counters: Arc<Counters>,
) {
    let size = batch.len();
    let now = counters.in_flight.fetch_add(size, Ordering::AcqRel) + size;
    counters.peak_in_flight.fetch_max(now, Ordering::AcqRel);
    counters.batches.fetch_add(1, Ordering::Relaxed);
    counters.largest.fetch_max(size, Ordering::Relaxed);

    let (inputs, replies): (Vec<Tensors>, Vec<_>) =
        batch.into_iter().map(|p| (p.inputs, p.reply)).unzip();
    let span = tracing::debug_span!("batch", engine = inner.kind(), size);
    let result = async {
        let stacked = stack(inner.inputs(), inputs)?;
        let outputs = inner.infer(stacked).await?;
        split(inner.outputs(), outputs, size)
    }
    .instrument(span)
    .await;

    counters.in_flight.fetch_sub(size, Ordering::AcqRel);
    counters.completed.fetch_add(size as u64, Ordering::Relaxed);
    match result {
        Ok(per_request) => {
            for (reply, outputs) in replies.into_iter().zip(per_request) {
                let _ = reply.send(Ok(outputs));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// One tensor per input name, the requests stacked on axis 0 in order.
fn stack(specs: &[TensorSpec], mut requests: Vec<Tensors>) -> Result<Tensors, EngineError> {
    if requests.len() == 1 {
        return Ok(requests.pop().unwrap_or_default());
    }
    let mut stacked = Tensors::new();
    for spec in specs {
        let views = requests
            .iter()
            .map(|r| r.get(&spec.name).map(|t| t.view()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                EngineError::Internal(format!("checked input `{}` vanished", spec.name))
            })?;
        let tensor = ndarray::concatenate(ndarray::Axis(0), &views)
            .map_err(|e| EngineError::Internal(format!("stacking `{}`: {e}", spec.name)))?;
        stacked.insert(spec.name.clone(), tensor);
    }
    Ok(stacked)
}

/// The batched outputs cut back into one [`Tensors`] per request, each
/// shaped like one request's output (1 on axis 0).
fn split(
    specs: &[TensorSpec],
    mut outputs: Tensors,
    size: usize,
) -> Result<Vec<Tensors>, EngineError> {
    let mut per_request = vec![Tensors::new(); size];
    for spec in specs {
        let tensor = outputs.remove(&spec.name).ok_or_else(|| {
            EngineError::ManifestMismatch(format!("the model returned no output `{}`", spec.name))
        })?;
        if tensor.shape().first() != Some(&size) {
            return Err(EngineError::ManifestMismatch(format!(
                "output `{}` has shape {:?} for a batch of {size}",
                spec.name,
                tensor.shape()
            )));
        }
        for (index, slot) in per_request.iter_mut().enumerate() {
            let one = tensor
                .slice_axis(ndarray::Axis(0), ndarray::Slice::from(index..index + 1))
                .to_owned();
            slot.insert(spec.name.clone(), one);
        }
    }
    Ok(per_request)
}
