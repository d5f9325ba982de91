//! QIDO-RS load (PS3.18 10.6): from what the server holds (a
//! [`Catalog`]), derive a deterministic mix of the searches a viewer or PACS
//! makes, run it over concurrent clients and time every answer.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use reqwest::header::ACCEPT;
use serde::de::IgnoredAny;

use super::catalog::{Catalog, StudyEntry};
use super::{Endpoint, error_chain, run_closed_loop, transport_error_kind, version_label};

/// How far back a date-range search reaches from a known study date.
const DATE_RANGE_DAYS: i64 = 7;
/// How many leading characters of a family name a wildcard search keeps.
const NAME_PREFIX_CHARS: usize = 3;

/// The kinds of search in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueryKind {
    /// `/studies?PatientID=…`: a viewer opening a patient.
    PatientId,
    /// `/studies?StudyDate=from-to`: a week's worklist.
    StudyDateRange,
    /// `/studies?PatientName=ABC*`: someone typing a name.
    PatientNameWildcard,
    /// `/studies?ModalitiesInStudy=CT`: a modality worklist.
    Modality,
    /// `/studies/{study}/series`: opening a study.
    SeriesOfStudy,
    /// `/studies/{study}/series/{series}/instances`: opening a series.
    InstancesOfSeries,
}

impl QueryKind {
    pub const ALL: [QueryKind; 6] = [
        Self::PatientId,
        Self::StudyDateRange,
        Self::PatientNameWildcard,
        Self::Modality,
        Self::SeriesOfStudy,
        Self::InstancesOfSeries,
    ];

    /// A stable snake_case name for reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::PatientId => "patient_id",
            Self::StudyDateRange => "study_date_range",
            Self::PatientNameWildcard => "patient_name_wildcard",
            Self::Modality => "modalities_in_study",
            Self::SeriesOfStudy => "series_of_study",
            Self::InstancesOfSeries => "instances_of_series",
        }
    }
}

/// One search: a path under the service root and its query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub kind: QueryKind,
    pub path: String,
    pub params: Vec<(String, String)>,
}

/// `count` searches, the kinds the catalog can feed taken in turn (so each
/// kind gets its share) and each aimed at an entry drawn with `seed`.
/// Kinds with nothing to aim at (no series known, no dates) are left out.
pub fn query_mix(catalog: &Catalog, count: usize, seed: u64) -> Vec<Query> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let kinds: Vec<QueryKind> = QueryKind::ALL
        .into_iter()
        .filter(|kind| make_query(*kind, catalog, &mut rng.clone()).is_some())
        .collect();
    if kinds.is_empty() {
        return Vec::new();
    }
    (0..count)
        .filter_map(|i| make_query(kinds[i % kinds.len()], catalog, &mut rng))
        .collect()
}

fn make_query(kind: QueryKind, catalog: &Catalog, rng: &mut ChaCha8Rng) -> Option<Query> {
    let studies = |pick: fn(&StudyEntry) -> bool| -> Vec<&StudyEntry> {
        catalog.studies.iter().filter(|s| pick(s)).collect()
    };
    let study_query = |params: Vec<(&str, String)>| Query {
        kind,
        path: "/studies".to_string(),
        params: params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    };
    match kind {
        QueryKind::PatientId => {
            let study = studies(|s| s.patient_id.is_some()).choose(rng).copied()?;
            Some(study_query(vec![("PatientID", study.patient_id.clone()?)]))
        }
        QueryKind::StudyDateRange => {
            let candidates: Vec<(i64, &StudyEntry)> = catalog
                .studies
                .iter()
                .filter_map(|s| Some((days_from_da(s.study_date.as_deref()?)?, s)))
                .collect();
            let (to, _) = candidates.choose(rng)?;
            let from = da_from_days(to - DATE_RANGE_DAYS);
            Some(study_query(vec![(
                "StudyDate",
                format!("{from}-{}", da_from_days(*to)),
            )]))
        }
        QueryKind::PatientNameWildcard => {
            let study = studies(|s| s.patient_name.as_deref().is_some_and(|n| !n.is_empty()))
                .choose(rng)
                .copied()?;
            let family = study.patient_name.as_deref()?.split('^').next()?;
            let prefix: String = family.chars().take(NAME_PREFIX_CHARS).collect();
            Some(study_query(vec![("PatientName", format!("{prefix}*"))]))
        }
        QueryKind::Modality => {
            let mut modalities: Vec<&String> =
                catalog.studies.iter().flat_map(|s| &s.modalities).collect();
            modalities.sort();
            modalities.dedup();
            let modality = modalities.choose(rng)?;
            Some(study_query(vec![(
                "ModalitiesInStudy",
                (*modality).clone(),
            )]))
        }
        QueryKind::SeriesOfStudy => {
            let study = catalog.studies.choose(rng)?;
            Some(Query {
                kind,
                path: format!("/studies/{}/series", study.study_uid),
                params: Vec::new(),
            })
        }
        QueryKind::InstancesOfSeries => {
            let series = catalog.series.choose(rng)?;
            Some(Query {
                kind,
                path: format!(
                    "/studies/{}/series/{}/instances",
                    series.study_uid, series.series_uid
                ),
                params: Vec::new(),
            })
        }
    }
}

