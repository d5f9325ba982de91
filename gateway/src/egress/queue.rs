//! The durable delivery queue: one row per (destination, stored object) in
//! the index database, so a result waiting for a PACS survives a restart.
//! A stored object is a SOP Instance UID *and* the file it is stored in:
//! two sites may each hold their own copy of one UID (the store's
//! per-site namespaces), and forwarding one site's copy must not stand in
//! for the other's.
//!
//! Every call runs on the blocking pool: SQLite must never stall the async
//! runtime. Transactions are short and `IMMEDIATE` where they write, because
//! the committer thread and other stages write to the same file; the busy
//! timeout set by [`crate::db::open`] absorbs their locks.

use std::path::{Component, Path};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::audit::{self, AuditEntry};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS deliveries (
    id                  INTEGER PRIMARY KEY NOT NULL,
    destination         TEXT NOT NULL,
    sop_class_uid       TEXT NOT NULL,
    sop_instance_uid    TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    path                TEXT NOT NULL,
    origin              TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER NOT NULL,
    last_status         INTEGER,
    last_error          TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    UNIQUE (destination, sop_instance_uid, path)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, destination, next_attempt_at);
"#;

/// Creates the `deliveries` table; a step of `app::schema::STEPS`.
pub(crate) fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// Why a queue operation failed. Always our side (the database), and
/// retryable only in the sense that a locked database may free up.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("delivery queue database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("delivery path `{0}` must be relative to the data directory, without `..`")]
    InvalidPath(String),
    #[error("no destination named `{0}` is configured")]
    UnknownDestination(String),
    #[error("delivery {0} does not exist or is not dead-lettered")]
    NotDead(i64),
    #[error("delivery queue task failed: {0}")]
    Task(String),
}

impl QueueError {
    /// Whose fault: the caller's for a bad path, destination or id; ours otherwise.
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self,
            QueueError::InvalidPath(_) | QueueError::UnknownDestination(_) | QueueError::NotDead(_)
        )
    }
}

/// A result object to forward, as handed over by the `results` stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub destination: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    /// Relative to the data directory.
    pub path: String,
    /// Why this exists, e.g. `result:<job id>`.
    pub origin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    fn parse(text: &str) -> rusqlite::Result<Self> {
        match text {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "dead" => Ok(DeliveryState::Dead),
            other => Err(rusqlite::Error::InvalidColumnType(
                0,
                format!("state `{other}`"),
                rusqlite::types::Type::Text,
            )),
        }
    }
}

/// One row of the queue, as the operator API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub destination: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    pub path: String,
    pub origin: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// RFC 3339 UTC.
    pub next_attempt_at: String,
    /// The last DIMSE status the destination answered, if any.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Which rows [`DeliveryQueue::list`] returns (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub destination: Option<String>,
    /// At most this many; 0 means 100.
    pub limit: u32,
}

/// Handle on the queue; cheap to clone, one connection shared by clones.
#[derive(Clone)]
pub struct DeliveryQueue {
    conn: Arc<Mutex<Connection>>,
}

const COLUMNS: &str = "id, destination, sop_class_uid, sop_instance_uid, transfer_syntax_uid, \
    path, origin, state, attempts, next_attempt_at, last_status, last_error, created_at, updated_at";

