//! Runs a [`SearchPlan`] against the index in one read transaction.
//!
//! Two steps keep it fast on large indexes: first the matching entities of
//! the result level are found, grouped and ordered in SQL, and only one page
//! of their keys is taken; then the attributes and counts of just those
//! entities are aggregated (`GROUP BY` over the `instances_study` or
//! `instances_series` index), without the filters, so counts cover the
//! whole study or series the caller may see. Every statement carries the
//! caller's [`Visibility`], so another site's rows are never counted,
//! matched or returned, and of two readable sites' copies of one SOP
//! Instance UID only the one WADO-RS would return is.

use std::collections::HashMap;

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use super::catalog::{self, Level, Source};
use super::matching::{Sql, condition};
use super::plan::SearchPlan;
use crate::dicomweb::auth::Visibility;

/// The caller's site restriction.
pub type SiteCondition = Visibility;

/// Counts and modalities of one study.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyFacts {
    pub series: i64,
    pub instances: i64,
    pub modalities: Vec<String>,
}

/// One result: a study, a series or an instance.
#[derive(Debug, Clone)]
pub struct Found {
    pub study_uid: String,
    pub series_uid: String,
    pub sop_uid: String,
    /// Column values (the largest over the entity's instances for a study or series).
    pub columns: HashMap<&'static str, Value>,
    pub study: Option<StudyFacts>,
    pub series_instances: Option<i64>,
    /// Path, relative to the data directory, of one instance of the entity:
    /// where attributes outside the index are read from.
    pub representative: String,
}

impl Found {
    pub fn text(&self, column: &str) -> Option<&str> {
        match self.columns.get(column) {
            Some(Value::Text(s)) => Some(s),
            _ => None,
        }
    }
}

/// One page of results.
#[derive(Debug, Default)]
pub struct Page {
    pub results: Vec<Found>,
    /// Matches after this page, counted only when the server's limit cut
    /// the page short (the only case the response reports it).
    pub remaining: Option<u64>,
}

/// Runs `plan` for a caller restricted by `site`.
pub fn run(conn: &Connection, plan: &SearchPlan, site: &SiteCondition) -> rusqlite::Result<Page> {
    let tx = conn.unchecked_transaction()?;
    let (keys, more) = page_keys(&tx, plan, site)?;
    if keys.is_empty() {
        return Ok(Page::default());
    }
    let mut results = match plan.level {
        Level::Study => study_rows(&tx, site, &keys)?,
        Level::Series => series_rows(&tx, site, &keys)?,
        Level::Instance => instance_rows(&tx, site, &keys)?,
    };
    if plan.level > Level::Study && needs(plan, Level::Study, is_study_fact) {
        let studies: Vec<String> = distinct(results.iter().map(|r| &r.study_uid));
        let facts = study_facts(&tx, site, &studies)?;
        for row in &mut results {
            row.study = facts.get(&row.study_uid).cloned();
        }
    }
    if plan.level == Level::Instance
        && needs(plan, Level::Series, |s| s == Source::SeriesInstanceCount)
    {
        let series: Vec<String> = distinct(results.iter().map(|r| &r.series_uid));
        let counts = series_counts(&tx, site, &series)?;
        for row in &mut results {
            row.series_instances = counts.get(&row.series_uid).copied();
        }
    }
    let remaining = if more && plan.server_limited {
        let total = count_matches(&tx, plan, site)?;
        Some(total.saturating_sub(plan.offset + results.len() as u64))
    } else {
        None
    };
    Ok(Page { results, remaining })
}

fn is_study_fact(source: Source) -> bool {
    matches!(
        source,
        Source::ModalitiesInStudy | Source::StudySeriesCount | Source::StudyInstanceCount
    )
}

fn needs(plan: &SearchPlan, level: Level, source: impl Fn(Source) -> bool) -> bool {
    plan.returns
        .iter()
        .any(|tag| catalog::lookup(*tag).is_some_and(|a| a.level == level && source(a.source)))
}

fn distinct<'a>(values: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = values.cloned().collect();
    out.sort();
    out.dedup();
    out
}

/// The key column and the ordering of each level. For series and instances
/// the study date and time are the study's (its latest over the matching
/// rows, by window functions), so the results of one study stay together
/// even when its series disagree about study attributes. Ordering ends with the unique key, so pages are
/// stable (PS3.18 8.3.4.4.1: searches are idempotent).
fn level_shape(level: Level) -> (&'static str, &'static str) {
    match level {
        Level::Study => (
            "i.study_instance_uid",
            "MAX(i.study_date), MAX(i.study_time), i.study_instance_uid",
        ),
        Level::Series => (
            "i.series_instance_uid",
            "MAX(MAX(i.study_date)) OVER study, MAX(MAX(i.study_time)) OVER study, \
             MAX(i.study_instance_uid), MAX(i.series_number), i.series_instance_uid",
        ),
        Level::Instance => (
            "i.sop_instance_uid",
            "MAX(i.study_date) OVER study, MAX(i.study_time) OVER study, i.study_instance_uid, \
             MAX(i.series_number) OVER series, i.series_instance_uid, i.instance_number, \
             i.sop_instance_uid",
        ),
    }
}

