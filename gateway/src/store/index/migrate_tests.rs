//! Schema 1 → 2 on a database written by schema 1: every row and path
//! kept, the new keys in force, and a second open a no-op.

use rusqlite::types::Value;

use super::*;
use crate::store::index;

/// The tables schema 1 rebuilt here, as the first release wrote them (the
/// `jobs` table before its later columns, which the rebuild fills with
/// their defaults).
const SCHEMA_1: &str = r#"
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid        TEXT PRIMARY KEY NOT NULL,
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
    path                    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_study ON instances (study_instance_uid);
CREATE INDEX IF NOT EXISTS instances_series ON instances (series_instance_uid);
CREATE INDEX IF NOT EXISTS instances_patient ON instances (patient_id);
CREATE INDEX IF NOT EXISTS instances_study_date ON instances (study_date);
CREATE INDEX IF NOT EXISTS instances_site ON instances (site, received_at);
CREATE INDEX IF NOT EXISTS instances_accession ON instances (accession_number);
CREATE INDEX IF NOT EXISTS instances_modality ON instances (modality);
CREATE TABLE IF NOT EXISTS series_activity (
    series_instance_uid TEXT PRIMARY KEY NOT NULL,
    study_instance_uid  TEXT NOT NULL,
    site                TEXT NOT NULL,
    calling_ae          TEXT NOT NULL,
    first_received_ms   INTEGER NOT NULL,
    last_received_ms    INTEGER NOT NULL,
    instances           INTEGER NOT NULL,
    -- 'assembling' until routed, then 'dispatched'
    state               TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS series_activity_ready ON series_activity (state, last_received_ms);
CREATE TABLE IF NOT EXISTS jobs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    level               TEXT NOT NULL,
    study_instance_uid  TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    -- '' for a series-level job, so the unique key below works
    sop_instance_uid    TEXT NOT NULL,
    site                TEXT NOT NULL,
    modality            TEXT NOT NULL,
    route               TEXT NOT NULL,
    model               TEXT NOT NULL,
    version             TEXT NOT NULL,
    destinations        TEXT NOT NULL,
    state               TEXT NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    not_before_ms       INTEGER NOT NULL DEFAULT 0,
    ready_after_ms      INTEGER NOT NULL,
    -- last claim and completion (Unix ms), for latency and throughput
    started_ms          INTEGER,
    finished_ms         INTEGER,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    engine              TEXT,
    model_sha256        TEXT,
    step                TEXT,
    findings            TEXT,
    result_series_uid   TEXT,
    result_sop_uid      TEXT,
    error_kind          TEXT,
    error               TEXT,
    UNIQUE (series_instance_uid, sop_instance_uid, model, version)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, not_before_ms, id);
CREATE INDEX IF NOT EXISTS jobs_study ON jobs (study_instance_uid);
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
    UNIQUE (destination, sop_instance_uid)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, destination, next_attempt_at);
"#;

const ROWS_1: &str = r#"
INSERT INTO instances (sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid,
    instance_number, patient_id, modality, site, calling_ae, protocol, received_at,
    transfer_syntax_uid, file_size, sha256, path)
VALUES
    ('1.2.3.1.1', '1.2.840.10008.5.1.4.1.1.2', '1.2.3', '1.2.3.1', 1, 'P1', 'CT', 'north',
     'NORTH-SCU', 'dimse', '2026-01-01T00:00:00Z', '1.2.840.10008.1.2.1', 10, 'aa',
     'instances/ab/abcd/0001.dcm'),
    ('1.2.3.1.2', '1.2.840.10008.5.1.4.1.1.2', '1.2.3', '1.2.3.1', 2, 'P1', 'CT', 'north',
     'NORTH-SCU', 'stow', '2026-01-01T00:00:01Z', '1.2.840.10008.1.2.1', 11, 'bb',
     'instances/ab/abcd/0002.dcm');
INSERT INTO series_activity VALUES ('1.2.3.1', '1.2.3', 'north', 'NORTH-SCU', 5, 6, 2, 'dispatched');
INSERT INTO jobs (id, level, study_instance_uid, series_instance_uid, sop_instance_uid, site,
    modality, route, model, version, destinations, state, ready_after_ms, created_at, updated_at)
VALUES
    (5, 'series', '1.2.3', '1.2.3.1', '', 'north', 'CT', 'ct-head', 'm', '1.0.0', '[]', 'done',
     6, '2026-01-01T00:00:02Z', '2026-01-01T00:00:03Z'),
    (9, 'series', '1.2.3', '1.2.3.1', '', 'north', 'CT', 'ct-head', 'm', '2.0.0', '["pacs"]',
     'queued', 6, '2026-01-01T00:00:02Z', '2026-01-01T00:00:02Z');
-- Jobs 10 to 12 existed once and were deleted: their ids are never reused.
UPDATE sqlite_sequence SET seq = 12 WHERE name = 'jobs';
INSERT INTO deliveries (id, destination, sop_class_uid, sop_instance_uid, transfer_syntax_uid,
    path, origin, state, attempts, next_attempt_at, created_at, updated_at)
VALUES (3, 'pacs', '1.2.840.10008.5.1.4.1.1.88.22', '1.2.9', '1.2.840.10008.1.2.1',
    'instances/cd/ef/0009.dcm', 'job:5', 'delivered', 1, 0, 'x', 'y');
