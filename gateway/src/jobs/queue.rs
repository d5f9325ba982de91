//! The durable job queue: one row per (site, series or instance, model
//! version), in the index database. The site is part of the key because a
//! series is identified by (site, UID): two sites' copies of one series
//! are two series, with their own jobs and results.
//!
//! Jobs are inserted by the assembler in the same transaction that marks a
//! series dispatched, claimed by runners (`queued` → `running`), and end
//! `done` or `failed`. A job left `running` by a crash is queued again at
//! start-up; the runner makes re-running it harmless (the result's UID is
//! derived from the job's key, and a stored result is not made twice).

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::Serialize;

use crate::models::ModelId;
use crate::route::Level;

const SCHEMA: &str = r#"
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
    -- columns below were added after the first release: see MIGRATIONS
    purpose             TEXT NOT NULL DEFAULT 'production',
    version_source      TEXT,
    served_model        TEXT,
    served_version      TEXT,
    step_reason         TEXT,
    comparison          TEXT,
    -- bounded scanner label (telemetry::scanner), for per-scanner reports
    scanner             TEXT,
    -- 1 when every image's scores came from the result cache
    cache_hit           INTEGER,
    -- engine time of the model that served, all images
    inference_ms        INTEGER,
    UNIQUE (site, series_instance_uid, sop_instance_uid, model, version)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, not_before_ms, id);
CREATE INDEX IF NOT EXISTS jobs_study ON jobs (study_instance_uid);
"#;

/// Indexes on columns added by [`MIGRATIONS`], created after them.
const LATE_INDEXES: &str =
    "CREATE INDEX IF NOT EXISTS jobs_site_finished ON jobs (site, finished_ms);";

/// Columns added since the table was first created, as `ADD COLUMN`
/// clauses: an index written by an earlier build gains them at start-up.
const MIGRATIONS: &[(&str, &str)] = &[
    ("purpose", "purpose TEXT NOT NULL DEFAULT 'production'"),
    ("version_source", "version_source TEXT"),
    ("served_model", "served_model TEXT"),
    ("served_version", "served_version TEXT"),
    ("step_reason", "step_reason TEXT"),
    ("comparison", "comparison TEXT"),
    ("scanner", "scanner TEXT"),
    ("cache_hit", "cache_hit INTEGER"),
    ("inference_ms", "inference_ms INTEGER"),
];

pub fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    let existing: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('jobs')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (column, definition) in MIGRATIONS {
        if !existing.iter().any(|c| c == column) {
            conn.execute_batch(&format!("ALTER TABLE jobs ADD COLUMN {definition}"))?;
        }
    }
    conn.execute_batch(LATE_INDEXES)
}

/// Why a job exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPurpose {
    /// The route's result: stored in the study and forwarded.
    Production,
    /// A candidate version run beside production on the same images: its
    /// findings are recorded and compared, never stored in the study or
    /// forwarded, so no clinician sees them.
    Shadow,
}

impl JobPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            JobPurpose::Production => "production",
            JobPurpose::Shadow => "shadow",
        }
    }

    fn parse(text: &str) -> Option<JobPurpose> {
        match text {
            "production" => Some(JobPurpose::Production),
            "shadow" => Some(JobPurpose::Shadow),
            _ => None,
        }
    }
}

/// A job as the assembler plans it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub level: Level,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    /// The instance, for instance-level routes.
    pub sop_instance_uid: Option<String>,
    pub site: String,
    /// A bounded label (see `telemetry::modality_label`).
    pub modality: String,
    /// A bounded label (see `telemetry::ScannerLabels`).
    pub scanner: String,
    pub route: String,
    pub model: ModelId,
    /// Why this version (`config`, `pinned`, `promoted`, `canary`, `shadow`).
    pub version_source: &'static str,
    pub purpose: JobPurpose,
    pub destinations: Vec<String>,
    /// When the series' last instance arrived (Unix ms), for end-to-end latency.
    pub ready_after_ms: i64,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub level: Level,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: Option<String>,
    pub site: String,
    pub modality: String,
    pub scanner: String,
    pub route: String,
    /// The version planned at dispatch; a fallback step may serve instead.
    pub model: ModelId,
    pub purpose: JobPurpose,
    pub destinations: Vec<String>,
    /// Including the current one.
    pub attempts: u32,
    pub ready_after_ms: i64,
}