/// The windows the orderings above name.
fn level_windows(level: Level) -> &'static str {
    match level {
        Level::Study => "",
        Level::Series => " WINDOW study AS (PARTITION BY MAX(i.study_instance_uid))",
        Level::Instance => {
            " WINDOW study AS (PARTITION BY i.study_instance_uid), \
             series AS (PARTITION BY i.series_instance_uid)"
        }
    }
}

/// `FROM instances AS i WHERE <site> AND <filters>`.
fn matching_rows(plan: &SearchPlan, site: &SiteCondition) -> Sql {
    let mut sql = Sql::default();
    sql.push(" FROM instances AS i WHERE ");
    push_site(&mut sql, site, "i");
    for filter in &plan.filters {
        let attribute = filter.attribute;
        let Some(column) = attribute.match_column() else {
            continue;
        };
        if attribute.source == Source::ModalitiesInStudy {
            // Studies with at least one matching series the caller may see;
            // uncorrelated, so SQLite builds the set once.
            let Some(cond) = condition(
                &format!("m.{column}"),
                attribute.vr,
                &filter.matcher,
                plan.empty_value_matching,
            ) else {
                continue;
            };
            sql.push(" AND i.study_instance_uid IN (SELECT m.study_instance_uid FROM instances AS m WHERE ");
            push_site(&mut sql, site, "m");
            sql.push(" AND ").append(cond).push(")");
        } else if let Some(cond) = condition(
            &format!("i.{column}"),
            attribute.vr,
            &filter.matcher,
            plan.empty_value_matching,
        ) {
            sql.push(" AND ").append(cond);
        }
    }
    sql
}

/// The site condition on the `instances` row named `table` (its alias).
fn push_site(sql: &mut Sql, site: &SiteCondition, table: &str) {
    let (condition, params) = site.condition(table);
    sql.push("(").push(&condition).push(")");
    sql.params.extend(params.into_iter().map(Value::Text));
}

