//! The SQLite index: one row per stored instance.
//!
//! An instance is identified by (site, SOP Instance UID): each site has its
//! own namespace, so a UID another site holds is never looked up, replaced
//! or revealed by a write (see `docs/conformance.md`, "Instance identity
//! across sites"). Schema 1 keyed rows by UID alone; [`open_migrating`]
//! migrates it (`migrate`), given the tables of the stages above the store
//! whose keys changed (`app::schema` passes them).
//!
//! Connections follow the policy of [`crate::db::open`]: WAL mode with
//! `synchronous = FULL`, so a committed transaction is on disk when `commit`
//! returns: the committer relies on that before it acknowledges. Readers (QIDO-RS, the CLI, tests) open their own
//! connections; WAL lets them read while the committer writes.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::attributes::IndexedAttributes;
use crate::db::SchemaStep;

mod migrate;

/// What the index records about where and how an instance arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    pub attributes: IndexedAttributes,
    pub site: String,
    pub calling_ae: String,
    pub protocol: String,
    pub received_at: String,
    pub transfer_syntax_uid: String,
    pub file_size: u64,
    pub sha256: String,
    /// Relative to the data directory.
    pub path: String,
}

/// The small part of a row the committer needs to decide about a duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingInstance {
    pub sha256: String,
    pub path: String,
    pub file_size: u64,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid        TEXT NOT NULL,
    sop_class_uid           TEXT NOT NULL,
    study_instance_uid      TEXT NOT NULL,
    series_instance_uid     TEXT NOT NULL,
    instance_number         INTEGER,
    patient_id              TEXT,
    patient_name            TEXT,
    patient_birth_date      TEXT,
    patient_sex             TEXT,
    study_date              TEXT,
    study_time              TEXT,
    accession_number        TEXT,
    study_description       TEXT,
    study_id                TEXT,
    referring_physician_name TEXT,
    modality                TEXT,
    series_number           INTEGER,
    series_description      TEXT,
    body_part_examined      TEXT,
    protocol_name           TEXT,
    manufacturer            TEXT,
    manufacturer_model_name TEXT,
    station_name            TEXT,
    institution_name        TEXT,
    series_date             TEXT,
    series_time             TEXT,
    rows                    INTEGER,
    columns                 INTEGER,
    bits_allocated          INTEGER,
    number_of_frames        INTEGER,
    site                    TEXT NOT NULL,
    calling_ae              TEXT NOT NULL,
    protocol                TEXT NOT NULL,
    received_at             TEXT NOT NULL,
    transfer_syntax_uid     TEXT NOT NULL,
    file_size               INTEGER NOT NULL,
    sha256                  TEXT NOT NULL,
    path                    TEXT NOT NULL,
    PRIMARY KEY (site, sop_instance_uid)
);
CREATE INDEX IF NOT EXISTS instances_study ON instances (study_instance_uid);
CREATE INDEX IF NOT EXISTS instances_series ON instances (series_instance_uid);
CREATE INDEX IF NOT EXISTS instances_patient ON instances (patient_id);
CREATE INDEX IF NOT EXISTS instances_study_date ON instances (study_date);
CREATE INDEX IF NOT EXISTS instances_site ON instances (site, received_at);
CREATE INDEX IF NOT EXISTS instances_accession ON instances (accession_number);
CREATE INDEX IF NOT EXISTS instances_modality ON instances (modality);
-- A reader allowed several sites sees one copy per UID (see
-- `dicomweb::auth::Visibility`): it looks for the other copies by UID.
CREATE INDEX IF NOT EXISTS instances_sop ON instances (sop_instance_uid);
"#;

/// Version of the schema above, kept in `PRAGMA user_version`. A database
/// of version 1 is migrated (`migrate`); any other version is refused
/// rather than misread.
pub const SCHEMA_VERSION: i64 = 2;

/// Creates the `instances` table and its indexes if they do not exist.
fn create_instances(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// The tables the store itself writes, created by every open, in order:
/// instances, the series arrivals the committer records with them, and the
/// audit trail its duplicate decisions append to.
const STORE_STEPS: &[SchemaStep] = &[
    SchemaStep {
        table: "instances",
        create: create_instances,
    },
    SchemaStep {
        table: "series_activity",
        create: super::activity::create_schema,
    },
    SchemaStep {
        table: "audit",
        create: crate::audit::create_schema,
    },
];

/// Opens (creating if needed) the index with the connection policy of
/// [`crate::db::open`] and creates the store's own tables. A schema 1 index
/// is refused here, never half-migrated: `app::schema::open_index`, run at
/// start-up and by the CLI commands that open the index, migrates it first.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    open_migrating(path, None)
}

