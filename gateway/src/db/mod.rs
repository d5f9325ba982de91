//! The database leaf: how every connection to the index database is opened,
//! and the shape of a schema step. It sits below every stage and imports
//! none of them (see ARCHITECTURE.md, "Layers").
//!
//! Each stage owns its tables and keeps its own `create_schema`; the
//! ordered list of those steps is `app::schema::STEPS`, run at start-up
//! (and by the CLI commands that open the index), so no stage below `app`
//! needs to know another stage's tables.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// How long a connection waits on another writer's lock before `SQLITE_BUSY`:
/// the committer, the queues and the CLI share one database file.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates one stage's tables and indexes; idempotent (`IF NOT EXISTS`).
pub type CreateFn = fn(&Connection) -> rusqlite::Result<()>;

/// One step of the schema: the table it is named for and the stage
/// function that creates it.
#[derive(Clone, Copy)]
pub struct SchemaStep {
    pub table: &'static str,
    pub create: CreateFn,
}

impl std::fmt::Debug for SchemaStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaStep")
            .field("table", &self.table)
            .finish()
    }
}

/// Opens (creating if needed) the database at `path` with the connection
/// policy durability needs: WAL, `synchronous = FULL` (a committed
/// transaction is on disk when `commit` returns), foreign keys on, and
/// [`BUSY_TIMEOUT`]. Creates no table.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Runs `steps` in order on `conn`.
pub fn create_all(conn: &Connection, steps: &[SchemaStep]) -> rusqlite::Result<()> {
    for step in steps {
        (step.create)(conn)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_sets_the_durability_policy() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db.sqlite")).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "FULL");
        assert_eq!(fk, 1);
    }

    #[test]
    fn create_all_runs_every_step_in_order() {
        fn first(conn: &Connection) -> rusqlite::Result<()> {
            conn.execute_batch("CREATE TABLE a (x INTEGER PRIMARY KEY);")
        }
        fn second(conn: &Connection) -> rusqlite::Result<()> {
            // Fails unless `first` ran before it.
            conn.execute_batch("CREATE TABLE b (x INTEGER REFERENCES a (x));")?;
            conn.execute_batch("INSERT INTO a VALUES (1); INSERT INTO b VALUES (1);")
        }
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db.sqlite")).unwrap();
        let steps = [
            SchemaStep {
                table: "a",
                create: first,
            },
            SchemaStep {
                table: "b",
                create: second,
            },
        ];
        create_all(&conn, &steps).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM b", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
