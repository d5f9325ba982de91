//! The store's side of sharing route state between replicas: change
//! announcements, stamped reads, and applying a change made elsewhere.
//!
//! Changes are ordered by their stamp (`updated_at_ms`, Unix ms of the
//! replica that made them, always later than the state they replaced): the
//! later stamp wins, per route, whole state. The transport (Redis) is in
//! `route/state_sync.rs`; this file only needs the index database.

use std::sync::PoisonError;

use rusqlite::params;

use super::{RouteStateStore, read_all, stamp_of, to_json};
use crate::audit::{self, AuditEntry};
use crate::route::{RouteState, StateError};

/// The actor of audit entries written for changes made on other replicas.
pub const SYNC_ACTOR: &str = "system:route-sync";

/// Where a change was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOrigin {
    /// An operator action on this replica ([`RouteStateStore::execute`]).
    Local,
    /// A change made on another replica, applied here.
    Sync,
}

/// One committed change, as announced by [`RouteStateStore::subscribe`].
#[derive(Debug, Clone, PartialEq)]
pub struct RouteStateChange {
    pub route: String,
    /// The route's whole state after the change.
    pub state: RouteState,
    /// Who made it (on the replica where it was made).
    pub actor: String,
    /// The audit action, e.g. `route.flip`.
    pub action: String,
    /// Its stamp, Unix ms.
    pub changed_at_ms: i64,
    pub origin: ChangeOrigin,
}

/// A route's state with its stamp, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StampedState {
    pub route: String,
    pub state: RouteState,
    pub changed_at_ms: i64,
}

/// A change made on another replica.
#[derive(Debug, Clone, Copy)]
pub struct SyncedChange<'a> {
    pub route: &'a str,
    pub state: &'a RouteState,
    pub changed_at_ms: i64,
    pub origin_replica: &'a str,
    pub origin_actor: &'a str,
    pub origin_action: &'a str,
}

/// What [`RouteStateStore::apply_synced`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The change is now the local state (persisted, audited, published).
    Applied,
    /// The local state already equals it; nothing audited.
    Unchanged,
    /// The local state is later; the change is ignored.
    Stale,
}

impl SyncOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncOutcome::Applied => "applied",
            SyncOutcome::Unchanged => "unchanged",
            SyncOutcome::Stale => "stale",
        }
    }
}

