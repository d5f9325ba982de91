//! The sync task's loop: connect, subscribe, reconcile, then push local
//! changes and apply others' until the connection drops; back off and
//! start again.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::{BACKOFF, Ended, HEARTBEAT, PUSH_SCRIPT, SCHEMA, SharedChange, SyncTask};
use crate::route::{ChangeOrigin, RouteStateChange, StampedState, SyncedChange};

/// Actor and action of a state pushed at reconcile whose operator this
/// process does not know (made before a restart).
const UNKNOWN_ACTOR: &str = "system:route-sync";
const RECONCILE_ACTION: &str = "route.reconcile";

impl SyncTask {
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = BACKOFF.0;
        loop {
            match self.connected(&mut stop).await {
                Ended::Stop => return,
                Ended::Disconnected(why) => {
                    self.set_connected(false);
                    self.log.trouble("sync", "unavailable", &why);
                }
            }
            // Local changes keep applying while disconnected; remember who
            // made them for the reconcile.
            let sleep = tokio::time::sleep(backoff);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = stop.changed() => return,
                    change = self.changes.recv() => match change {
                        Ok(change) => self.remember(change),
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return,
                    },
                }
            }
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// One connection's life. Returns when it drops or on stop.
    async fn connected(&mut self, stop: &mut watch::Receiver<bool>) -> Ended {
        let pubsub = match tokio::time::timeout(
            self.timeout.max(Duration::from_secs(1)),
            self.client.get_async_pubsub(),
        )
        .await
        {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => return Ended::Disconnected(e.to_string()),
            Err(_) => return Ended::Disconnected("connect timed out".into()),
        };
        let (mut sink, mut messages) = pubsub.split();
        if let Err(e) = sink.subscribe(&self.channel).await {
            return Ended::Disconnected(e.to_string());
        }
        // Subscribed first, reconciled second: a change published meanwhile
        // is in `messages` and applies after (stamps keep it idempotent).
        if let Err(why) = self.reconcile().await {
            return Ended::Disconnected(why);
        }
        self.log.healthy();
        self.set_connected(true);
        tracing::info!(replica = %self.replica_id, "shared route state connected");
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.reset();
        loop {
            tokio::select! {
                _ = stop.changed() => return Ended::Stop,
                change = self.changes.recv() => match change {
                    Ok(change) if change.origin == ChangeOrigin::Local => {
                        self.remember(change.clone());
                        if let Err(why) = self.push(&change).await {
                            // Reconnecting reconciles, which pushes it.
                            return Ended::Disconnected(why);
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        if let Err(why) = self.reconcile().await {
                            return Ended::Disconnected(why);
                        }
                    }
                    Err(RecvError::Closed) => return Ended::Stop,
                },
                message = messages.next() => match message {
                    Some(message) => self.receive(message.get_payload_bytes()).await,
                    None => return Ended::Disconnected("subscription closed".into()),
                },
                _ = heartbeat.tick() => {
                    let ping = sink.ping::<redis::Value>();
                    match tokio::time::timeout(self.timeout.max(Duration::from_secs(1)), ping).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Ended::Disconnected(e.to_string()),
                        Err(_) => return Ended::Disconnected("ping timed out".into()),
                    }
                }
            }
        }
    }

    fn remember(&mut self, change: RouteStateChange) {
        if change.origin == ChangeOrigin::Local {
            self.last_local.insert(change.route.clone(), change);
        }
    }

    fn set_connected(&self, connected: bool) {
        self.metrics.connected.set(i64::from(connected));
        self.status.send_modify(|s| {
            s.connected = connected;
            if connected {
                s.reconciles += 1;
            }
        });
    }

    /// Pushes local states later than the shared ones, then applies shared
    /// ones later than the local ones.
    async fn reconcile(&mut self) -> Result<(), String> {
        let mut shared = self.read_shared().await?;
        let store = std::sync::Arc::clone(&self.store);
        let local = tokio::task::spawn_blocking(move || store.stamped_states())
            .await
            .map_err(|e| format!("reconcile task: {e}"))?
            .map_err(|e| format!("cannot read local route state: {e}"))?;
        for StampedState {
            route,
            state,
            changed_at_ms,
        } in local
        {
            if shared
                .get(&route)
                .is_some_and(|s| s.changed_at_ms >= changed_at_ms)
            {
                continue;
            }
            let (actor, action) = match self.last_local.get(&route) {
                Some(c) if c.changed_at_ms == changed_at_ms => (c.actor.clone(), c.action.clone()),
                _ => (UNKNOWN_ACTOR.to_string(), RECONCILE_ACTION.to_string()),
            };
            let change = RouteStateChange {
                route: route.clone(),
                state,
                actor,
                action,
                changed_at_ms,
                origin: ChangeOrigin::Local,
            };
            if self.push(&change).await? {
                shared.remove(&route);
            }
        }
        for change in shared.into_values() {
            self.apply(change).await;
        }
        Ok(())
    }

    /// Every entry of the shared hash that this build can read.
    async fn read_shared(&self) -> Result<HashMap<String, SharedChange>, String> {
        let entries: HashMap<String, Vec<u8>> = self
            .command(redis::cmd("HGETALL").arg(&self.hash_key))
            .await?;
        let mut shared = HashMap::with_capacity(entries.len());
        for (route, bytes) in entries {
            match self.parse(&bytes) {
                Some(change) if change.route == route => {
                    shared.insert(route, change);
                }
                _ => {}
            }
        }
        Ok(shared)
    }

    /// Stores and publishes a local change unless the shared one is later;
    /// then adopts the shared one. Returns whether it was stored.
    async fn push(&mut self, change: &RouteStateChange) -> Result<bool, String> {
        let shared = SharedChange {
            schema: SCHEMA,
            changed_at_ms: change.changed_at_ms,
            route: change.route.clone(),
            state: change.state.clone(),
            replica: self.replica_id.clone(),
            actor: change.actor.clone(),
            action: change.action.clone(),
        };
        let json = serde_json::to_string(&shared).map_err(|e| e.to_string())?;
        let stored: i64 = self
            .command(
                redis::cmd("EVAL")
                    .arg(PUSH_SCRIPT)
                    .arg(1)
                    .arg(&self.hash_key)
                    .arg(&change.route)
                    .arg(&json)
                    .arg(change.changed_at_ms)
                    .arg(&self.channel),
            )
            .await?;
        if stored == 1 {
            self.metrics.event("pushed");
            return Ok(true);
        }
        // A later change to this route was made elsewhere: it wins here too.
        self.metrics.event("refused");
        let current: Option<Vec<u8>> = self
            .command(redis::cmd("HGET").arg(&self.hash_key).arg(&change.route))
            .await?;
        if let Some(later) = current.as_deref().and_then(|b| self.parse(b)) {
            tracing::warn!(route = %change.route, "a later change to this route made on another replica replaces the one made here");
            self.apply(later).await;
        }
        Ok(false)
    }

    /// A message from the channel.
    async fn receive(&mut self, payload: &[u8]) {
        if let Some(change) = self.parse(payload)
            && change.replica != self.replica_id
        {
            self.apply(change).await;
        }
    }

    /// Applies a shared change to the local store (later wins).
    async fn apply(&self, change: SharedChange) {
        let store = std::sync::Arc::clone(&self.store);
        let outcome = tokio::task::spawn_blocking(move || {
            store.apply_synced(SyncedChange {
                route: &change.route,
                state: &change.state,
                changed_at_ms: change.changed_at_ms,
                origin_replica: &change.replica,
                origin_actor: &change.actor,
                origin_action: &change.action,
            })
        })
        .await;
        match outcome {
            Ok(Ok(outcome)) => self.metrics.event(outcome.as_str()),
            Ok(Err(e)) => {
                self.metrics.event("error");
                tracing::error!(error = %e, "cannot apply a shared route state change");
            }
            Err(e) => {
                self.metrics.event("error");
                tracing::error!(error = %e, "route state apply task failed");
            }
        }
    }

    /// A shared entry, or `None` (counted, logged) when it is not one this
    /// build can read.
    fn parse(&self, bytes: &[u8]) -> Option<SharedChange> {
        match serde_json::from_slice::<SharedChange>(bytes) {
            Ok(change) if change.schema == SCHEMA => Some(change),
            Ok(change) => {
                self.metrics.event("invalid");
                let schema = format!("schema {}", change.schema);
                self.skipped_log.trouble("parse", "schema", &schema);
                None
            }
            Err(e) => {
                self.metrics.event("invalid");
                self.skipped_log.trouble("parse", "invalid", &e);
                None
            }
        }
    }

    /// One command on the pool, within the timeout.
    async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        crate::cache::redis::run(&self.pool, self.timeout, cmd)
            .await
            .map_err(|e| e.to_string())
    }
}
