//! The `series_activity` table: one row per series, updated with each
//! arrival by the committer in the same transaction as the instance's index
//! row, so what assembly (`assemble`, above the store) knows is never ahead
//! of what is durable. The store owns and writes it; assembly reads it.

use rusqlite::{Connection, Transaction, params};

use super::IndexRow;

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

/// Creates the `series_activity` table and its index.
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
