//! STOW-RS load (PS3.18 10.5): Part 10 files in `multipart/related`
//! batches, posted by concurrent clients, every response read and counted.

use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::ProgressBar;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;

use super::multipart::{MultipartError, build_related_body};
use super::{Endpoint, error_chain, run_closed_loop, transport_error_kind, version_label};
use crate::synth::{SeriesGenerator, SeriesSpec, SynthError};

/// ReferencedSOPSequence (0008,1199): the instances stored.
const REFERENCED_SOP_SEQUENCE: &str = "00081199";
/// FailedSOPSequence (0008,1198): the instances refused, with reasons.
const FAILED_SOP_SEQUENCE: &str = "00081198";
/// FailureReason (0008,1197) inside a FailedSOPSequence item.
const FAILURE_REASON: &str = "00081197";

/// One ready-to-send STOW-RS request.
#[derive(Debug, Clone)]
pub struct StowRequest {
    pub content_type: String,
    /// Cheap to clone: every send shares the same bytes.
    pub body: Bytes,
    pub instances: usize,
    /// Sum of the Part 10 file sizes (the body less multipart framing).
    pub part10_bytes: u64,
}

/// Why the requests could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("could not encode an instance")]
    Synth(#[from] SynthError),
    #[error("could not build a multipart body")]
    Multipart(#[from] MultipartError),
}

/// Every instance of `specs`, in order, as Part 10 files (explicit VR
/// little endian) in requests of `per_request` instances (the last may
/// hold fewer).
///
/// Files are encoded a batch at a time and dropped once copied into their
/// body, so memory holds the bodies and one batch, not two copies of all.
pub fn prepare_stow_requests(
    specs: &[SeriesSpec],
    per_request: usize,
) -> Result<Vec<StowRequest>, PrepareError> {
    let per_request = per_request.max(1);
    let mut requests = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(per_request);
    let mut instances = specs.iter().flat_map(SeriesGenerator::new).peekable();
    while let Some(instance) = instances.next() {
        batch.push(instance.to_part10()?);
        if batch.len() == per_request || instances.peek().is_none() {
            let parts: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            let related = build_related_body(&parts, requests.len() as u64)?;
            requests.push(StowRequest {
                content_type: related.content_type(),
                body: Bytes::from(related.body),
                instances: batch.len(),
                part10_bytes: batch.iter().map(|file| file.len() as u64).sum(),
            });
            batch.clear();
        }
    }
    Ok(requests)
}

/// What the server said about the instances of one response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StowResponseSummary {
    /// Items of ReferencedSOPSequence.
    pub referenced: usize,
    /// FailureReason of each FailedSOPSequence item (`None` when absent).
    pub failure_reasons: Vec<Option<u16>>,
}

