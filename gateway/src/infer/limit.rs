//! Per-model admission: a fixed number of requests run, a fixed number wait,
//! the rest are refused at once with a retryable [`EngineError::Overloaded`].
//!
//! Two semaphores: `admitted` (running + waiting places) is taken with
//! `try_acquire`, so the wait queue can never grow past `max_queued`;
//! `running` is then awaited. CPU engines run the model on tokio's blocking
//! pool, never on the async workers; both permits move into the blocking
//! task, so a caller that gives up (a dropped future) cannot free a slot
//! while its model is still computing.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::EngineError;

/// How many requests may run and wait at once, per loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    pub max_concurrent: NonZeroUsize,
    pub max_queued: usize,
}

impl Default for EngineLimits {
    /// One run at a time (tract uses one core per run) and a short queue.
    fn default() -> Self {
        EngineLimits {
            max_concurrent: NonZeroUsize::MIN,
            max_queued: 16,
        }
    }
}

/// A snapshot for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    pub in_flight: usize,
    pub waiting: usize,
    /// The most requests ever running at once.
    pub peak_in_flight: usize,
    pub completed: u64,
    /// Refused because every running and waiting place was taken.
    pub rejected: u64,
}

/// The bounded execution gate one engine instance owns.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    limits: EngineLimits,
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    completed: AtomicU64,
    rejected: AtomicU64,
}

/// Both permits and the in-flight count, released together on drop.
struct Slot {
    _admitted: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
    counters: Arc<Counters>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.counters.completed.fetch_add(1, Ordering::Relaxed);
    }
}

impl ConcurrencyLimit {
    pub fn new(limits: EngineLimits) -> Self {
        let running = limits.max_concurrent.get();
        ConcurrencyLimit {
            limits,
            admitted: Arc::new(Semaphore::new(running.saturating_add(limits.max_queued))),
            running: Arc::new(Semaphore::new(running)),
            counters: Arc::default(),
        }
    }

    pub fn limits(&self) -> EngineLimits {
        self.limits
    }

    /// Runs CPU-bound `work` on the blocking pool once a slot is free.
    pub async fn run_blocking<T, F>(&self, work: F) -> Result<T, EngineError>
    where
        F: FnOnce() -> Result<T, EngineError> + Send + 'static,
        T: Send + 'static,
    {
        let slot = self.enter().await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .map_err(|e| EngineError::Internal(format!("blocking inference task: {e}")))?
    }

    /// Runs async `work` (a remote engine's request) once a slot is free.
    pub async fn run<T>(
        &self,
        work: impl Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        let _slot = self.enter().await?;
        work.await
    }

    pub fn stats(&self) -> EngineStats {
        let in_flight = self.counters.in_flight.load(Ordering::Acquire);
        let total = self
            .limits
            .max_concurrent
            .get()
            .saturating_add(self.limits.max_queued);
        let admitted = total.saturating_sub(self.admitted.available_permits());
        EngineStats {
            in_flight,
            waiting: admitted.saturating_sub(in_flight),
            peak_in_flight: self.counters.peak_in_flight.load(Ordering::Acquire),
            completed: self.counters.completed.load(Ordering::Relaxed),
            rejected: self.counters.rejected.load(Ordering::Relaxed),
        }
    }

    async fn enter(&self) -> Result<Slot, EngineError> {
        let admitted = match Arc::clone(&self.admitted).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(EngineError::Overloaded {
                    running: self.limits.max_concurrent.get(),
                    queued: self.limits.max_queued,
                });
            }
        };
        let running = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| EngineError::Internal("execution gate closed".into()))?;
        let now = self.counters.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.counters
            .peak_in_flight
            .fetch_max(now, Ordering::AcqRel);
        Ok(Slot {
            _admitted: admitted,
            _running: running,
            counters: Arc::clone(&self.counters),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn limits(max_concurrent: usize, max_queued: usize) -> EngineLimits {
        EngineLimits {
            max_concurrent: NonZeroUsize::new(max_concurrent).unwrap(),
            max_queued,
        }
    }

    /// Waits until `stats` satisfies `ready` (the blocking pool starts tasks
    /// asynchronously), failing after a few seconds.
    async fn wait_for(limit: &ConcurrencyLimit, ready: impl Fn(EngineStats) -> bool) {
        for _ in 0..500 {
            if ready(limit.stats()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never reached the expected state: {:?}", limit.stats());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_at_most_max_concurrent_queues_max_queued_and_refuses_the_rest() {
        let limit = Arc::new(ConcurrencyLimit::new(limits(2, 3)));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let limit = Arc::clone(&limit);
            let release_rx = Arc::clone(&release_rx);
            tasks.push(tokio::spawn(async move {
                limit
                    .run_blocking(move || {
                        // Hold the slot until the test releases one.
                        let _ = release_rx.lock().unwrap().recv();
                        Ok(())
                    })
                    .await
            }));
        }
        wait_for(&limit, |s| s.in_flight == 2 && s.waiting == 3).await;

        // Running 2, waiting 3: the sixth is refused at once, retryably.
        let refused = limit.run_blocking(|| Ok(())).await.unwrap_err();
        assert!(matches!(
            refused,
            EngineError::Overloaded {
                running: 2,
                queued: 3
            }
        ));
        assert!(refused.is_retryable());
        assert_eq!(limit.stats().rejected, 1);

        for _ in 0..5 {
            release_tx.send(()).unwrap();
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let stats = limit.stats();
        assert_eq!(stats.peak_in_flight, 2);
        assert_eq!((stats.in_flight, stats.waiting, stats.completed), (0, 0, 5));
    }

    #[tokio::test]
    async fn a_dropped_caller_keeps_its_slot_until_the_work_ends() {
        let limit = ConcurrencyLimit::new(limits(1, 0));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let call = limit.run_blocking(move || {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
            Ok(())
        });
        tokio::select! {
            _ = call => panic!("work finished before it was released"),
            _ = started_rx => {}
        }
        // The caller is gone but the model is still computing.
        assert_eq!(limit.stats().in_flight, 1);
        assert!(matches!(
            limit.run_blocking(|| Ok(())).await,
            Err(EngineError::Overloaded { .. })
        ));
        release_tx.send(()).unwrap();
        wait_for(&limit, |s| s.in_flight == 0).await;
        limit.run_blocking(|| Ok(())).await.unwrap();
    }

    #[tokio::test]
    async fn a_panic_in_the_work_is_an_internal_error_and_frees_the_slot() {
        let limit = ConcurrencyLimit::new(limits(1, 0));
        let err = limit
            .run_blocking(|| -> Result<(), EngineError> { panic!("model exploded") })
            .await
            .unwrap_err();
        assert_eq!(err.fault(), super::super::Fault::Internal);
        limit.run_blocking(|| Ok(())).await.unwrap();
    }
}