impl RouteStateStore {
    /// Every stored route state with its stamp.
    ///
    /// Blocking (SQLite): call it from `spawn_blocking`.
    pub fn stamped_states(&self) -> Result<Vec<StampedState>, StateError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let states = read_all(&conn)?;
        let mut stamped = Vec::with_capacity(states.len());
        for (route, state) in states {
            let changed_at_ms = stamp_of(&conn, &route)?.unwrap_or(0);
            stamped.push(StampedState {
                route,
                state,
                changed_at_ms,
            });
        }
        Ok(stamped)
    }

    /// Applies a change made on another replica if it is later than the
    /// local state (or as late and different: the shared copy breaks ties),
    /// with an audit entry by [`SYNC_ACTOR`] naming the origin replica and
    /// actor, in one transaction; then publishes it. Not validated against
    /// this replica's routes or models: the origin validated it, and
    /// replicas are expected to share routes and the model repository.
    ///
    /// Blocking (SQLite): call it from `spawn_blocking`.
    pub fn apply_synced(&self, change: SyncedChange<'_>) -> Result<SyncOutcome, StateError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.get(change.route);
        let local_stamp = stamp_of(&conn, change.route)?;
        if let Some(local) = local_stamp
            && local > change.changed_at_ms
        {
            return Ok(SyncOutcome::Stale);
        }
        if before == *change.state {
            // Keep stamps aligned, so later comparisons agree everywhere.
            if local_stamp.is_some_and(|local| local < change.changed_at_ms) {
                conn.execute(
                    "UPDATE route_state SET updated_at_ms = ?2 WHERE route = ?1",
                    params![change.route, change.changed_at_ms],
                )?;
            }
            return Ok(SyncOutcome::Unchanged);
        }
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO route_state (route, state, updated_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (route) DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
            params![
                change.route,
                to_json(change.state).to_string(),
                change.changed_at_ms
            ],
        )?;
        audit::append(
            &tx,
            &AuditEntry {
                actor: SYNC_ACTOR.to_string(),
                action: "route.sync".to_string(),
                detail: serde_json::json!({
                    "route": change.route,
                    "origin_replica": change.origin_replica,
                    "origin_actor": change.origin_actor,
                    "origin_action": change.origin_action,
                    "changed_at_ms": change.changed_at_ms,
                    "before": to_json(&before),
                    "after": to_json(change.state),
                }),
            },
        )?;
        tx.commit()?;
        self.publish(super::RouteStateChange {
            route: change.route.to_string(),
            state: change.state.clone(),
            actor: change.origin_actor.to_string(),
            action: change.origin_action.to_string(),
            changed_at_ms: change.changed_at_ms,
            origin: ChangeOrigin::Sync,
        });
        drop(conn);
        tracing::info!(
            route = change.route,
            action = change.origin_action,
            origin_replica = change.origin_replica,
            "route state changed on another replica applied"
        );
        Ok(SyncOutcome::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelRepository;
    use crate::route::{ChangeOrigin, Deployment, OperatorRequest, RouteTable};

    const ROUTE: &str = "ct-head-hyperdensity";

    fn store() -> (tempfile::TempDir, RouteStateStore) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::app::schema::open_index(&dir.path().join("index.sqlite")).unwrap();
        (dir, RouteStateStore::load(conn).unwrap())
    }

    fn change(state: &RouteState, changed_at_ms: i64) -> SyncedChange<'_> {
        SyncedChange {
            route: ROUTE,
            state,
            changed_at_ms,
            origin_replica: "gw-b",
            origin_actor: "bob",
            origin_action: "route.drain",
        }
    }

    fn sync_audits(dir: &tempfile::TempDir) -> i64 {
        let conn = crate::app::schema::open_index(&dir.path().join("index.sqlite")).unwrap();
        conn.query_row(
            "SELECT COUNT(*) FROM audit WHERE actor = ?1",
            [SYNC_ACTOR],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn later_changes_apply_and_earlier_ones_do_not() {
        let (dir, store) = store();
        let mut changes = store.subscribe();
        let draining = RouteState {
            draining: true,
            ..RouteState::default()
        };
        let disabled = RouteState {
            disabled: true,
            ..RouteState::default()
        };
        assert_eq!(
            store.apply_synced(change(&draining, 1_000)).unwrap(),
            SyncOutcome::Applied
        );
        assert_eq!(store.get(ROUTE), draining);
        let announced = changes.try_recv().unwrap();
        assert_eq!(announced.origin, ChangeOrigin::Sync);
        assert_eq!(announced.actor, "bob");

        let stale = store.apply_synced(change(&disabled, 999)).unwrap();
        assert_eq!(stale, SyncOutcome::Stale);
        assert_eq!(store.get(ROUTE), draining);
        let same = store.apply_synced(change(&draining, 2_000)).unwrap();
        assert_eq!(same, SyncOutcome::Unchanged);
        assert_eq!(store.stamped_states().unwrap()[0].changed_at_ms, 2_000);
        assert_eq!(
            store.apply_synced(change(&disabled, 2_000)).unwrap(),
            SyncOutcome::Applied,
            "as late and different: the shared copy breaks the tie"
        );
        assert_eq!(sync_audits(&dir), 2, "one audit entry per applied change");
        assert!(changes.try_recv().is_ok());
        assert!(
            changes.try_recv().is_err(),
            "nothing announced for stale or unchanged"
        );
    }

    #[test]
    fn a_local_change_is_stamped_after_the_state_it_replaces() {
        let (_dir, store) = store();
        let mut changes = store.subscribe();
        let ahead = crate::time::unix_millis() + 3_600_000;
        let draining = RouteState {
            draining: true,
            ..RouteState::default()
        };
        store.apply_synced(change(&draining, ahead)).unwrap();
        let _ = changes.try_recv();
        let routes = RouteTable::embedded_default();
        let models = ModelRepository::open(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"),
        )
        .unwrap();
        let deployment = Deployment {
            routes: &routes,
            models: &models,
        };
        let request = OperatorRequest {
            route: ROUTE,
            actor: "alice",
            reason: "back in service",
        };
        store.set_draining(deployment, request, false).unwrap();
        let local = changes.try_recv().unwrap();
        assert_eq!(local.origin, ChangeOrigin::Local);
        assert_eq!(local.action, "route.undrain");
        assert!(
            local.changed_at_ms > ahead,
            "later than the clock-skewed state"
        );
        assert_eq!(
            store.stamped_states().unwrap()[0].changed_at_ms,
            local.changed_at_ms
        );
    }
}