/// Read a STOW-RS response body (DICOM JSON, PS3.18 F.2). `None` when it
/// is not a JSON object (for example an empty or HTML error body).
pub fn parse_stow_response(body: &[u8]) -> Option<StowResponseSummary> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    let items = |tag: &str| {
        object
            .get(tag)
            .and_then(|element| element.get("Value"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    Some(StowResponseSummary {
        referenced: items(REFERENCED_SOP_SEQUENCE).len(),
        failure_reasons: items(FAILED_SOP_SEQUENCE)
            .iter()
            .map(|item| {
                item.get(FAILURE_REASON)?
                    .get("Value")?
                    .get(0)?
                    .as_u64()
                    .and_then(|reason| u16::try_from(reason).ok())
            })
            .collect(),
    })
}

/// What happened to one request.
#[derive(Debug, Clone)]
pub struct StowRecord {
    pub instances: usize,
    pub part10_bytes: u64,
    /// From sending the request to the last byte of the response.
    pub latency: Duration,
    pub outcome: StowOutcome,
}

#[derive(Debug, Clone)]
pub enum StowOutcome {
    /// The server answered (any status); `summary` is `None` when the body
    /// was not DICOM JSON.
    Answered {
        status: u16,
        version: String,
        summary: Option<StowResponseSummary>,
    },
    /// No complete answer: connection, timeout or body error.
    Failed { kind: &'static str, message: String },
}

impl StowRecord {
    /// Instances stored, and a bounded label for each one that was not:
    /// a FailureReason (`0xA700`), an HTTP status (`http 413`), a transport
    /// error (`error: timeout`), or `missing from response` when the server
    /// accounted for fewer instances than were sent.
    pub fn account(&self) -> (usize, Vec<String>) {
        let all_failed = |label: String| (0, vec![label; self.instances]);
        match &self.outcome {
            StowOutcome::Failed { kind, .. } => all_failed(format!("error: {kind}")),
            StowOutcome::Answered {
                status,
                summary: Some(summary),
                ..
            } if summary.referenced > 0 || !summary.failure_reasons.is_empty() => {
                let stored = summary.referenced.min(self.instances);
                let mut failures: Vec<String> = summary
                    .failure_reasons
                    .iter()
                    .take(self.instances - stored)
                    .map(|reason| match reason {
                        Some(reason) => format!("{reason:#06X}"),
                        None => "no FailureReason".to_string(),
                    })
                    .collect();
                let missing = self.instances - stored - failures.len();
                failures.extend(std::iter::repeat_n(
                    format!("missing from response (http {status})"),
                    missing,
                ));
                (stored, failures)
            }
            StowOutcome::Answered { status, .. } => all_failed(format!("http {status}")),
        }
    }

    /// The label for the request as a whole: its status or error kind.
    pub fn status_label(&self) -> String {
        match &self.outcome {
            StowOutcome::Answered { status, .. } => status.to_string(),
            StowOutcome::Failed { kind, .. } => format!("error: {kind}"),
        }
    }
}

/// Everything a STOW report needs.
#[derive(Debug, Clone)]
pub struct StowRunOutcome {
    /// One record per request, in the order they were prepared.
    pub records: Vec<StowRecord>,
    pub elapsed: Duration,
    pub clients: usize,
    /// The version the responses came back in (`HTTP/2.0`); empty if none did.
    pub http_version: String,
}

/// Post every request, `clients` at a time, ticking `progress` per instance.
///
/// One untimed request first opens the connection (TLS and, for HTTP/2,
/// the session), as the C-STORE run opens its first association before
/// its clock starts.
pub async fn run_stow(
    endpoint: &Endpoint,
    requests: Vec<StowRequest>,
    clients: usize,
    progress: ProgressBar,
) -> StowRunOutcome {
    let warm_up = endpoint.get("/studies", &[("limit".into(), "1".into())]);
    let _ = warm_up.send().await;
    let clients = clients.clamp(1, requests.len().max(1));
    let requests = std::sync::Arc::new(requests);
    let started = Instant::now();
    let records = run_closed_loop(requests.len(), clients, {
        let endpoint = endpoint.clone();
        let requests = std::sync::Arc::clone(&requests);
        move |index| {
            let endpoint = endpoint.clone();
            let requests = std::sync::Arc::clone(&requests);
            let progress = progress.clone();
            async move {
                let record = post_one(&endpoint, &requests[index]).await;
                progress.inc(record.instances as u64);
                record
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    let http_version = records
        .iter()
        .find_map(|record| match &record.outcome {
            StowOutcome::Answered { version, .. } => Some(version.clone()),
            StowOutcome::Failed { .. } => None,
        })
        .unwrap_or_default();
    StowRunOutcome {
        records,
        elapsed,
        clients,
        http_version,
    }
}

async fn post_one(endpoint: &Endpoint, request: &StowRequest) -> StowRecord {
    let started = Instant::now();
    let sent = endpoint
        .post("/studies")
        .header(CONTENT_TYPE, &request.content_type)
        .header(ACCEPT, "application/dicom+json")
        .body(request.body.clone())
        .send()
        .await;
    let outcome = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let version = version_label(response.version());
            match response.bytes().await {
                Ok(body) => StowOutcome::Answered {
                    status,
                    version,
                    summary: parse_stow_response(&body),
                },
                Err(error) => failed(&error),
            }
        }
        Err(error) => failed(&error),
    };
    StowRecord {
        instances: request.instances,
        part10_bytes: request.part10_bytes,
        latency: started.elapsed(),
        outcome,
    }
}

fn failed(error: &reqwest::Error) -> StowOutcome {
    StowOutcome::Failed {
        kind: transport_error_kind(error),
        message: error_chain(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicomweb::multipart::{DICM_OFFSET, MultipartScanner, boundary_from_content_type};

    #[test]
    fn requests_batch_instances_as_valid_multipart_bodies() {
        let spec = SeriesSpec {
            rows: 8,
            columns: 8,
            ..SeriesSpec::ct_head(7, 3)
        };
        let requests = prepare_stow_requests(&[spec], 3).expect("prepares");
        assert_eq!(
            requests.iter().map(|r| r.instances).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );
        for request in &requests {
            let boundary = boundary_from_content_type(&request.content_type).expect("boundary");
            let mut scanner = MultipartScanner::new(&boundary);
            scanner.feed(&request.body).expect("scans");
            let summary = scanner.finish().expect("complete");
            assert_eq!(summary.parts.len(), request.instances);
            assert_eq!(summary.non_dicom_parts(), 0);
            assert_eq!(summary.content_bytes(), request.part10_bytes);
            assert!(request.part10_bytes > (DICM_OFFSET as u64 + 128) * request.instances as u64);
        }
    }

    #[test]
    fn stow_responses_are_read_from_dicom_json() {
        let body = br#"{
            "00081190": {"vr": "UR", "Value": ["https://x/studies/1.2"]},
            "00081199": {"vr": "SQ", "Value": [{}, {}, {}]},
            "00081198": {"vr": "SQ", "Value": [
                {"00081197": {"vr": "US", "Value": [42752]}},
                {"00081150": {"vr": "UI", "Value": ["1.2.3"]}}
            ]}
        }"#;
        assert_eq!(
            parse_stow_response(body),
            Some(StowResponseSummary {
                referenced: 3,
                failure_reasons: vec![Some(0xA700), None],
            })
        );
        assert_eq!(
            parse_stow_response(b"{}"),
            Some(StowResponseSummary::default())
        );
        assert_eq!(parse_stow_response(b"<html>"), None);
        assert_eq!(parse_stow_response(b"[]"), None);
    }

    fn answered(instances: usize, status: u16, summary: Option<StowResponseSummary>) -> StowRecord {
        StowRecord {
            instances,
            part10_bytes: 0,
            latency: Duration::ZERO,
            outcome: StowOutcome::Answered {
                status,
                version: "HTTP/2.0".into(),
                summary,
            },
        }
    }

    #[test]
    fn every_instance_is_accounted_for() {
        let all = StowResponseSummary {
            referenced: 10,
            failure_reasons: vec![],
        };
        assert_eq!(answered(10, 200, Some(all)).account(), (10, vec![]));

        let some = StowResponseSummary {
            referenced: 7,
            failure_reasons: vec![Some(0xA700), None],
        };
        let (stored, failures) = answered(10, 202, Some(some)).account();
        assert_eq!(stored, 7);
        assert_eq!(
            failures,
            vec![
                "0xA700".to_string(),
                "no FailureReason".to_string(),
                "missing from response (http 202)".to_string()
            ]
        );

        // A problem+json error body names no instance: all fail with the status.
        let (stored, failures) = answered(4, 413, Some(StowResponseSummary::default())).account();
        assert_eq!((stored, failures.len()), (0, 4));
        assert_eq!(failures[0], "http 413");
        assert_eq!(answered(2, 500, None).account().1, vec!["http 500"; 2]);

        let transport = StowRecord {
            instances: 3,
            part10_bytes: 0,
            latency: Duration::ZERO,
            outcome: StowOutcome::Failed {
                kind: "timeout",
                message: "timed out".into(),
            },
        };
        assert_eq!(
            transport.account(),
            (0, vec!["error: timeout".to_string(); 3])
        );
        assert_eq!(transport.status_label(), "error: timeout");
    }
}