impl DeliveryQueue {
    /// Opens the index database at `db_path` (creating the table if needed).
    pub async fn open(db_path: &Path) -> Result<Self, QueueError> {
        let path = db_path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || {
            crate::store::index::open(&path).and_then(|conn| create_schema(&conn).map(|()| conn))
        })
        .await
        .map_err(|e| QueueError::Task(e.to_string()))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Adds a delivery; durable when this returns. Enqueueing the same
    /// (destination, SOP instance, path) again returns the existing id and
    /// leaves that row as it is, delivered or not.
    pub async fn enqueue(&self, new: NewDelivery) -> Result<i64, QueueError> {
        check_relative_path(&new.path)?;
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = crate::time::now_rfc3339();
            tx.execute(
                "INSERT INTO deliveries (destination, sop_class_uid, sop_instance_uid, \
                 transfer_syntax_uid, path, origin, state, attempts, next_attempt_at, \
                 created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8, ?8) \
                 ON CONFLICT (destination, sop_instance_uid, path) DO NOTHING",
                params![
                    new.destination,
                    new.sop_class_uid,
                    new.sop_instance_uid,
                    new.transfer_syntax_uid,
                    new.path,
                    new.origin,
                    to_millis(SystemTime::now()),
                    now
                ],
            )?;
            let id = tx.query_row(
                "SELECT id FROM deliveries \
                 WHERE destination = ?1 AND sop_instance_uid = ?2 AND path = ?3",
                params![new.destination, new.sop_instance_uid, new.path],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    /// Pending rows of any destination whose next attempt is at or before `now`.
    pub async fn due(
        &self,
        now: SystemTime,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, QueueError> {
        self.due_where(None, now, limit).await
    }

    /// [`due`](Self::due) for one destination, oldest first.
    pub async fn due_for(
        &self,
        destination: &str,
        now: SystemTime,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, QueueError> {
        self.due_where(Some(destination.to_string()), now, limit)
            .await
    }

    async fn due_where(
        &self,
        destination: Option<String>,
        now: SystemTime,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, QueueError> {
        let now = to_millis(now);
        self.with_conn(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?1 \
                 AND (?2 IS NULL OR destination = ?2) ORDER BY next_attempt_at, id LIMIT ?3"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![now, destination, limit], record_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Records a successful delivery (status Success or a Warning) and audits it.
    pub async fn mark_delivered(&self, id: i64, status: u16) -> Result<(), QueueError> {
        self.finish(id, DeliveryState::Delivered, Some(status), None)
            .await
    }

    /// Records a failed attempt that will be retried at `next_at`.
    pub async fn mark_retry(
        &self,
        id: i64,
        next_at: SystemTime,
        status: Option<u16>,
        error: &str,
    ) -> Result<(), QueueError> {
        let next = to_millis(next_at);
        let error = error.to_string();
        self.with_conn(move |conn| {
            conn.execute(
                "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?2, \
                 last_status = ?3, last_error = ?4, updated_at = ?5 \
                 WHERE id = ?1 AND state = 'pending'",
                params![id, next, status, error, crate::time::now_rfc3339()],
            )?;
            Ok(())
        })
        .await
    }

    /// Gives up on a delivery (permanent failure or attempts exhausted) and audits it.
    pub async fn mark_dead(
        &self,
        id: i64,
        status: Option<u16>,
        error: &str,
    ) -> Result<(), QueueError> {
        self.finish(id, DeliveryState::Dead, status, Some(error.to_string()))
            .await
    }

    /// Puts a dead-lettered delivery back in the queue, due now, with its
    /// attempt count reset; `actor` (an operator identity) is audited.
    pub async fn retry_dead(&self, id: i64, actor: &str) -> Result<DeliveryRecord, QueueError> {
        let actor = actor.to_string();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?2, \
                 updated_at = ?3 WHERE id = ?1 AND state = 'dead'",
                params![id, to_millis(SystemTime::now()), crate::time::now_rfc3339()],
            )?;
            if changed == 0 {
                return Err(QueueError::NotDead(id));
            }
            let record = select_one(&tx, id)?;
            audit::append(&tx, &audit_entry(&actor, "egress.requeued", &record))?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// Rows matching `filter`, newest first.
    pub async fn list(&self, filter: DeliveryFilter) -> Result<Vec<DeliveryRecord>, QueueError> {
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        self.with_conn(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM deliveries WHERE (?1 IS NULL OR state = ?1) \
                 AND (?2 IS NULL OR destination = ?2) ORDER BY id DESC LIMIT ?3"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let state = filter.state.map(DeliveryState::as_str);
            let rows =
                stmt.query_map(params![state, filter.destination, limit], record_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Number of rows by (destination, state), for the queue-depth gauges.
    pub async fn counts(&self) -> Result<Vec<(String, DeliveryState, u64)>, QueueError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT destination, state, COUNT(*) FROM deliveries GROUP BY destination, state",
            )?;
            let rows = stmt.query_map([], |r| {
                let state: String = r.get(1)?;
                Ok((
                    r.get(0)?,
                    DeliveryState::parse(&state)?,
                    r.get::<_, i64>(2)? as u64,
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Fetches one row by id.
    pub async fn get(&self, id: i64) -> Result<Option<DeliveryRecord>, QueueError> {
        self.with_conn(move |conn| Ok(select_one(conn, id).optional()?))
            .await
    }

    async fn finish(
        &self,
        id: i64,
        state: DeliveryState,
        status: Option<u16>,
        error: Option<String>,
    ) -> Result<(), QueueError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "UPDATE deliveries SET state = ?2, attempts = attempts + 1, last_status = ?3, \
                 last_error = ?4, updated_at = ?5 WHERE id = ?1 AND state = 'pending'",
                params![
                    id,
                    state.as_str(),
                    status,
                    error,
                    crate::time::now_rfc3339()
                ],
            )?;
            if changed == 1 {
                // The audit entry commits with the state change, or neither does.
                let record = select_one(&tx, id)?;
                let action = match state {
                    DeliveryState::Delivered => "egress.delivered",
                    _ => "egress.dead_lettered",
                };
                audit::append(&tx, &audit_entry("system", action, &record))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn with_conn<T, F>(&self, work: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, QueueError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written
            // (the transaction rolls back on drop), so a poisoned lock is usable.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut guard)
        })
        .await
        .map_err(|e| QueueError::Task(e.to_string()))?
    }
}

fn audit_entry(actor: &str, action: &str, record: &DeliveryRecord) -> AuditEntry {
    AuditEntry {
        actor: actor.to_string(),
        action: action.to_string(),
        detail: serde_json::json!({
            "delivery": record.id,
            "destination": record.destination,
            "sop_class_uid": record.sop_class_uid,
            "sop_instance_uid": record.sop_instance_uid,
            "origin": record.origin,
            "attempts": record.attempts,
            "status": record.last_status,
            "error": record.last_error,
        }),
    }
}

fn select_one(conn: &Connection, id: i64) -> rusqlite::Result<DeliveryRecord> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1"),
        [id],
        record_from_row,
    )
}

fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let state: String = r.get(7)?;
    let next_millis: i64 = r.get(9)?;
    let status: Option<i64> = r.get(10)?;
    Ok(DeliveryRecord {
        id: r.get(0)?,
        destination: r.get(1)?,
        sop_class_uid: r.get(2)?,
        sop_instance_uid: r.get(3)?,
        transfer_syntax_uid: r.get(4)?,
        path: r.get(5)?,
        origin: r.get(6)?,
        state: DeliveryState::parse(&state)?,
        attempts: r.get::<_, i64>(8)?.clamp(0, u32::MAX as i64) as u32,
        next_attempt_at: humantime::format_rfc3339_millis(from_millis(next_millis)).to_string(),
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
    })
}

fn to_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// The queue only ever points inside the data directory.
fn check_relative_path(path: &str) -> Result<(), QueueError> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(QueueError::InvalidPath(path.to_string()))
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
