//! [`RouteStateStore`]: operator route state in the index database (table
//! `route_state`, one JSON row per route) and in memory for readers.
//!
//! Every operator action is validated, then written together with its audit
//! entry in one transaction, then published: readers take an `Arc` snapshot
//! and see the change on their next series, without a restart. A refused
//! action changes nothing, in the database or in memory.
//!
//! Every change is also announced on [`RouteStateStore::subscribe`], and
//! `synced.rs` applies changes made on other replicas (see
//! `route/state_sync.rs`).

mod synced;

pub use synced::{ChangeOrigin, RouteStateChange, StampedState, SyncOutcome, SyncedChange};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::broadcast;

use super::state::{Canary, ForcedFallback, Promotion, RouteState, Shadow, StateError};
use super::table::{Route, RouteTable};
use crate::audit::{self, AuditEntry};
use crate::models::{FileStatus, ModelId, ModelRepository, Version};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS route_state (
    route         TEXT PRIMARY KEY NOT NULL,
    state         TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
"#;

/// Creates the `route_state` table; a step of `app::schema::STEPS`.
pub(crate) fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// The state of every route that has any, by route name. Routes absent
/// here have the default state.
pub type RouteStates = HashMap<String, RouteState>;

/// One operator action on one route's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteCommand {
    /// Force the fallback chain, until a time (Unix ms) or until unflipped.
    Flip {
        until_ms: Option<i64>,
    },
    Unflip,
    Pin(Version),
    Unpin,
    /// Serve a new version, remembering the one it replaces.
    Promote(Version),
    /// Return to the version the last promote replaced.
    Rollback,
    Disable,
    Enable,
    Drain,
    Undrain,
    SetCanary {
        version: Version,
        percent: u8,
    },
    ClearCanary,
    SetShadow(Version),
    ClearShadow,
}

impl RouteCommand {
    /// The audit action, a stable dotted verb.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Flip { .. } => "route.flip",
            Self::Unflip => "route.unflip",
            Self::Pin(_) => "route.pin",
            Self::Unpin => "route.unpin",
            Self::Promote(_) => "route.promote",
            Self::Rollback => "route.rollback",
            Self::Disable => "route.disable",
            Self::Enable => "route.enable",
            Self::Drain => "route.drain",
            Self::Undrain => "route.undrain",
            Self::SetCanary { .. } => "route.canary",
            Self::ClearCanary => "route.canary_clear",
            Self::SetShadow(_) => "route.shadow",
            Self::ClearShadow => "route.shadow_clear",
        }
    }

    /// The new state, or why the command cannot apply to `before`. Returns
    /// the version the command puts into service (to be checked against the
    /// repository and the ready check), if any.
    fn apply(
        &self,
        route: &Route,
        before: &RouteState,
        reason: &str,
        now_ms: i64,
    ) -> Result<(RouteState, Option<Version>), StateError> {
        let mut after = before.clone();
        let mut target = None;
        match *self {
            Self::Flip { until_ms } => {
                if let Some(until_ms) = until_ms.filter(|until| *until <= now_ms) {
                    return Err(StateError::UntilInPast { until_ms });
                }
                after.forced_fallback = Some(ForcedFallback {
                    until_ms,
                    reason: reason.to_string(),
                });
            }
            Self::Unflip => after.forced_fallback = None,
            Self::Pin(version) => {
                after.pinned = Some(version);
                target = Some(version);
            }
            Self::Unpin => after.pinned = None,
            Self::Promote(version) => {
                let serving = before.promotion.map_or(route.model.version, |p| p.current);
                if version == serving {
                    return Err(StateError::AlreadyServing {
                        route: route.name.clone(),
                        version,
                    });
                }
                after.promotion = Some(Promotion {
                    current: version,
                    previous: Some(serving),
                });
                // A promote ends the canary of the version it promotes.
                if before.canary.is_some_and(|c| c.version == version) {
                    after.canary = None;
                }
                target = Some(version);
            }
            Self::Rollback => {
                // The version the last promote replaced; without one, the
                // route's configured `rollback_to`.
                let serving = before.promotion.map_or(route.model.version, |p| p.current);
                let previous = before
                    .promotion
                    .and_then(|p| p.previous)
                    .or(route.rollback_to.filter(|v| *v != serving))
                    .ok_or_else(|| StateError::NoPreviousVersion(route.name.clone()))?;
                after.promotion = Some(Promotion {
                    current: previous,
                    previous: None,
                });
                target = Some(previous);
            }
            Self::Disable => after.disabled = true,
            Self::Enable => after.disabled = false,
            Self::Drain => after.draining = true,
            Self::Undrain => after.draining = false,
            Self::SetCanary { version, percent } => {
                if percent > 100 {
                    return Err(StateError::InvalidPercent(percent));
                }
                after.canary = Some(Canary { version, percent });
                target = Some(version);
            }
            Self::ClearCanary => after.canary = None,
            Self::SetShadow(version) => {
                after.shadow = Some(Shadow { version });
                target = Some(version);
            }
            Self::ClearShadow => after.shadow = None,
        }
        Ok((after, target))
    }
}

