//! WADO-RS load (PS3.18 10.4): retrieve whole series as
//! `multipart/related; type="application/dicom"`, streaming each body
//! through a [`MultipartScanner`] (bytes counted, never held) and checking
//! that every part is a Part 10 file.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::catalog::{DiscoveryError, SeriesEntry, search, series_entry, study_entry};
use super::multipart::{MultipartScanner, boundary_from_content_type};
use super::{Endpoint, error_chain, run_closed_loop, transport_error_kind, version_label};

/// What we ask for unless told otherwise: Part 10 files in the default
/// transfer syntax for uncompressed data (PS3.18 8.7.3.5).
pub const DEFAULT_ACCEPT: &str = "multipart/related; type=\"application/dicom\"";

/// Up to `count` series, found with QIDO: studies matching `filters`
/// (at most `study_limit` of them), in the order the server lists them,
/// then their series (only those of `modality` when given).
pub async fn discover_series(
    endpoint: &Endpoint,
    count: usize,
    study_limit: usize,
    filters: &[(String, String)],
    modality: Option<&str>,
) -> Result<Vec<SeriesEntry>, DiscoveryError> {
    let mut params = filters.to_vec();
    params.push(("limit".into(), study_limit.to_string()));
    let studies = search(endpoint, "/studies", &params).await?;
    let mut found = Vec::new();
    for study in studies.iter().filter_map(study_entry) {
        if found.len() >= count {
            break;
        }
        let path = format!("/studies/{}/series", study.study_uid);
        for object in search(endpoint, &path, &[]).await? {
            let Some(mut series) = series_entry(&object) else {
                continue;
            };
            let wanted = modality.is_none_or(|m| {
                series
                    .modality
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(m))
            });
            if wanted && found.len() < count {
                series.study_uid.clone_from(&study.study_uid);
                found.push(series);
            }
        }
    }
    Ok(found)
}

/// What happened to one series retrieve.
#[derive(Debug, Clone)]
pub struct WadoRecord {
    /// NumberOfSeriesRelatedInstances as QIDO reported it.
    pub expected_instances: Option<u64>,
    /// From sending the request to the last byte of the body.
    pub latency: Duration,
    /// From sending the request to the response headers.
    pub first_byte: Option<Duration>,
    /// Body bytes received, whatever the outcome.
    pub body_bytes: u64,
    pub outcome: WadoOutcome,
}

#[derive(Debug, Clone)]
pub enum WadoOutcome {
    /// A complete multipart body.
    Retrieved {
        version: String,
        parts: usize,
        /// Parts that are not `application/dicom` Part 10 files.
        non_dicom_parts: usize,
        content_bytes: u64,
    },
    /// A status other than 200, a malformed or truncated body, or no answer.
    Failed { reason: String, message: String },
}

impl WadoRecord {
    /// The part count disagrees with what QIDO said the series holds.
    pub fn count_mismatch(&self) -> bool {
        match (&self.outcome, self.expected_instances) {
            (WadoOutcome::Retrieved { parts, .. }, Some(expected)) => *parts as u64 != expected,
            _ => false,
        }
    }
}

/// Everything a WADO report needs.
#[derive(Debug, Clone)]
pub struct WadoRunOutcome {
    pub records: Vec<WadoRecord>,
    pub elapsed: Duration,
    pub concurrency: usize,
}

/// Retrieve every series, `concurrency` at a time.
pub async fn run_wado(
    endpoint: &Endpoint,
    series: Vec<SeriesEntry>,
    concurrency: usize,
    accept: &str,
    progress: ProgressBar,
) -> WadoRunOutcome {
    let concurrency = concurrency.clamp(1, series.len().max(1));
    let series = std::sync::Arc::new(series);
    let accept = std::sync::Arc::new(accept.to_string());
    let started = Instant::now();
    let records = run_closed_loop(series.len(), concurrency, {
        let endpoint = endpoint.clone();
        let series = std::sync::Arc::clone(&series);
        move |index| {
            let endpoint = endpoint.clone();
            let series = std::sync::Arc::clone(&series);
            let accept = std::sync::Arc::clone(&accept);
            let progress = progress.clone();
            async move {
                let record = retrieve_one(&endpoint, &series[index], &accept).await;
                progress.inc(1);
                record
            }
        }
    })
    .await;
    WadoRunOutcome {
        records,
        elapsed: started.elapsed(),
        concurrency,
    }
}

async fn retrieve_one(endpoint: &Endpoint, series: &SeriesEntry, accept: &str) -> WadoRecord {
    let started = Instant::now();
    let mut record = WadoRecord {
        expected_instances: series.instances,
        latency: Duration::ZERO,
        first_byte: None,
        body_bytes: 0,
        outcome: WadoOutcome::Failed {
            reason: String::new(),
            message: String::new(),
        },
    };
    let path = format!("/studies/{}/series/{}", series.study_uid, series.series_uid);
    let fail = |reason: String, message: String| WadoOutcome::Failed { reason, message };
    record.outcome = match endpoint.get(&path, &[]).header(ACCEPT, accept).send().await {
        Err(error) => fail(
            format!("error: {}", transport_error_kind(&error)),
            error_chain(&error),
        ),
        Ok(mut response) => {
            record.first_byte = Some(started.elapsed());
            let status = response.status().as_u16();
            let version = version_label(response.version());
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            match (status, boundary_from_content_type(&content_type)) {
                (200, Ok(boundary)) => {
                    let mut scanner = MultipartScanner::new(&boundary);
                    let streamed = loop {
                        match response.chunk().await {
                            Ok(Some(chunk)) => {
                                record.body_bytes += chunk.len() as u64;
                                if let Err(error) = scanner.feed(&chunk) {
                                    break Err(fail(
                                        "malformed multipart".into(),
                                        error.to_string(),
                                    ));
                                }
                            }
                            Ok(None) => break Ok(()),
                            Err(error) => {
                                break Err(fail(
                                    format!("error: {}", transport_error_kind(&error)),
                                    error_chain(&error),
                                ));
                            }
                        }
                    };
                    match streamed.map(|()| scanner.finish()) {
                        Ok(Ok(summary)) => WadoOutcome::Retrieved {
                            version,
                            parts: summary.parts.len(),
                            non_dicom_parts: summary.non_dicom_parts(),
                            content_bytes: summary.content_bytes(),
                        },
                        Ok(Err(error)) => fail("malformed multipart".into(), error.to_string()),
                        Err(failed) => failed,
                    }
                }
                (200, Err(error)) => fail("not multipart/related".into(), error.to_string()),
                (status, _) => {
                    let body = response.bytes().await.unwrap_or_default();
                    record.body_bytes += body.len() as u64;
                    fail(
                        format!("http {status}"),
                        String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
                    )
                }
            }
        }
    };
    record.latency = started.elapsed();
    record
}
