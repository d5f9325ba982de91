//! The SQL under the performance report: finished and pending jobs in the
//! window, and instances received, limited to the caller's sites in SQL.
//!
//! The `jobs` table has no scanner, cache or engine-time column yet. When
//! the runner adds them (`scanner`, `cache_hit`, `inference_ms`: see
//! docs/monitoring.md) they are used; until then the scanner comes from the
//! series' first indexed instance and the cache and inference figures are
//! absent. Which columns exist is read once per report from `PRAGMA
//! table_info`, so the same build works before and after the migration.

use rusqlite::{Connection, ToSql};

/// Rows read at most per report; beyond, the report says it is truncated.
pub const MAX_JOB_ROWS: usize = 500_000;

/// One job as the report needs it.
#[derive(Debug, Clone)]
pub(super) struct JobRow {
    pub site: String,
    pub route: String,
    pub model: String,
    pub version: String,
    pub state: String,
    pub attempts: i64,
    pub step: Option<String>,
    pub findings: Option<String>,
    pub ready_after_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// Source instances of the job (1 for an instance-level job).
    pub instances: i64,
    /// The `jobs.scanner` column, when it exists and is set.
    pub scanner: Option<String>,
    pub manufacturer: Option<String>,
    pub manufacturer_model_name: Option<String>,
    pub cache_hit: Option<bool>,
    pub inference_ms: Option<i64>,
}

/// Instances received in the window, grouped by raw header values (the
/// scanner label is folded afterwards, in Rust).
#[derive(Debug, Clone)]
pub(super) struct ReceivedGroup {
    pub site: String,
    pub modality: Option<String>,
    pub manufacturer: Option<String>,
    pub manufacturer_model_name: Option<String>,
    pub instances: i64,
    pub bytes: i64,
}

/// Which optional `jobs` columns this database has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobColumns {
    pub scanner: bool,
    pub cache_hit: bool,
    pub inference_ms: bool,
}

pub(super) fn job_columns(conn: &Connection) -> rusqlite::Result<JobColumns> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('jobs')")?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let has = |n: &str| names.iter().any(|c| c == n);
    Ok(JobColumns {
        scanner: has("scanner"),
        cache_hit: has("cache_hit"),
        inference_ms: has("inference_ms"),
    })
}

fn site_filter(column: &str, sites: Option<&[String]>) -> String {
    match sites {
        None => String::new(),
        Some([]) => " AND 0".into(),
        Some(sites) => format!(" AND {column} IN ({})", vec!["?"; sites.len()].join(", ")),
    }
}

/// Jobs whose last event (finish, else claim, else readiness) is in
/// `[since_ms, until_ms)`; at most `MAX_JOB_ROWS + 1` (to detect truncation).
pub(super) fn jobs_in_window(
    conn: &Connection,
    columns: JobColumns,
    sites: Option<&[String]>,
    since_ms: i64,
    until_ms: i64,
) -> rusqlite::Result<Vec<JobRow>> {
    let optional = |present: bool, column: &str| {
        if present {
            format!("j.{column}")
        } else {
            "NULL".to_string()
        }
    };
    let sql = format!(
        "SELECT j.site, j.route, j.model, j.version, j.state, j.attempts, j.step, j.findings,
                j.ready_after_ms, j.started_ms, j.finished_ms,
                CASE WHEN j.sop_instance_uid != '' THEN 1 ELSE
                    (SELECT COUNT(*) FROM instances i
                     WHERE i.series_instance_uid = j.series_instance_uid
                       AND i.site = j.site) END,
                {scanner},
                (SELECT i.manufacturer FROM instances i
                 WHERE i.series_instance_uid = j.series_instance_uid AND i.site = j.site
                 LIMIT 1),
                (SELECT i.manufacturer_model_name FROM instances i
                 WHERE i.series_instance_uid = j.series_instance_uid AND i.site = j.site
                 LIMIT 1),
                {cache_hit}, {inference_ms}
         FROM jobs j
         WHERE COALESCE(j.finished_ms, j.started_ms, j.ready_after_ms) >= ?
           AND COALESCE(j.finished_ms, j.started_ms, j.ready_after_ms) < ?{filter}
         ORDER BY j.id
         LIMIT {limit}",
        scanner = optional(columns.scanner, "scanner"),
        cache_hit = optional(columns.cache_hit, "cache_hit"),
        inference_ms = optional(columns.inference_ms, "inference_ms"),
        filter = site_filter("j.site", sites),
        limit = MAX_JOB_ROWS + 1,
    );
    let mut values: Vec<&dyn ToSql> = vec![&since_ms, &until_ms];
    values.extend(sites.unwrap_or_default().iter().map(|s| s as &dyn ToSql));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(values.as_slice(), |r| {
        Ok(JobRow {
            site: r.get(0)?,
            route: r.get(1)?,
            model: r.get(2)?,
            version: r.get(3)?,
            state: r.get(4)?,
            attempts: r.get(5)?,
            step: r.get(6)?,
            findings: r.get(7)?,
            ready_after_ms: r.get(8)?,
            started_ms: r.get(9)?,
            finished_ms: r.get(10)?,
            instances: r.get(11)?,
            scanner: r.get(12)?,
            manufacturer: r.get(13)?,
            manufacturer_model_name: r.get(14)?,
            cache_hit: r.get::<_, Option<i64>>(15)?.map(|v| v != 0),
            inference_ms: r.get(16)?,
        })
    })?;
    rows.collect()
}

/// Instances received in the window (generated results excluded), by site,
/// modality and raw scanner attributes. `received_at` is RFC 3339 UTC with
/// microseconds everywhere, so text comparison orders it.
pub(super) fn received_in_window(
    conn: &Connection,
    sites: Option<&[String]>,
    since: &str,
    until: &str,
) -> rusqlite::Result<Vec<ReceivedGroup>> {
    let sql = format!(
        "SELECT site, modality, manufacturer, manufacturer_model_name, COUNT(*), SUM(file_size)
         FROM instances
         WHERE received_at >= ? AND received_at < ? AND protocol != ?{filter}
         GROUP BY site, modality, manufacturer, manufacturer_model_name",
        filter = site_filter("site", sites),
    );
    let generated = crate::store::GENERATED_PROTOCOL;
    let mut values: Vec<&dyn ToSql> = vec![&since, &until, &generated];
    values.extend(sites.unwrap_or_default().iter().map(|s| s as &dyn ToSql));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(values.as_slice(), |r| {
        Ok(ReceivedGroup {
            site: r.get(0)?,
            modality: r.get(1)?,
            manufacturer: r.get(2)?,
            manufacturer_model_name: r.get(3)?,
            instances: r.get(4)?,
            bytes: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
        })
    })?;
    rows.collect()
}