PRAGMA user_version = 1;
"#;

fn schema_1(path: &std::path::Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(SCHEMA_1).unwrap();
    conn.execute_batch(ROWS_1).unwrap();
}

fn all_rows(conn: &Connection, sql: &str) -> Vec<Vec<Value>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let columns = stmt.column_count();
    stmt.query_map([], |r| (0..columns).map(|i| r.get(i)).collect())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

const INSTANCES: &str = "SELECT * FROM instances ORDER BY sop_instance_uid";
const JOBS: &str = "SELECT id, level, series_instance_uid, site, model, version, destinations, \
    state, created_at, updated_at FROM jobs ORDER BY id";
const DELIVERIES: &str = "SELECT * FROM deliveries ORDER BY id";
const SERIES: &str = "SELECT * FROM series_activity";

fn index_names(conn: &Connection, table: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL ORDER BY name")
        .unwrap();
    stmt.query_map([table], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_schema_1_index_is_migrated_with_every_row_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    schema_1(&path);
    let before = Connection::open(&path).unwrap();
    let instances = all_rows(&before, INSTANCES);
    let jobs = all_rows(&before, JOBS);
    let deliveries = all_rows(&before, DELIVERIES);
    let series = all_rows(&before, SERIES);
    assert_eq!(instances.len(), 2);
    drop(before);

    let conn = crate::app::schema::open_index(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, index::SCHEMA_VERSION);
    assert_eq!(all_rows(&conn, INSTANCES), instances, "rows and paths kept");
    assert_eq!(all_rows(&conn, JOBS), jobs);
    assert_eq!(all_rows(&conn, DELIVERIES), deliveries);
    assert_eq!(all_rows(&conn, SERIES), series);
    let purpose: String = conn
        .query_row("SELECT purpose FROM jobs WHERE id = 5", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        purpose, "production",
        "a column schema 1 lacked has its default"
    );
    let kept = index::find(&conn, "north", "1.2.3.1.1").unwrap().unwrap();
    assert_eq!(kept.path, "instances/ab/abcd/0001.dcm");

    // The new keys: another site may hold the same UIDs, series and jobs.
    conn.execute_batch(
        "INSERT INTO instances (sop_instance_uid, sop_class_uid, study_instance_uid,
             series_instance_uid, site, calling_ae, protocol, received_at,
             transfer_syntax_uid, file_size, sha256, path)
         SELECT sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid,
             'south', calling_ae, protocol, received_at, transfer_syntax_uid, file_size,
             sha256, path || '.south' FROM instances;
         INSERT INTO series_activity SELECT series_instance_uid, study_instance_uid, 'south',
             calling_ae, first_received_ms, last_received_ms, instances, state
             FROM series_activity;
         INSERT INTO jobs (level, study_instance_uid, series_instance_uid, sop_instance_uid,
             site, modality, route, model, version, destinations, state, ready_after_ms,
             created_at, updated_at)
         SELECT level, study_instance_uid, series_instance_uid, sop_instance_uid, 'south',
             modality, route, model, version, destinations, state, ready_after_ms,
             created_at, updated_at FROM jobs WHERE id = 5;
         INSERT INTO deliveries (destination, sop_class_uid, sop_instance_uid,
             transfer_syntax_uid, path, origin, state, next_attempt_at, created_at, updated_at)
         SELECT destination, sop_class_uid, sop_instance_uid, transfer_syntax_uid,
             path || '.south', origin, 'pending', 0, 'x', 'y' FROM deliveries;",
    )
    .unwrap();
    assert_eq!(index::count(&conn).unwrap(), 4);
    let new_job: i64 = conn
        .query_row("SELECT MAX(id) FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(new_job, 13, "job ids continue after the deleted ones");
    assert!(
        conn.execute(
            "INSERT INTO instances (sop_instance_uid, sop_class_uid, study_instance_uid,
                 series_instance_uid, site, calling_ae, protocol, received_at,
                 transfer_syntax_uid, file_size, sha256, path)
             SELECT sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid,
                 site, calling_ae, protocol, received_at, transfer_syntax_uid, file_size,
                 sha256, path FROM instances WHERE site = 'north' LIMIT 1",
            [],
        )
        .is_err(),
        "(site, UID) is unique"
    );

    // Indexes belong to the new tables, none left behind.
    assert!(index_names(&conn, "instances").contains(&"instances_sop".to_string()));
    assert!(index_names(&conn, "instances").contains(&"instances_study".to_string()));
    assert!(index_names(&conn, "jobs").contains(&"jobs_site_finished".to_string()));
    let leftovers: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '%_schema1%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leftovers, 0);
    drop(conn);

    // Opening again changes nothing.
    let again = crate::app::schema::open_index(&path).unwrap();
    assert_eq!(index::count(&again).unwrap(), 4);
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    schema_1(&path);
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", index::SCHEMA_VERSION + 1)
        .unwrap();
    let refused = crate::app::schema::open_index(&path);
    assert!(refused.is_err());
    let conn = Connection::open(&path).unwrap();
    assert_eq!(all_rows(&conn, INSTANCES).len(), 2);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, index::SCHEMA_VERSION + 1);
}