/// The keys of one page, in order, and whether more matches follow.
fn page_keys(
    conn: &Connection,
    plan: &SearchPlan,
    site: &SiteCondition,
) -> rusqlite::Result<(Vec<String>, bool)> {
    let (key, order) = level_shape(plan.level);
    let mut sql = Sql::default();
    sql.push("SELECT ")
        .push(key)
        .append(matching_rows(plan, site));
    if plan.level != Level::Instance {
        sql.push(" GROUP BY ").push(key);
    }
    sql.push(level_windows(plan.level));
    // One more than the page, to learn whether more follow.
    let fetch = plan.limit.saturating_add(1).min(i64::MAX as u64) as i64;
    sql.push(" ORDER BY ")
        .push(order)
        .push(" LIMIT ")
        .bind(fetch);
    sql.push(" OFFSET ")
        .bind(plan.offset.min(i64::MAX as u64) as i64);
    let mut stmt = conn.prepare(&sql.text)?;
    let mut keys: Vec<String> = stmt
        .query_map(params_from_iter(sql.params.iter()), |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let more = keys.len() as u64 > plan.limit;
    keys.truncate(plan.limit.min(usize::MAX as u64) as usize);
    Ok((keys, more))
}

fn count_matches(
    conn: &Connection,
    plan: &SearchPlan,
    site: &SiteCondition,
) -> rusqlite::Result<u64> {
    let (key, _) = level_shape(plan.level);
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(DISTINCT ")
        .push(key)
        .push(")")
        .append(matching_rows(plan, site));
    conn.query_row(&sql.text, params_from_iter(sql.params.iter()), |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n.max(0) as u64)
}

/// `SELECT <select> FROM instances WHERE <site> AND <key> IN (<keys>) [GROUP BY <key>]`.
fn by_keys(select: &str, site: &SiteCondition, key: &str, keys: &[String], group: bool) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT ")
        .push(select)
        .push(" FROM instances WHERE ");
    push_site(&mut sql, site, "instances");
    sql.push(" AND ")
        .push(key)
        .push(" IN (")
        .bind_list(keys)
        .push(")");
    if group {
        sql.push(" GROUP BY ").push(key);
    }
    sql
}

/// Reads rows of `sql` into [`Found`]s (columns first, then `extra` values),
/// returned in the order of `keys`.
fn collect(
    conn: &Connection,
    sql: &Sql,
    columns: &[&'static str],
    keys: &[String],
    key_of: fn(&Found) -> &str,
    extra: impl Fn(&rusqlite::Row<'_>, usize, &mut Found) -> rusqlite::Result<()>,
) -> rusqlite::Result<Vec<Found>> {
    let mut stmt = conn.prepare(&sql.text)?;
    let mut rows = stmt.query(params_from_iter(sql.params.iter()))?;
    let mut by_key: HashMap<String, Found> = HashMap::with_capacity(keys.len());
    while let Some(row) = rows.next()? {
        let mut found = Found {
            study_uid: String::new(),
            series_uid: String::new(),
            sop_uid: String::new(),
            columns: HashMap::with_capacity(columns.len()),
            study: None,
            series_instances: None,
            representative: String::new(),
        };
        for (i, column) in columns.iter().enumerate() {
            found.columns.insert(column, row.get::<_, Value>(i)?);
        }
        let text = |c: &str| found.text(c).unwrap_or_default().to_string();
        let uids = (
            text("study_instance_uid"),
            text("series_instance_uid"),
            text("sop_instance_uid"),
        );
        (found.study_uid, found.series_uid, found.sop_uid) = uids;
        extra(row, columns.len(), &mut found)?;
        by_key.insert(key_of(&found).to_string(), found);
    }
    Ok(keys.iter().filter_map(|k| by_key.remove(k)).collect())
}

fn aggregated(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| format!("MAX({c})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn study_rows(
    conn: &Connection,
    site: &SiteCondition,
    keys: &[String],
) -> rusqlite::Result<Vec<Found>> {
    let columns = catalog::columns_up_to(Level::Study);
    let select = format!(
        "{}, COUNT(DISTINCT series_instance_uid), COUNT(*), GROUP_CONCAT(DISTINCT modality), MIN(path)",
        aggregated(&columns)
    );
    let sql = by_keys(&select, site, "study_instance_uid", keys, true);
    collect(
        conn,
        &sql,
        &columns,
        keys,
        |f| f.study_uid.as_str(),
        |row, n, found| {
            found.study = Some(StudyFacts {
                series: row.get(n)?,
                instances: row.get(n + 1)?,
                modalities: split_modalities(row.get(n + 2)?),
            });
            found.representative = row.get(n + 3)?;
            Ok(())
        },
    )
}

fn series_rows(
    conn: &Connection,
    site: &SiteCondition,
    keys: &[String],
) -> rusqlite::Result<Vec<Found>> {
    let columns = catalog::columns_up_to(Level::Series);
    let select = format!("{}, COUNT(*), MIN(path)", aggregated(&columns));
    let sql = by_keys(&select, site, "series_instance_uid", keys, true);
    collect(
        conn,
        &sql,
        &columns,
        keys,
        |f| f.series_uid.as_str(),
        |row, n, found| {
            found.series_instances = Some(row.get(n)?);
            found.representative = row.get(n + 1)?;
            Ok(())
        },
    )
}

fn instance_rows(
    conn: &Connection,
    site: &SiteCondition,
    keys: &[String],
) -> rusqlite::Result<Vec<Found>> {
    let columns = catalog::columns_up_to(Level::Instance);
    let select = format!("{}, path", columns.join(", "));
    let sql = by_keys(&select, site, "sop_instance_uid", keys, false);
    collect(
        conn,
        &sql,
        &columns,
        keys,
        |f| f.sop_uid.as_str(),
        |row, n, found| {
            found.representative = row.get(n)?;
            Ok(())
        },
    )
}

fn study_facts(
    conn: &Connection,
    site: &SiteCondition,
    studies: &[String],
) -> rusqlite::Result<HashMap<String, StudyFacts>> {
    let sql = by_keys(
        "study_instance_uid, COUNT(DISTINCT series_instance_uid), COUNT(*), GROUP_CONCAT(DISTINCT modality)",
        site,
        "study_instance_uid",
        studies,
        true,
    );
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(params_from_iter(sql.params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            StudyFacts {
                series: r.get(1)?,
                instances: r.get(2)?,
                modalities: split_modalities(r.get(3)?),
            },
        ))
    })?;
    rows.collect()
}

fn series_counts(
    conn: &Connection,
    site: &SiteCondition,
    series: &[String],
) -> rusqlite::Result<HashMap<String, i64>> {
    let sql = by_keys(
        "series_instance_uid, COUNT(*)",
        site,
        "series_instance_uid",
        series,
        true,
    );
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(params_from_iter(sql.params.iter()), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    rows.collect()
}

/// `GROUP_CONCAT(DISTINCT modality)` (comma-separated, any order) as a
/// sorted list; CS values cannot contain a comma.
fn split_modalities(concatenated: Option<String>) -> Vec<String> {
    let mut modalities: Vec<String> = concatenated
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect();
    modalities.sort();
    modalities.dedup();
    modalities
}

#[cfg(test)]
mod tests;