/// Days since 1970-01-01 of a DICOM DA (`YYYYMMDD`); `None` if malformed.
pub fn days_from_da(da: &str) -> Option<i64> {
    let da = da.trim();
    if da.len() != 8 || !da.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (
        da[..4].parse().ok()?,
        da[4..6].parse().ok()?,
        da[6..].parse().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The DICOM DA of a day count from [`days_from_da`].
pub fn da_from_days(days: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

/// What happened to one search.
#[derive(Debug, Clone)]
pub struct QueryRecord {
    pub kind: QueryKind,
    pub latency: Duration,
    pub outcome: QueryOutcome,
}

#[derive(Debug, Clone)]
pub enum QueryOutcome {
    /// 200 with a JSON array of `results` objects, or 204 (none).
    Answered { results: usize, version: String },
    /// Any other status, a body that is not a JSON array, or no answer.
    Failed { reason: String, message: String },
}

/// Everything a QIDO report needs.
#[derive(Debug, Clone)]
pub struct QidoRunOutcome {
    pub records: Vec<QueryRecord>,
    pub elapsed: Duration,
    pub concurrency: usize,
}

/// Run `queries` over `concurrency` clients, each sending its next search
/// when the last one's body has arrived.
pub async fn run_qido(
    endpoint: &Endpoint,
    queries: Vec<Query>,
    concurrency: usize,
    progress: ProgressBar,
) -> QidoRunOutcome {
    let concurrency = concurrency.clamp(1, queries.len().max(1));
    let queries = std::sync::Arc::new(queries);
    let started = Instant::now();
    let records = run_closed_loop(queries.len(), concurrency, {
        let endpoint = endpoint.clone();
        let queries = std::sync::Arc::clone(&queries);
        move |index| {
            let endpoint = endpoint.clone();
            let queries = std::sync::Arc::clone(&queries);
            let progress = progress.clone();
            async move {
                let record = query_one(&endpoint, &queries[index]).await;
                progress.inc(1);
                record
            }
        }
    })
    .await;
    QidoRunOutcome {
        records,
        elapsed: started.elapsed(),
        concurrency,
    }
}

async fn query_one(endpoint: &Endpoint, query: &Query) -> QueryRecord {
    let started = Instant::now();
    let transport = |error: reqwest::Error| QueryOutcome::Failed {
        reason: format!("error: {}", transport_error_kind(&error)),
        message: error_chain(&error),
    };
    let sent = endpoint
        .get(&query.path, &query.params)
        .header(ACCEPT, "application/dicom+json")
        .send()
        .await;
    let outcome = match sent {
        Err(error) => transport(error),
        Ok(response) => {
            let status = response.status().as_u16();
            let version = version_label(response.version());
            match response.bytes().await {
                Err(error) => transport(error),
                Ok(_) if status == 204 => QueryOutcome::Answered {
                    results: 0,
                    version,
                },
                Ok(body) if status == 200 => {
                    // Counting the objects is all we need; skip building them.
                    match serde_json::from_slice::<Vec<IgnoredAny>>(&body) {
                        Ok(objects) => QueryOutcome::Answered {
                            results: objects.len(),
                            version,
                        },
                        Err(error) => QueryOutcome::Failed {
                            reason: "not a JSON array".into(),
                            message: error.to_string(),
                        },
                    }
                }
                Ok(body) => QueryOutcome::Failed {
                    reason: format!("http {status}"),
                    message: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
                },
            }
        }
    };
    QueryRecord {
        kind: query.kind,
        latency: started.elapsed(),
        outcome,
    }
}

#[cfg(test)]
mod tests;
