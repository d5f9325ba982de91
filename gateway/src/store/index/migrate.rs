//! Index schema 1 → 2, run by [`super::open_migrating`]: instances are identified by
//! (site, SOP Instance UID) instead of the UID alone, and what is keyed by
//! an instance or a series follows: series assembly by (site, series), jobs
//! by (site, series, instance, model version), deliveries by (destination,
//! instance, stored file).
//!
//! SQLite cannot change a primary key or a UNIQUE constraint in place, so
//! each of those tables is rebuilt: renamed aside, created anew by the
//! module that owns its schema, its rows copied column by column, the old
//! table dropped. The store rebuilds its own tables (`instances`,
//! `series_activity`); the tables of stages above it (`jobs`, `deliveries`)
//! are passed in by `app::schema`, so the store imports no stage above it.
//! All of it is one transaction: a crash leaves schema 1
//! intact and the next start migrates again. Every row keeps every value,
//! `path` included, so files written under schema 1 stay valid where they
//! are (new files get the site-scoped paths of `Layout`).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::db::{CreateFn, SchemaStep};

/// The only older schema this build migrates.
pub(super) const FROM_VERSION: i64 = 1;

/// The store's tables whose keys changed, each with the function that
/// creates it (and its indexes) at the current schema; rebuilt before the
/// `rekeyed` tables of the stages above (`jobs`, `deliveries`).
const REBUILT: &[SchemaStep] = &[
    SchemaStep {
        table: "instances",
        create: super::create_instances,
    },
    SchemaStep {
        table: "series_activity",
        create: crate::store::activity::create_schema,
    },
];

/// Suffix of a table set aside while its replacement is filled.
const OLD_SUFFIX: &str = "_schema1";

/// Migrates a schema 1 index to [`super::SCHEMA_VERSION`] in one transaction.
/// `rekeyed` names the tables of stages above the store whose keys changed.
pub(super) fn to_current(conn: &mut Connection, rekeyed: &[SchemaStep]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have migrated while this one waited for the lock.
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != FROM_VERSION {
        return Ok(());
    }
    let mut copied = Vec::with_capacity(REBUILT.len() + rekeyed.len());
    for step in REBUILT.iter().chain(rekeyed) {
        if table_exists(&tx, step.table)? {
            copied.push((step.table, rebuild(&tx, step.table, step.create)?));
        }
    }
    tx.pragma_update(None, "user_version", super::SCHEMA_VERSION)?;
    tx.commit()?;
    tracing::info!(
        from = FROM_VERSION,
        to = super::SCHEMA_VERSION,
        rows = ?copied,
        "index schema migrated"
    );
    Ok(())
}

/// Rebuilds `table` with the schema `create` makes; returns the rows copied.
fn rebuild(conn: &Connection, table: &str, create: CreateFn) -> rusqlite::Result<usize> {
    let old = format!("{table}{OLD_SUFFIX}");
    conn.execute_batch(&format!(r#"ALTER TABLE "{table}" RENAME TO "{old}""#))?;
    // Indexes keep their names through a rename: left in place, they would
    // make the new table's `CREATE INDEX IF NOT EXISTS` a no-op.
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL",
        )?
        .query_map([&old], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for index in indexes {
        conn.execute_batch(&format!(r#"DROP INDEX "{index}""#))?;
    }
    create(conn)?;
    let new_columns = columns(conn, table)?;
    let old_columns = columns(conn, &old)?;
    // Columns the old table lacks (added since) take their defaults.
    let shared: Vec<String> = new_columns
        .into_iter()
        .filter(|c| old_columns.contains(c))
        .map(|c| format!(r#""{c}""#))
        .collect();
    let list = shared.join(", ");
    let copied = conn.execute(
        &format!(r#"INSERT INTO "{table}" ({list}) SELECT {list} FROM "{old}""#),
        [],
    )?;
    keep_autoincrement(conn, table, &old)?;
    conn.execute_batch(&format!(r#"DROP TABLE "{old}""#))?;
    Ok(copied)
}

/// An AUTOINCREMENT table never reuses an id, even of a deleted row: the
/// new table continues from the old one's counter, not from its largest id.
fn keep_autoincrement(conn: &Connection, table: &str, old: &str) -> rusqlite::Result<()> {
    if !table_exists(conn, "sqlite_sequence")? {
        return Ok(());
    }
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = ?1",
            [old],
            |r| r.get(0),
        )
        .optional()?;
    let Some(seq) = seq else {
        return Ok(());
    };
    let updated = conn.execute(
        "UPDATE sqlite_sequence SET seq = MAX(seq, ?2) WHERE name = ?1",
        params![table, seq],
    )?;
    if updated == 0 {
        conn.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
            params![table, seq],
        )?;
    }
    Ok(())
}

fn table_exists(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [table],
        |r| r.get(0),
    )
}

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare("SELECT name FROM pragma_table_info(?1)")?
        .query_map([table], |r| r.get(0))?
        .collect()
}

#[cfg(test)]
#[path = "migrate_tests.rs"]
mod tests;