/// Who asks for an action on which route, and why (all mandatory).
#[derive(Debug, Clone, Copy)]
pub struct OperatorRequest<'a> {
    pub route: &'a str,
    /// The operator's identity, from the admin token.
    pub actor: &'a str,
    pub reason: &'a str,
}

/// What an action is checked against: the routes in force and the models
/// deployed.
#[derive(Debug, Clone, Copy)]
pub struct Deployment<'a> {
    pub routes: &'a RouteTable,
    pub models: &'a ModelRepository,
}

/// The persisted, published route state. Share it in an `Arc`.
#[derive(Debug)]
pub struct RouteStateStore {
    /// Held from validation to publication, so actions apply one at a time
    /// and readers see them in commit order.
    conn: Mutex<Connection>,
    published: RwLock<Arc<RouteStates>>,
    /// Every change once committed, for the replicas' sync.
    changes: broadcast::Sender<RouteStateChange>,
}

/// Changes a slow subscriber may fall behind by before it is told it lagged.
const CHANGE_BUFFER: usize = 256;

impl RouteStateStore {
    /// Loads every route's state from `conn` (an index connection from
    /// [`crate::store::index::open`]).
    pub fn load(conn: Connection) -> Result<RouteStateStore, StateError> {
        let states = read_all(&conn)?;
        Ok(RouteStateStore {
            conn: Mutex::new(conn),
            published: RwLock::new(Arc::new(states)),
            changes: broadcast::channel(CHANGE_BUFFER).0,
        })
    }

