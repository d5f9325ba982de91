//! Reads of the `series_activity` table, which the store owns and writes
//! (`store::activity`, one row per series, updated with each arrival in the
//! committer's transaction); assembly only reads it and marks a series
//! dispatched. A series is (site, Series Instance UID), like an instance is
//! (site, SOP Instance UID): two sites that send the same series each get
//! theirs assembled and routed.

use rusqlite::{Connection, OptionalExtension, params};

/// A series waiting for its stable time, as last seen.
#[derive(Debug, Clone)]
pub struct PendingSeries {
    pub site: String,
    pub series_instance_uid: String,
    pub last_received_ms: i64,
    pub instances: i64,
}

/// Series still assembling whose last arrival is at or before `cutoff_ms`.
pub fn ready_series(
    conn: &Connection,
    cutoff_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<PendingSeries>> {
    let mut stmt = conn.prepare_cached(
        "SELECT site, series_instance_uid, last_received_ms, instances FROM series_activity
         WHERE state = 'assembling' AND last_received_ms <= ?1
         ORDER BY last_received_ms LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![cutoff_ms, limit as i64], |r| {
        Ok(PendingSeries {
            site: r.get(0)?,
            series_instance_uid: r.get(1)?,
            last_received_ms: r.get(2)?,
            instances: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// Marks the series dispatched unless an instance arrived since it was
/// read; returns whether it did.
pub fn mark_dispatched(conn: &Connection, pending: &PendingSeries) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE series_activity SET state = 'dispatched'
         WHERE site = ?4 AND series_instance_uid = ?1 AND last_received_ms = ?2
           AND instances = ?3",
        params![
            pending.series_instance_uid,
            pending.last_received_ms,
            pending.instances,
            pending.site
        ],
    )?;
    Ok(changed == 1)
}

/// Series still assembling, for the queue-depth gauge.
pub fn assembling_count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM series_activity WHERE state = 'assembling'",
        [],
        |r| r.get(0),
    )
    .optional()
    .map(|n| n.unwrap_or(0))
}

/// The earliest last arrival among series still assembling: the next series
/// becomes ready `stable_time` after it.
pub fn earliest_assembling_ms(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT MIN(last_received_ms) FROM series_activity WHERE state = 'assembling'",
        [],
        |r| r.get(0),
    )
}