impl Job {
    /// What identifies the job's work: the same key always yields the same
    /// result UID, which is what makes a re-run after a crash harmless. The
    /// site is part of it: two sites' copies of a series may differ, and
    /// their results must not share a UID.
    pub fn key(&self) -> [String; 5] {
        [
            self.site.clone(),
            self.series_instance_uid.clone(),
            self.sop_instance_uid.clone().unwrap_or_default(),
            self.model.to_string(),
            self.route.clone(),
        ]
    }
}

/// How a job ended, recorded on its row.
#[derive(Debug, Clone)]
pub struct JobCompletion {
    /// The model that produced the findings (`None`: a terminal step).
    pub served_by: Option<ServedBy>,
    /// `primary`, `fallback`, `store-only` or `forward-unprocessed`.
    pub step: String,
    /// Why earlier steps were given up; `None` for the primary.
    pub step_reason: Option<String>,
    pub findings: Option<serde_json::Value>,
    /// The stored result (`None`: a terminal step, or a shadow job).
    pub result_series_uid: Option<String>,
    pub result_sop_uid: Option<String>,
    /// Every image's scores came from the result cache.
    pub cache_hit: Option<bool>,
    /// Engine time of the model that served.
    pub inference_ms: Option<i64>,
}

/// Exactly what produced a result.
#[derive(Debug, Clone)]
pub struct ServedBy {
    pub model: ModelId,
    pub sha256: String,
    pub engine: String,
}

/// Inserts jobs that do not exist yet; returns how many were new.
pub fn insert_jobs(tx: &Transaction<'_>, jobs: &[NewJob]) -> rusqlite::Result<usize> {
    let now = crate::time::now_rfc3339();
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO jobs
            (level, study_instance_uid, series_instance_uid, sop_instance_uid, site, modality,
             route, model, version, destinations, state, ready_after_ms, created_at, updated_at,
             purpose, version_source, scanner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'queued', ?11, ?12, ?12, ?13, ?14, ?15)",
    )?;
    let mut created = 0;
    for job in jobs {
        let destinations =
            serde_json::to_string(&job.destinations).unwrap_or_else(|_| "[]".to_string());
        created += stmt.execute(params![
            job.level.as_str(),
            job.study_instance_uid,
            job.series_instance_uid,
            job.sop_instance_uid.as_deref().unwrap_or(""),
            job.site,
            job.modality,
            job.route,
            job.model.name,
            job.model.version.to_string(),
            destinations,
            job.ready_after_ms,
            now,
            job.purpose.as_str(),
            job.version_source,
            job.scanner,
        ])?;
    }
    Ok(created)
}

/// Jobs a crash left `running` go back to the queue.
pub fn requeue_interrupted(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE jobs SET state = 'queued', updated_at = ?1 WHERE state = 'running'",
        params![crate::time::now_rfc3339()],
    )
}

