//! The ordered list of schema steps for the index database, and the one
//! open that runs it. `app` sits above every stage, so this is the only
//! place that knows every stage's tables; each stage keeps its own
//! `create_schema`, the store creates its own tables (`store::index`) and
//! `db` holds the connection policy.
//!
//! Run at start-up before the store opens, and by the CLI commands that
//! open the index database (`tokens`, `admin-tokens`), so a fresh or a
//! schema 1 database gets every table, migrated, whoever opens it first.

use std::path::Path;

use rusqlite::Connection;

use crate::db::SchemaStep;

/// Every stage's tables, in the order they are created (after the store's
/// own, which `store::index::open` creates).
pub const STEPS: &[SchemaStep] = &[
    SchemaStep {
        table: "audit",
        create: crate::audit::create_schema,
    },
    SchemaStep {
        table: "deliveries",
        create: crate::egress::create_schema,
    },
    SchemaStep {
        table: "tokens",
        create: crate::auth::create_schema,
    },
    SchemaStep {
        table: "series_activity",
        create: crate::store::activity::create_schema,
    },
    SchemaStep {
        table: "jobs",
        create: crate::jobs::queue::create_schema,
    },
    SchemaStep {
        table: "route_state",
        create: crate::route::create_state_schema,
    },
    SchemaStep {
        table: "admin_tokens",
        create: crate::admin::tokens::create_schema,
    },
];

/// The tables of stages above the store whose keys changed in index schema
/// 2, rebuilt (after the store's own) when a schema 1 index is migrated.
pub const REKEYED_IN_SCHEMA_2: &[SchemaStep] = &[
    SchemaStep {
        table: "jobs",
        create: crate::jobs::queue::create_schema,
    },
    SchemaStep {
        table: "deliveries",
        create: crate::egress::create_schema,
    },
];

/// Opens the index database at `path`, migrates a schema 1 index, and
/// creates every stage's tables ([`STEPS`]).
pub fn open_index(path: &Path) -> rusqlite::Result<Connection> {
    let conn = crate::store::index::open_migrating(path, Some(REKEYED_IN_SCHEMA_2))?;
    crate::db::create_all(&conn, STEPS)?;
    Ok(conn)
}

/// [`open_index`] on the index of `data_dir`, creating the directory.
pub fn prepare_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    open_index(&crate::store::Layout::new(data_dir).index_path())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn a_fresh_index_gets_every_stage_table() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_index(&dir.path().join("index.sqlite")).unwrap();
        let have = tables(&conn);
        for step in STEPS.iter().chain(REKEYED_IN_SCHEMA_2) {
            assert!(
                have.iter().any(|t| t == step.table),
                "{} missing",
                step.table
            );
        }
        assert!(have.iter().any(|t| t == "instances"));
    }

    #[test]
    fn the_store_alone_refuses_a_schema_1_index_and_leaves_it_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        {
            let conn = crate::db::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE instances (sop_instance_uid TEXT PRIMARY KEY);")
                .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        assert!(crate::store::index::open(&path).is_err());
        let conn = crate::db::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
    }
}