    /// Every route's state in force. Hold the `Arc` for one decision, not
    /// longer, so the next decision sees the next action.
    pub fn snapshot(&self) -> Arc<RouteStates> {
        Arc::clone(
            &self
                .published
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Every change from now on, local and synced, once committed and
    /// published.
    pub fn subscribe(&self) -> broadcast::Receiver<RouteStateChange> {
        self.changes.subscribe()
    }

    /// One route's state in force (the default when none is set).
    pub fn get(&self, route: &str) -> RouteState {
        self.snapshot().get(route).cloned().unwrap_or_default()
    }

    /// Validates `command`, then persists it with its audit entry in one
    /// transaction, then publishes it. A command that puts a version into
    /// service (pin, promote, rollback, canary, shadow) needs that version in
    /// the repository with a file that matches its SHA-256, and
    /// `ready_check` to pass for it (the caller loads the model and checks
    /// its health there) before anything changes. Returns the new state.
    ///
    /// Blocking (SQLite, hashing the model file, `ready_check`): call it
    /// from `spawn_blocking`. Other actions wait meanwhile; readers do not.
    pub fn execute(
        &self,
        deployment: Deployment<'_>,
        request: OperatorRequest<'_>,
        command: RouteCommand,
        ready_check: impl FnOnce(&ModelId) -> Result<(), String>,
    ) -> Result<RouteState, StateError> {
        if request.reason.trim().is_empty() {
            return Err(StateError::MissingReason);
        }
        if request.actor.trim().is_empty() {
            return Err(StateError::MissingActor);
        }
        let route = deployment
            .routes
            .routes()
            .iter()
            .find(|r| r.name == request.route)
            .ok_or_else(|| StateError::UnknownRoute(request.route.to_string()))?;
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.get(request.route);
        let now_ms = crate::time::unix_millis();
        let (after, target) = command.apply(route, &before, request.reason, now_ms)?;
        if let Some(version) = target {
            let model = ModelId {
                name: route.model.name.clone(),
                version,
            };
            check_model(deployment.models, &model)?;
            ready_check(&model).map_err(|why| StateError::NotReady { model, why })?;
        }

        let tx = conn.transaction()?;
        // The stamp orders changes between replicas (last writer wins): a
        // change is always later than the state it was made on, even when
        // that state came from a replica whose clock runs ahead.
        let stamp =
            now_ms.max(stamp_of(&tx, request.route)?.map_or(i64::MIN, |s| s.saturating_add(1)));
        tx.execute(
            "INSERT INTO route_state (route, state, updated_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (route) DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
            params![request.route, to_json(&after).to_string(), stamp],
        )?;
        audit::append(
            &tx,
            &AuditEntry {
                actor: request.actor.to_string(),
                action: command.action().to_string(),
                detail: serde_json::json!({
                    "route": request.route,
                    "reason": request.reason,
                    "before": to_json(&before),
                    "after": to_json(&after),
                }),
            },
        )?;
        tx.commit()?;

        self.publish(RouteStateChange {
            route: request.route.to_string(),
            state: after.clone(),
            actor: request.actor.to_string(),
            action: command.action().to_string(),
            changed_at_ms: stamp,
            origin: ChangeOrigin::Local,
        });
        drop(conn);
        tracing::info!(
            route = request.route,
            action = command.action(),
            actor = request.actor,
            "route state changed"
        );
        Ok(after)
    }

    /// Makes `change` the state readers see, then announces it. Called with
    /// the connection lock held, after the commit.
    fn publish(&self, change: RouteStateChange) {
        let mut published = self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut states = RouteStates::clone(&published);
        states.insert(change.route.clone(), change.state.clone());
        *published = Arc::new(states);
        drop(published);
        // No subscriber (no sync configured) is not an error.
        let _ = self.changes.send(change);
    }

    /// Forces the fallback chain, until `until_ms` (Unix ms) or an unflip.
    pub fn flip(
        &self,
        deployment: Deployment<'_>,
        request: OperatorRequest<'_>,
        until_ms: Option<i64>,
    ) -> Result<RouteState, StateError> {
        self.execute(
            deployment,
            request,
            RouteCommand::Flip { until_ms },
            no_check,
        )
    }

    pub fn unflip(
        &self,
        deployment: Deployment<'_>,
        request: OperatorRequest<'_>,
    ) -> Result<RouteState, StateError> {
        self.execute(deployment, request, RouteCommand::Unflip, no_check)
    }

    pub fn pin(
        &self,
        deployment: Deployment<'_>,
        request: OperatorRequest<'_>,
        version: Version,
        ready_check: impl FnOnce(&ModelId) -> Result<(), String>,
    ) -> Result<RouteState, StateError> {
        self.execute(deployment, request, RouteCommand::Pin(version), ready_check)
    }

    pub fn unpin(
        &self,
        deployment: Deployment<'_>,
        request: OperatorRequest<'_>,
    ) -> Result<RouteState, StateError> {
        self.execute(deployment, request, RouteCommand::Unpin, no_check)
    }

    pub fn promote(
        &self,
        deployment: Deployment<'_>,
        request: OperatorRequest<'_>,
        version: Version,
        ready_check: impl FnOnce(&ModelId) -> Result<(), String>,
    ) -> Result<RouteState, StateError> {
        let command = RouteCommand::Promote(version);
        self.execute(deployment, request, command, ready_check)
    }

    pub fn rollback(
        &self,
        deployment: Deployment<'_>,
        request: OperatorRequest<'_>,
        ready_check: impl FnOnce(&ModelId) -> Result<(), String>,
    ) -> Result<RouteState, StateError> {
        self.execute(deployment, request, RouteCommand::Rollback, ready_check)
    }

    /// Disables (`true`) or re-enables (`false`) the route.
    pub fn set_disabled(
        &self,
        deployment: Deployment<'_>,
        request: OperatorRequest<'_>,
        disabled: bool,
    ) -> Result<RouteState, StateError> {
        let command = if disabled {
            RouteCommand::Disable
        } else {
            RouteCommand::Enable
        };
        self.execute(deployment, request, command, no_check)
    }

    /// Starts (`true`) or ends (`false`) draining the route.
    pub fn set_draining(
        &self,
        deployment: Deployment<'_>,
        request: OperatorRequest<'_>,
        draining: bool,
    ) -> Result<RouteState, StateError> {
        let command = if draining {
            RouteCommand::Drain
        } else {
            RouteCommand::Undrain
        };
        self.execute(deployment, request, command, no_check)
    }
}

/// The ready check of commands that put no version into service.
fn no_check(_: &ModelId) -> Result<(), String> {
    Ok(())
}

/// The version must be deployed and its file must match its SHA-256.
fn check_model(models: &ModelRepository, model: &ModelId) -> Result<(), StateError> {
    let entry = models
        .get(&model.name, model.version)
        .ok_or_else(|| StateError::UnknownVersion(model.clone()))?;
    match entry.check_file() {
        FileStatus::Ok => Ok(()),
        // Served by Triton: the plan lives on the server, which is asked
        // at load (the ready check) instead.
        FileStatus::Missing if entry.manifest().triton.is_some() => Ok(()),
        status => Err(StateError::ModelFile {
            model: model.clone(),
            status: match status {
                FileStatus::Unreadable(why) => format!("unreadable: {why}"),
                other => other.as_str().to_string(),
            },
        }),
    }
}

fn to_json(state: &RouteState) -> serde_json::Value {
    // Plain fields, options and strings cannot fail to serialise; `Null`
    // would still be an honest audit record if they ever did.
    serde_json::to_value(state).unwrap_or(serde_json::Value::Null)
}

/// The stamp (`updated_at_ms`) of `route`'s state, if it has one.
fn stamp_of(conn: &Connection, route: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT updated_at_ms FROM route_state WHERE route = ?1",
        [route],
        |r| r.get(0),
    )
    .optional()
}

fn read_all(conn: &Connection) -> Result<RouteStates, StateError> {
    let mut stmt = conn.prepare("SELECT route, state FROM route_state")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut states = RouteStates::new();
    for row in rows {
        let (route, text) = row?;
        let state = serde_json::from_str(&text).map_err(|source| StateError::Corrupt {
            route: route.clone(),
            source,
        })?;
        states.insert(route, state);
    }
    Ok(states)
}