/// Takes the oldest due job, marking it running.
pub fn claim(conn: &Connection, now_ms: i64) -> rusqlite::Result<Option<Job>> {
    conn.query_row(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?2,
             started_ms = ?1
         WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND not_before_ms <= ?1
                     ORDER BY not_before_ms, id LIMIT 1)
         RETURNING id, level, study_instance_uid, series_instance_uid, sop_instance_uid, site,
                   modality, route, model, version, destinations, attempts, ready_after_ms,
                   purpose, COALESCE(scanner, 'other')",
        params![now_ms, crate::time::now_rfc3339()],
        job_from_row,
    )
    .optional()
}

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let level: String = r.get(1)?;
    let sop: String = r.get(4)?;
    let version: String = r.get(9)?;
    let destinations: String = r.get(10)?;
    let purpose: String = r.get(13)?;
    let bad = |what: String| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            Box::new(std::io::Error::other(what)),
        )
    };
    Ok(Job {
        id: r.get(0)?,
        level: match level.as_str() {
            "series" => Level::Series,
            "instance" => Level::Instance,
            other => return Err(bad(format!("job level `{other}`"))),
        },
        study_instance_uid: r.get(2)?,
        series_instance_uid: r.get(3)?,
        sop_instance_uid: (!sop.is_empty()).then_some(sop),
        site: r.get(5)?,
        modality: r.get(6)?,
        scanner: r.get(14)?,
        route: r.get(7)?,
        model: ModelId {
            name: r.get(8)?,
            version: version.parse().map_err(bad)?,
        },
        purpose: JobPurpose::parse(&purpose)
            .ok_or_else(|| bad(format!("job purpose `{purpose}`")))?,
        destinations: serde_json::from_str(&destinations).map_err(|e| bad(e.to_string()))?,
        attempts: r.get(11)?,
        ready_after_ms: r.get(12)?,
    })
}

pub fn complete(tx: &Transaction<'_>, id: i64, done: &JobCompletion) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE jobs SET state = 'done', updated_at = ?2, engine = ?3, model_sha256 = ?4,
             step = ?5, findings = ?6, result_series_uid = ?7, result_sop_uid = ?8,
             error_kind = NULL, error = NULL, finished_ms = ?9, served_model = ?10,
             served_version = ?11, step_reason = ?12, cache_hit = ?13, inference_ms = ?14
         WHERE id = ?1",
        params![
            id,
            crate::time::now_rfc3339(),
            done.served_by.as_ref().map(|s| s.engine.as_str()),
            done.served_by.as_ref().map(|s| s.sha256.as_str()),
            done.step,
            done.findings.as_ref().map(ToString::to_string),
            done.result_series_uid,
            done.result_sop_uid,
            crate::time::unix_millis(),
            done.served_by.as_ref().map(|s| s.model.name.as_str()),
            done.served_by.as_ref().map(|s| s.model.version.to_string()),
            done.step_reason,
            done.cache_hit,
            done.inference_ms,
        ],
    )?;
    Ok(())
}

/// Records a failure: `retry_at_ms` queues the job again, `None` ends it.
pub fn fail(
    conn: &Connection,
    id: i64,
    kind: &str,
    error: &str,
    retry_at_ms: Option<i64>,
) -> rusqlite::Result<()> {
    let (state, not_before) = match retry_at_ms {
        Some(at) => ("queued", at),
        None => ("failed", 0),
    };
    conn.execute(
        "UPDATE jobs SET state = ?2, not_before_ms = ?3, error_kind = ?4, error = ?5, updated_at = ?6
         WHERE id = ?1",
        params![id, state, not_before, kind, error, crate::time::now_rfc3339()],
    )?;
    Ok(())
}

/// A job as the results API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: i64,
    pub level: String,
    pub series_instance_uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sop_instance_uid: Option<String>,
    pub site: String,
    pub route: String,
    /// `production`, or `shadow` (findings only, never stored in the study).
    pub purpose: String,
    /// The version planned at dispatch, and why it was chosen.
    pub model: String,
    pub version: String,
    pub version_source: Option<String>,
    /// The model version that produced the findings (a fallback may
    /// differ from the planned one); absent for terminal steps.
    pub served_model: Option<String>,
    pub served_version: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub created_at: String,
    pub updated_at: String,
    pub engine: Option<String>,
    pub model_sha256: Option<String>,
    pub step: Option<String>,
    pub step_reason: Option<String>,
    pub findings: Option<serde_json::Value>,
    /// A shadow job's agreement with production, label by label.
    pub comparison: Option<serde_json::Value>,
    pub result_series_uid: Option<String>,
    pub result_sop_uid: Option<String>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
}

