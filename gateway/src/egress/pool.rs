//! The destination tasks in force, changed in place by a configuration
//! reload: a new destination gets its task at once, a removed one stops
//! taking new deliveries, a changed one (address, AE title, timeouts)
//! finishes the batch it is sending and hands over to a task with the new
//! settings.
//!
//! Removing a destination never touches the queue: its pending rows stay
//! there, unsent, and are reported ([`DestinationChanges::pending_on_removed`])
//! so an operator can put the destination back or retire them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::metrics::EgressMetrics;
use super::worker::DestinationWorker;
use super::{DeliveryQueue, DeliveryState, Destination, QueueError, RetryPolicy};

/// What [`super::EgressHandle::apply_destinations`] changed (and, filled in
/// by the caller from [`super::EgressHandle::pending_deliveries`], what the
/// removed destinations leave in the queue).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DestinationChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Same name, other settings: the new ones serve the next batch.
    pub changed: Vec<String>,
    /// Deliveries still queued for each removed destination that has any:
    /// kept, not sent, until a destination of that name is configured
    /// again.
    pub pending_on_removed: BTreeMap<String, u64>,
}

impl DestinationChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Everything a destination task needs besides its destination.
pub(super) struct Spawner {
    pub queue: DeliveryQueue,
    pub policy: RetryPolicy,
    pub data_dir: PathBuf,
    pub gateway_ae: String,
    pub metrics: EgressMetrics,
    /// Set once at shutdown: every task stops.
    pub stop: watch::Receiver<bool>,
}

/// One destination's running task.
struct Slot {
    destination: Destination,
    wake: Arc<Notify>,
    /// `true`: finish the current batch, then end.
    retire: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Slots {
    by_name: HashMap<String, Slot>,
    /// Tasks of removed destinations, still finishing their last batch.
    retiring: Vec<JoinHandle<()>>,
}

pub(super) struct WorkerPool {
    spawner: Spawner,
    slots: Mutex<Slots>,
}

impl WorkerPool {
    pub fn start(spawner: Spawner, destinations: Vec<Destination>) -> Self {
        let pool = Self {
            spawner,
            slots: Mutex::new(Slots::default()),
        };
        let mut slots = pool.lock();
        for destination in destinations {
            let slot = pool.spawn(destination, None);
            slots.by_name.insert(slot.destination.name.clone(), slot);
        }
        drop(slots);
        pool
    }

    /// The waker of `name`'s task, if that destination is configured.
    pub fn waker(&self, name: &str) -> Option<Arc<Notify>> {
        self.lock().by_name.get(name).map(|s| Arc::clone(&s.wake))
    }

    pub fn destinations(&self) -> Vec<Destination> {
        let mut out: Vec<Destination> = self
            .lock()
            .by_name
            .values()
            .map(|s| s.destination.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Puts exactly `destinations` in force.
    pub fn apply(&self, destinations: Vec<Destination>) -> DestinationChanges {
        let mut changes = DestinationChanges::default();
        {
            let mut slots = self.lock();
            slots.retiring.retain(|task| !task.is_finished());
            let wanted: HashMap<String, Destination> = destinations
                .into_iter()
                .map(|d| (d.name.clone(), d))
                .collect();
            let gone: Vec<String> = slots
                .by_name
                .keys()
                .filter(|name| !wanted.contains_key(*name))
                .cloned()
                .collect();
            for name in gone {
                if let Some(slot) = slots.by_name.remove(&name) {
                    let _ = slot.retire.send(true);
                    slots.retiring.push(slot.task);
                    changes.removed.push(name);
                }
            }
            for (name, destination) in wanted {
                match slots.by_name.remove(&name) {
                    Some(slot) if slot.destination == destination => {
                        slots.by_name.insert(name, slot);
                    }
                    Some(slot) => {
                        // The new task starts once the old one has finished
                        // its batch, so no row is sent by both.
                        let _ = slot.retire.send(true);
                        let next = self.spawn(destination, Some(slot.task));
                        slots.by_name.insert(name.clone(), next);
                        changes.changed.push(name);
                    }
                    None => {
                        let next = self.spawn(destination, None);
                        slots.by_name.insert(name.clone(), next);
                        changes.added.push(name);
                    }
                }
            }
        }
        changes.added.sort();
        changes.removed.sort();
        changes.changed.sort();
        changes
    }

    /// Pending deliveries of each of `names` that has any.
    pub async fn pending(&self, names: &[String]) -> Result<BTreeMap<String, u64>, QueueError> {
        let mut pending = BTreeMap::new();
        for (name, state, n) in self.spawner.queue.counts().await? {
            if state == DeliveryState::Pending && n > 0 && names.contains(&name) {
                pending.insert(name, n);
            }
        }
        Ok(pending)
    }

    /// Every task, current and retiring, for the shutdown to wait on.
    pub fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        let mut slots = self.lock();
        let mut tasks: Vec<JoinHandle<()>> = std::mem::take(&mut slots.retiring);
        tasks.extend(slots.by_name.drain().map(|(_, slot)| slot.task));
        tasks
    }

    fn spawn(&self, destination: Destination, predecessor: Option<JoinHandle<()>>) -> Slot {
        let s = &self.spawner;
        let wake = Arc::new(Notify::new());
        let (retire, retired) = watch::channel(false);
        let worker = DestinationWorker {
            queue: s.queue.clone(),
            calling_ae: destination.calling_ae(&s.gateway_ae).to_string(),
            destination: destination.clone(),
            policy: s.policy,
            data_dir: s.data_dir.clone(),
            metrics: s.metrics.clone(),
        };
        let stop = s.stop.clone();
        let woken = Arc::clone(&wake);
        let task = tokio::spawn(async move {
            if let Some(previous) = predecessor {
                let _ = previous.await;
            }
            worker.run(woken, stop, retired).await;
        });
        Slot {
            destination,
            wake,
            retire,
            task,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
