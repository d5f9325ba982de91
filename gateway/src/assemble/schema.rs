//! The `series_activity` table: one row per series, updated with each
//! arrival in the committer's transaction. A series is (site, Series
//! Instance UID), like an instance is (site, SOP Instance UID): two sites
//! that send the same series each get theirs assembled and routed.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::store::IndexRow;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS series_activity (
    series_instance_uid TEXT NOT NULL,
    study_instance_uid  TEXT NOT NULL,
    site                TEXT NOT NULL,
    calling_ae          TEXT NOT NULL,
    first_received_ms   INTEGER NOT NULL,
    last_received_ms    INTEGER NOT NULL,
    instances           INTEGER NOT NULL,
    -- 'assembling' until routed, then 'dispatched'
    state               TEXT NOT NULL,
    PRIMARY KEY (site, series_instance_uid)
);
CREATE INDEX IF NOT EXISTS series_activity_ready ON series_activity (state, last_received_ms);
"#;

pub fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// Records that an instance of `row`'s series became durable now.
pub fn record_arrival(tx: &Transaction<'_>, row: &IndexRow) -> rusqlite::Result<()> {
    let now = crate::time::unix_millis();
    tx.execute(
        "INSERT INTO series_activity
             (series_instance_uid, study_instance_uid, site, calling_ae,
              first_received_ms, last_received_ms, instances, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1, 'assembling')
         ON CONFLICT (site, series_instance_uid) DO UPDATE SET
             last_received_ms = excluded.last_received_ms,
             instances = instances + 1,
             state = 'assembling'",
        params![
            row.attributes.series_instance_uid,
            row.attributes.study_instance_uid,
            row.site,
            row.calling_ae,
            now
        ],
    )?;
    Ok(())
}

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