/// The jobs of one study, limited in SQL to the given sites (`None`: all).
pub fn jobs_of_study(
    conn: &Connection,
    study_instance_uid: &str,
    sites: Option<&[String]>,
) -> rusqlite::Result<Vec<JobRecord>> {
    let site_filter = match sites {
        None => String::new(),
        Some(sites) => format!(" AND site IN ({})", vec!["?"; sites.len()].join(", ")),
    };
    let sql = format!(
        "SELECT id, level, series_instance_uid, sop_instance_uid, site, route, model, version,
                state, attempts, created_at, updated_at, engine, model_sha256, step, findings,
                result_series_uid, result_sop_uid, error_kind, error, purpose, version_source,
                served_model, served_version, step_reason, comparison
         FROM jobs WHERE study_instance_uid = ?{site_filter} ORDER BY id"
    );
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&study_instance_uid];
    values.extend(
        sites
            .unwrap_or_default()
            .iter()
            .map(|s| s as &dyn rusqlite::ToSql),
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(values.as_slice(), |r| {
        let sop: String = r.get(3)?;
        let findings: Option<String> = r.get(15)?;
        let comparison: Option<String> = r.get(25)?;
        Ok(JobRecord {
            id: r.get(0)?,
            level: r.get(1)?,
            series_instance_uid: r.get(2)?,
            sop_instance_uid: (!sop.is_empty()).then_some(sop),
            site: r.get(4)?,
            route: r.get(5)?,
            purpose: r.get(20)?,
            model: r.get(6)?,
            version: r.get(7)?,
            version_source: r.get(21)?,
            served_model: r.get(22)?,
            served_version: r.get(23)?,
            state: r.get(8)?,
            attempts: r.get(9)?,
            created_at: r.get(10)?,
            updated_at: r.get(11)?,
            engine: r.get(12)?,
            model_sha256: r.get(13)?,
            step: r.get(14)?,
            step_reason: r.get(24)?,
            findings: findings.and_then(|f| serde_json::from_str(&f).ok()),
            comparison: comparison.and_then(|f| serde_json::from_str(&f).ok()),
            result_series_uid: r.get(16)?,
            result_sop_uid: r.get(17)?,
            error_kind: r.get(18)?,
            error: r.get(19)?,
        })
    })?;
    rows.collect()
}

/// Jobs by state, for the queue-depth gauge.
pub fn counts(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// The finished job of the other purpose on the same work (the production
/// job of a shadow job, or the reverse): its id and findings.
pub fn counterpart_findings(
    conn: &Connection,
    job: &Job,
) -> rusqlite::Result<Option<(i64, serde_json::Value)>> {
    let other = match job.purpose {
        JobPurpose::Production => JobPurpose::Shadow,
        JobPurpose::Shadow => JobPurpose::Production,
    };
    let found: Option<(i64, Option<String>)> = conn
        .query_row(
            "SELECT id, findings FROM jobs
             WHERE site = ?5 AND series_instance_uid = ?1 AND sop_instance_uid = ?2
               AND route = ?3 AND purpose = ?4 AND state = 'done'
             ORDER BY id DESC LIMIT 1",
            params![
                job.series_instance_uid,
                job.sop_instance_uid.as_deref().unwrap_or(""),
                job.route,
                other.as_str(),
                job.site
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(found.and_then(|(id, findings)| {
        findings
            .and_then(|f| serde_json::from_str(&f).ok())
            .map(|f| (id, f))
    }))
}

/// Records a shadow job's comparison with production.
pub fn set_comparison(
    conn: &Connection,
    shadow_job: i64,
    comparison: &serde_json::Value,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE jobs SET comparison = ?2 WHERE id = ?1",
        params![shadow_job, comparison.to_string()],
    )?;
    Ok(())
}
