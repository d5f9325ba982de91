//! Operator route state shared between replicas through Redis, so a flip,
//! pin or rollback made on one replica applies on all of them without a
//! restart. Sits beside [`RouteStateStore`]: each replica keeps its own
//! persisted copy, and this task keeps the copies equal.
//!
//! - Every local change is written to the hash `<prefix>:v1:route_state`
//!   (route → [`SharedChange`] JSON) and published on the channel
//!   `<prefix>:v1:route_state:changes`, both by one Lua script that refuses
//!   a change older than the stored one (last writer wins, per route, whole
//!   state, ordered by the change's stamp).
//! - Every replica subscribes on a dedicated connection and applies what
//!   others publish to its store ([`RouteStateStore::apply_synced`]: persisted,
//!   audited as `system:route-sync` with the origin replica and actor,
//!   published). It ignores its own messages (replica id).
//! - At start-up and after every reconnect it reconciles with the hash:
//!   local states later than the shared ones are pushed, shared ones later
//!   than the local ones are applied.
//!
//! **When Redis is unreachable** each replica keeps serving its last state,
//! and operator changes still apply, locally only. The task reconnects with
//! backoff (100 ms doubling to 5 s) and then reconciles: per route, the
//! later change wins, wherever it was made. So a change made while Redis
//! was down reaches every replica once it is back, unless another replica
//! changed the same route later; a Redis that lost its data is refilled from
//! the replicas. Stamps are wall-clock milliseconds of the replica that made
//! the change (never earlier than the state it replaced), so clocks should
//! be synchronised (NTP); skew only matters for changes to one route made
//! on two replicas within the skew.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::{RouteState, RouteStateChange, RouteStateStore};
use crate::cache::redis::{client, pool};
use crate::cache::{CacheError, RedisConfig, TroubleLog};

/// Version of [`SharedChange`]; replicas skip entries of another schema.
const SCHEMA: u32 = 1;
/// Shortest and longest wait before reconnecting.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// How often an idle subscription is checked with a PING.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Stores `ARGV[2]` at `KEYS[1][ARGV[1]]` and publishes it on `ARGV[4]`,
/// unless the stored change has a stamp at or after `ARGV[3]`. Returns 1
/// when stored, 0 when refused. Atomic, so two replicas pushing at once
/// cannot both win.
const PUSH_SCRIPT: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' then
    local stamp = tonumber(decoded['changed_at_ms'])
    if stamp ~= nil and stamp >= tonumber(ARGV[3]) then return 0 end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return 1
"#;

/// One route's state as shared in Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedChange {
    pub schema: u32,
    pub changed_at_ms: i64,
    pub route: String,
    pub state: RouteState,
    /// The replica where the change was made.
    pub replica: String,
    pub actor: String,
    pub action: String,
}

/// Whether the sync is connected, and how many reconciles it completed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStatus {
    pub connected: bool,
    pub reconciles: u64,
}

/// The running sync task. Dropping it stops the task.
pub struct RouteStateSync {
    replica_id: String,
    status: watch::Receiver<SyncStatus>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RouteStateSync {
    /// Starts sharing `store`'s state through `config`'s Redis. Fails only
    /// on settings that cannot work (unreadable CA file, missing password
    /// variable); an unreachable Redis is retried in the background.
    /// Call it inside the Tokio runtime (it spawns the task), once per
    /// store and registry.
    pub fn start(
        store: Arc<RouteStateStore>,
        config: &RedisConfig,
        registry: &Registry,
    ) -> Result<RouteStateSync, CacheError> {
        let replica_id = config.replica_id.clone().unwrap_or_else(default_replica_id);
        let prefix = &config.key_prefix;
        let (status_tx, status) = watch::channel(SyncStatus::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = SyncTask {
            changes: store.subscribe(),
            store,
            client: client(config)?,
            pool: pool(config, 2)?,
            timeout: config.timeout,
            replica_id: replica_id.clone(),
            hash_key: format!("{prefix}:v1:route_state"),
            channel: format!("{prefix}:v1:route_state:changes"),
            metrics: SyncMetrics::register(registry)?,
            log: TroubleLog::new(
                "route-sync",
                "shared route state unavailable: this replica keeps its last state",
                crate::cache::DEFAULT_WARN_INTERVAL,
            ),
            skipped_log: TroubleLog::new(
                "route-sync",
                "shared route state entry skipped: not one this version can read",
                crate::cache::DEFAULT_WARN_INTERVAL,
            ),
            last_local: HashMap::new(),
            status: status_tx,
        };
        let task = tokio::spawn(task.run(stop_rx));
        Ok(RouteStateSync {
            replica_id,
            status,
            stop,
            task: Some(task),
        })
    }

    /// This replica's id in shared entries and audit details.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    pub fn status(&self) -> SyncStatus {
        *self.status.borrow()
    }

    /// Waits until the sync is connected and has reconciled more than
    /// `reconciles` times, or `timeout` passes; returns the status then.
    pub async fn wait_reconciled(&self, reconciles: u64, timeout: Duration) -> SyncStatus {
        let mut status = self.status.clone();
        let reached = status.wait_for(|s| s.connected && s.reconciles > reconciles);
        let _ = tokio::time::timeout(timeout, reached).await;
        self.status()
    }

    /// Stops the task and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RouteStateSync {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The host name and a random suffix: unique per process.
fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".into());
    format!("{host}-{:08x}", rand::random::<u32>())
}

#[derive(Clone)]
struct SyncMetrics {
    /// Sync events by kind: pushed, refused, applied, unchanged, stale,
    /// invalid (an entry that cannot be read), error.
    events: IntCounterVec,
    connected: IntGauge,
}

impl SyncMetrics {
    fn register(registry: &Registry) -> Result<SyncMetrics, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "gateway_route_sync_events_total",
                "Shared route state events by kind (pushed, refused, applied, unchanged, stale, invalid, error)",
            ),
            &["event"],
        )?;
        let connected = IntGauge::new(
            "gateway_route_sync_connected",
            "1 while shared route state is connected to Redis",
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(connected.clone()))?;
        Ok(SyncMetrics { events, connected })
    }

    fn event(&self, event: &str) {
        self.events.with_label_values(&[event]).inc();
    }
}

struct SyncTask {
    store: Arc<RouteStateStore>,
    changes: broadcast::Receiver<RouteStateChange>,
    client: redis::Client,
    pool: crate::cache::redis::RedisPool,
    timeout: Duration,
    replica_id: String,
    hash_key: String,
    channel: String,
    metrics: SyncMetrics,
    log: TroubleLog,
    skipped_log: TroubleLog,
    /// The latest local change per route, so a state pushed at reconcile
    /// still names the operator who made it.
    last_local: HashMap<String, RouteStateChange>,
    status: watch::Sender<SyncStatus>,
}

/// Why the connected loop ended.
enum Ended {
    Stop,
    Disconnected(String),
}

mod connected;