/// Like [`open`], and migrates a schema 1 index in one transaction, first
/// the store's tables and then `rekeyed`, the tables of the stages above
/// whose keys changed. `None` refuses to migrate.
pub fn open_migrating(path: &Path, rekeyed: Option<&[SchemaStep]>) -> rusqlite::Result<Connection> {
    let mut conn = crate::db::open(path)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let has_tables: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'instances')",
        [],
        |r| r.get(0),
    )?;
    let needs_migration = has_tables && version == migrate::FROM_VERSION;
    match rekeyed {
        Some(rekeyed) if needs_migration => migrate::to_current(&mut conn, rekeyed)?,
        _ if has_tables && version != SCHEMA_VERSION => {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
                Some(format!(
                    "index schema version {version}, this build expects {SCHEMA_VERSION}"
                )),
            ));
        }
        _ => {}
    }
    crate::db::create_all(&conn, STORE_STEPS)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(conn)
}

/// `site`'s copy of an instance, if it holds one. Another site's copy of the
/// same UID is never returned: duplicates are decided within a site.
pub fn find(
    conn: &Connection,
    site: &str,
    sop_instance_uid: &str,
) -> rusqlite::Result<Option<ExistingInstance>> {
    conn.query_row(
        "SELECT sha256, path, file_size FROM instances WHERE site = ?1 AND sop_instance_uid = ?2",
        [site, sop_instance_uid],
        |r| {
            Ok(ExistingInstance {
                sha256: r.get(0)?,
                path: r.get(1)?,
                file_size: r.get::<_, i64>(2)? as u64,
            })
        },
    )
    .optional()
}

/// Inserts or replaces the row for (`row.site`, `row.attributes.sop_instance_uid`).
pub fn upsert(tx: &Transaction<'_>, row: &IndexRow) -> rusqlite::Result<()> {
    let a = &row.attributes;
    tx.execute(
        r#"INSERT OR REPLACE INTO instances (
            sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid,
            instance_number, patient_id, patient_name, patient_birth_date, patient_sex,
            study_date, study_time, accession_number, study_description, study_id,
            referring_physician_name, modality, series_number, series_description,
            body_part_examined, protocol_name, manufacturer, manufacturer_model_name,
            station_name, institution_name, site, calling_ae, protocol, received_at,
            transfer_syntax_uid, file_size, sha256, path,
            series_date, series_time, rows, columns, bits_allocated, number_of_frames
        ) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                  ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30,
                  ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38)"#,
        params![
            a.sop_instance_uid,
            a.sop_class_uid,
            a.study_instance_uid,
            a.series_instance_uid,
            a.instance_number,
            a.patient_id,
            a.patient_name,
            a.patient_birth_date,
            a.patient_sex,
            a.study_date,
            a.study_time,
            a.accession_number,
            a.study_description,
            a.study_id,
            a.referring_physician_name,
            a.modality,
            a.series_number,
            a.series_description,
            a.body_part_examined,
            a.protocol_name,
            a.manufacturer,
            a.manufacturer_model_name,
            a.station_name,
            a.institution_name,
            row.site,
            row.calling_ae,
            row.protocol,
            row.received_at,
            row.transfer_syntax_uid,
            row.file_size as i64,
            row.sha256,
            row.path,
            a.series_date,
            a.series_time,
            a.rows,
            a.columns,
            a.bits_allocated,
            a.number_of_frames,
        ],
    )?;
    Ok(())
}

/// Where one indexed instance's file is, for reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPath {
    pub site: String,
    pub sop_instance_uid: String,
    /// Relative to the data directory.
    pub path: String,
    pub file_size: u64,
}

/// Every row's site, UID, path and size.
pub fn all_paths(conn: &Connection) -> rusqlite::Result<Vec<IndexedPath>> {
    let mut stmt = conn.prepare("SELECT site, sop_instance_uid, path, file_size FROM instances")?;
    let rows = stmt.query_map([], |r| {
        Ok(IndexedPath {
            site: r.get(0)?,
            sop_instance_uid: r.get(1)?,
            path: r.get(2)?,
            file_size: r.get::<_, i64>(3)? as u64,
        })
    })?;
    rows.collect()
}

/// Removes `site`'s copy of an instance; other sites' copies stay.
pub fn delete(tx: &Transaction<'_>, site: &str, sop_instance_uid: &str) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM instances WHERE site = ?1 AND sop_instance_uid = ?2",
        [site, sop_instance_uid],
    )?;
    Ok(())
}

pub fn count(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM instances", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}
