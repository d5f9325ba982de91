//! The drift monitor's state in the index database (`drift_state`), so that
//! baselines and running distributions survive a restart and the
//! `report performance` command can show drift without a running gateway.
//!
//! Rows are JSON, written at most every `drift.persist_interval` together
//! with the audit entries of threshold crossings, in one transaction, by
//! the caller of `observe` (see [`DriftOutcome::write`]). What was observed
//! since the last write is lost on a crash: drift is a slow signal.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::baseline::ModelBaseline;
use super::monitor::KeyState;
use super::{DriftKey, DriftOutcome, DriftPersist, ModelKey};
use crate::audit;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS drift_state (
    -- 'model': a model version's baseline (site and scanner ''); 'key': the
    -- running distributions of one (site, scanner, model, version)
    kind       TEXT NOT NULL,
    site       TEXT NOT NULL,
    scanner    TEXT NOT NULL,
    model      TEXT NOT NULL,
    version    TEXT NOT NULL,
    state      TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, site, scanner, model, version)
);
"#;

pub fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// Writes `persist` inside `tx` (creating the table on first use).
pub fn save(tx: &Transaction<'_>, persist: &DriftPersist) -> rusqlite::Result<()> {
    create_schema(tx)?;
    let now = crate::time::unix_millis();
    let mut upsert = tx.prepare_cached(
        "INSERT INTO drift_state (kind, site, scanner, model, version, state, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (kind, site, scanner, model, version)
         DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
    )?;
    for ((model, version), state) in &persist.models {
        upsert.execute(params!["model", "", "", model, version, state, now])?;
    }
    for (key, state) in &persist.keys {
        upsert.execute(params![
            "key",
            key.site,
            key.scanner,
            key.model,
            key.version,
            state,
            now
        ])?;
    }
    let mut delete = tx.prepare_cached(
        "DELETE FROM drift_state
         WHERE kind = 'key' AND site = ?1 AND scanner = ?2 AND model = ?3 AND version = ?4",
    )?;
    for key in &persist.removed {
        delete.execute(params![key.site, key.scanner, key.model, key.version])?;
    }
    Ok(())
}

/// Persisted state: model baselines and keys. A database without the
/// table (never written, or an older gateway) gives nothing; a row that no
/// longer parses is skipped with a warning rather than failing start-up.
#[allow(clippy::type_complexity)]
pub(super) fn load(
    conn: &Connection,
) -> rusqlite::Result<(Vec<(ModelKey, ModelBaseline)>, Vec<(DriftKey, KeyState)>)> {
    let exists: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'drift_state'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut stmt = conn.prepare(
        "SELECT kind, site, scanner, model, version, state FROM drift_state ORDER BY updated_ms DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            DriftKey {
                site: r.get(1)?,
                scanner: r.get(2)?,
                model: r.get(3)?,
                version: r.get(4)?,
            },
            r.get::<_, String>(5)?,
        ))
    })?;
    let (mut models, mut keys) = (Vec::new(), Vec::new());
    let mut skipped = 0;
    for row in rows {
        let (kind, key, state) = row?;
        match kind.as_str() {
            "model" => match serde_json::from_str(&state) {
                Ok(baseline) => models.push(((key.model, key.version), baseline)),
                Err(_) => skipped += 1,
            },
            "key" => match serde_json::from_str(&state) {
                Ok(state) => keys.push((key, state)),
                Err(_) => skipped += 1,
            },
            _ => skipped += 1,
        }
    }
    if skipped > 0 {
        tracing::warn!(
            rows = skipped,
            "drift state rows that no longer parse were skipped"
        );
    }
    Ok((models, keys))
}

impl DriftOutcome {
    /// Writes the audit entries of threshold crossings and any state due
    /// for persistence in one transaction. A no-op when there is nothing.
    pub fn write(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let tx = conn.transaction()?;
        for event in &self.events {
            audit::append(&tx, &event.audit_entry())?;
        }
        if let Some(persist) = &self.persist {
            save(&tx, persist)?;
        }
        tx.commit()
    }
}
