//! STOW-RS (PS3.18 10.5): `POST /studies[/{study}]` with
//! `multipart/related; type="application/dicom"`.
//!
//! Each part streams straight into the same durable store path as C-STORE:
//! its file meta is read from the first bytes, a staging file is opened with
//! our normalised meta, the rest of the part is written as it arrives, then
//! the header is checked and the instance committed. Memory stays bounded by
//! one read chunk per request whatever the body size. The response lists
//! every instance in ReferencedSOPSequence or FailedSOPSequence (with the
//! same failure codes a C-STORE would get): 200 all stored, 202 some, 409 none.

use std::time::Instant as StdInstant;

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::DicomwebState;
use super::auth::Authenticated;
use super::error::DicomWebError;
use crate::auth::{Principal, Scope};
use crate::ingest::dimse::negotiation::TRANSFER_SYNTAXES;
use crate::ingest::dimse::status::{self, store_error_status};
use crate::ingest::dimse::storage_classes::STORAGE_SOP_CLASSES;
use crate::store::uid::{trim_uid, validate_uid};
use crate::store::{self, CommitOutcome, Provenance, StagingFile, StoreError};
use crate::telemetry::modality_label;

/// Largest file meta group we accept (real ones are a few hundred bytes).
const MAX_META_BYTES: usize = 64 * 1024;
/// Preamble plus `DICM`.
const PREAMBLE: usize = 128;

pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.route("/studies", web::post().to(store_instances))
        .route("/studies/{study}", web::post().to(store_study_instances));
}

async fn store_instances(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<DicomwebState>,
    auth: Authenticated,
) -> Result<HttpResponse, DicomWebError> {
    stow(req, payload, state, auth, None).await
}

async fn store_study_instances(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<DicomwebState>,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, DicomWebError> {
    let study = path.into_inner();
    validate_uid(&study).map_err(|e| DicomWebError::BadRequest(format!("study in path: {e}")))?;
    stow(req, payload, state, auth, Some(study)).await
}

/// The outcome of one part.
enum PartOutcome {
    Stored {
        sop_class: String,
        sop_instance: String,
        study: String,
        series: String,
    },
    Failed {
        sop_class: Option<String>,
        sop_instance: Option<String>,
        reason: u16,
        why: String,
    },
}

async fn stow(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<DicomwebState>,
    auth: Authenticated,
    target_study: Option<String>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Write)?.clone();
    check_content_type(&req)?;
    check_accept(&req)?;
    let limit = state.config.max_body_size;
    if let Some(length) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > limit
    {
        return Err(DicomWebError::PayloadTooLarge { limit });
    }

    // Count bytes as they arrive; a chunked body over the limit fails mid-way.
    let mut received = 0u64;
    let counted = payload.map(move |chunk| {
        let chunk = chunk?;
        received += chunk.len() as u64;
        if received > limit {
            Err(PayloadError::Overflow)
        } else {
            Ok(chunk)
        }
    });
    let mut multipart = Multipart::new(req.headers(), counted);
    let deadline = Instant::now() + state.config.body_timeout;
    let work = async {
        let mut outcomes = Vec::new();
        let mut part_number = 0usize;
        while let Some(field) = multipart.try_next().await.map_err(multipart_error(limit))? {
            part_number += 1;
            if part_number > state.config.max_parts {
                return Err(DicomWebError::TooManyParts {
                    limit: state.config.max_parts,
                });
            }
            outcomes.push(
                receive_part(
                    field,
                    part_number,
                    &state,
                    &principal,
                    target_study.as_deref(),
                    limit,
                )
                .await?,
            );
        }
        if part_number == 0 {
            return Err(DicomWebError::BadRequest(
                "multipart body has no parts".into(),
            ));
        }
        Ok(outcomes)
    };
    let outcomes = tokio::time::timeout_at(deadline, work)
        .await
        .map_err(|_| DicomWebError::RequestTimeout(state.config.body_timeout))??;
    Ok(respond(&req, &outcomes))
}

/// `multipart/related` with `type="application/dicom"` and a boundary (PS3.18 8.6.1.2).
fn check_content_type(req: &HttpRequest) -> Result<(), DicomWebError> {
    let value = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| DicomWebError::UnsupportedMediaType("Content-Type is required".into()))?;
    let mime: mime::Mime = value
        .parse()
        .map_err(|_| DicomWebError::BadRequest(format!("Content-Type `{value}` does not parse")))?;
    if mime.type_() != mime::MULTIPART || mime.subtype() != "related" {
        return Err(DicomWebError::UnsupportedMediaType(format!(
            "STOW-RS takes multipart/related; type=\"application/dicom\", not {}",
            mime.essence_str()
        )));
    }
    match mime.get_param("type") {
        Some(t) if t.as_str().eq_ignore_ascii_case("application/dicom") => {}
        Some(t) => {
            return Err(DicomWebError::UnsupportedMediaType(format!(
                "multipart/related type `{t}` is not supported; only application/dicom"
            )));
        }
        None => {
            return Err(DicomWebError::UnsupportedMediaType(
                "multipart/related needs type=\"application/dicom\"".into(),
            ));
        }
    }
    if mime
        .get_param(mime::BOUNDARY)
        .is_none_or(|b| b.as_str().is_empty())
    {
        return Err(DicomWebError::BadRequest(
            "multipart/related without a boundary".into(),
        ));
    }
    Ok(())
}

/// The response is DICOM JSON; a client that accepts none of its media types gets 406.
fn check_accept(req: &HttpRequest) -> Result<(), DicomWebError> {
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    let ok = accept.split(',').any(|item| {
        let media = item
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(
            media.as_str(),
            "application/dicom+json" | "application/json" | "application/*" | "*/*" | ""
        )
    });
    if ok {
        Ok(())
    } else {
        Err(DicomWebError::NotAcceptable(format!(
            "STOW-RS answers application/dicom+json; Accept was `{accept}`"
        )))
    }
}

fn multipart_error(limit: u64) -> impl Fn(MultipartError) -> DicomWebError {
    move |e| match e {
        MultipartError::Payload(PayloadError::Overflow) => DicomWebError::PayloadTooLarge { limit },
        MultipartError::Nested => {
            DicomWebError::BadRequest("nested multipart bodies are not supported".into())
        }
        other => DicomWebError::BadRequest(format!("malformed multipart body: {other}")),
    }
}

/// Streams one part into the store. `Err` aborts the whole request (a
/// broken body); a bad instance is an `Ok(PartOutcome::Failed)`.
async fn receive_part(
    mut field: Field,
    number: usize,
    state: &DicomwebState,
    principal: &Principal,
    target_study: Option<&str>,
    limit: u64,
) -> Result<PartOutcome, DicomWebError> {
    match field.content_type() {
        None => {
            return Err(DicomWebError::BadRequest(format!(
                "part {number} has no Content-Type"
            )));
        }
        Some(m) if m.type_() == mime::MULTIPART => {
            return Err(DicomWebError::BadRequest(format!(
                "part {number} is a nested multipart body"
            )));
        }
        Some(m) if m.essence_str() != "application/dicom" => {
            return Err(DicomWebError::UnsupportedMediaType(format!(
                "part {number} is {}, only application/dicom is accepted",
                m.essence_str()
            )));
        }
        Some(_) => {}
    }

    // Gather the preamble and file meta group.
    let mut head: Vec<u8> = Vec::new();
    let meta_range = loop {
        match locate_meta(&head) {
            MetaScan::Found(range) => break Ok(range),
            MetaScan::NotDicom(why) => break Err(why),
            MetaScan::NeedMore => {}
        }
        match field.try_next().await.map_err(multipart_error(limit))? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None if head.is_empty() => {
                return Err(DicomWebError::BadRequest(format!("part {number} is empty")));
            }
            None => break Err("part ends inside the DICOM file meta information".to_string()),
        }
    };
    let meta = meta_range.and_then(|range| {
        dicom_object::FileMetaTable::from_reader(&head[range.clone()])
            .map(|meta| (meta, range.end))
            .map_err(|e| format!("file meta information does not parse: {e}"))
    });
    let (meta, meta_end) = match meta {
        Ok(found) => found,
        Err(why) => {
            drain(&mut field, limit).await?;
            return Ok(failed(None, None, status::ERROR_CANNOT_UNDERSTAND, why));
        }
    };
    let sop_class = trim_uid(meta.media_storage_sop_class_uid()).to_string();
    let sop_instance = trim_uid(meta.media_storage_sop_instance_uid()).to_string();
    let transfer_syntax = trim_uid(meta.transfer_syntax()).to_string();
    let precheck = if validate_uid(&sop_instance).is_err() {
        Err((
            status::INVALID_OBJECT_INSTANCE,
            "media storage SOP instance UID is not a valid UID".to_string(),
        ))
    } else if !STORAGE_SOP_CLASSES.iter().any(|(uid, _)| *uid == sop_class) {
        Err((
            status::SOP_CLASS_NOT_SUPPORTED,
            "not a storage SOP class".to_string(),
        ))
    } else if !TRANSFER_SYNTAXES
        .iter()
        .any(|(uid, _)| *uid == transfer_syntax)
    {
        Err((
            status::ERROR_CANNOT_UNDERSTAND,
            format!("transfer syntax {transfer_syntax} is not supported"),
        ))
    } else {
        Ok(())
    };
    if let Err((reason, why)) = precheck {
        drain(&mut field, limit).await?;
        return Ok(failed(Some(sop_class), Some(sop_instance), reason, why));
    }

    // Stream the data set into a staging file with our normalised meta.
    let staging = match store::file_meta(&sop_class, &sop_instance, &transfer_syntax) {
        Ok(meta) => state.store.begin(&meta, limit).await,
        Err(e) => Err(e),
    };
    let mut staging: StagingFile = match staging {
        Ok(staging) => staging,
        Err(e) => {
            drain(&mut field, limit).await?;
            return Ok(store_failed(
                state,
                principal,
                Some(sop_class),
                Some(sop_instance),
                &e,
            ));
        }
    };
    let mut write_error = staging.write_dataset(&head[meta_end..]).await.err();
    while let Some(chunk) = field.try_next().await.map_err(multipart_error(limit))? {
        if write_error.is_none() {
            write_error = staging.write_dataset(&chunk).await.err();
        }
    }
    if let Some(e) = write_error {
        return Ok(store_failed(
            state,
            principal,
            Some(sop_class),
            Some(sop_instance),
            &e,
        ));
    }
    let received_at = StdInstant::now();
    let staged = match staging.finish().await {
        Ok(staged) => staged,
        Err(e) => {
            return Ok(store_failed(
                state,
                principal,
                Some(sop_class),
                Some(sop_instance),
                &e,
            ));
        }
    };

    let ts = transfer_syntax.clone();
    let limits = state.store.limits(limit);
    let (parsed, staged) =
        tokio::task::spawn_blocking(move || (store::parse_header(&staged, &ts, &limits), staged))
            .await
            .map_err(DicomWebError::internal)?;
    let attributes = match parsed {
        Ok(attributes) => attributes,
        Err(e) => {
            remove_quietly(&staged.path).await;
            return Ok(store_failed(
                state,
                principal,
                Some(sop_class),
                Some(sop_instance),
                &e,
            ));
        }
    };
    let mismatch = if attributes.sop_class_uid != sop_class
        || attributes.sop_instance_uid != sop_instance
    {
        Some("data set SOP Class/Instance UID differ from the file meta information".to_string())
    } else if validate_uid(&attributes.study_instance_uid).is_err()
        || validate_uid(&attributes.series_instance_uid).is_err()
    {
        Some("data set lacks a valid Study or Series Instance UID".to_string())
    } else if target_study.is_some_and(|t| t != attributes.study_instance_uid) {
        Some("instance belongs to another study than the one in the request path".to_string())
    } else {
        None
    };
    if let Some(why) = mismatch {
        remove_quietly(&staged.path).await;
        count_failure(state, principal, "mismatch");
        return Ok(failed(
            Some(sop_class),
            Some(sop_instance),
            status::ERROR_DATA_SET_MISMATCH,
            why,
        ));
    }

    let modality = modality_label(attributes.modality.as_deref());
    let (study, series) = (
        attributes.study_instance_uid.clone(),
        attributes.series_instance_uid.clone(),
    );
    let scanner = state.metrics.performance.scanner_label(
        attributes.manufacturer.as_deref(),
        attributes.manufacturer_model_name.as_deref(),
    );
    let provenance = Provenance {
        site: principal.site.clone(),
        calling_ae: format!("token:{}", principal.token_id),
        protocol: "stow",
        transfer_syntax_uid: transfer_syntax,
    };
    match state
        .store
        .commit(staged, attributes, provenance, received_at)
        .await
    {
        Ok(stored) => {
            if stored.outcome != CommitOutcome::AlreadyStored {
                let labels = [principal.site.as_str(), modality, "stow"];
                state
                    .metrics
                    .ingest_instances
                    .with_label_values(&labels)
                    .inc();
                state
                    .metrics
                    .ingest_bytes
                    .with_label_values(&labels)
                    .inc_by(stored.file_size);
                state.metrics.performance.record_received(
                    &principal.site,
                    modality,
                    &scanner,
                    stored.file_size,
                );
            }
            Ok(PartOutcome::Stored {
                sop_class,
                sop_instance,
                study,
                series,
            })
        }
        Err(e) => Ok(store_failed(
            state,
            principal,
            Some(sop_class),
            Some(sop_instance),
            &e,
        )),
    }
}

enum MetaScan {
    Found(std::ops::Range<usize>),
    NeedMore,
    NotDicom(String),
}

/// Finds `DICM` + the file meta group in the first bytes of a part. The
/// range starts at `DICM` (what `FileMetaTable::from_reader` expects).
fn locate_meta(head: &[u8]) -> MetaScan {
    // PS3.10 requires the preamble; tolerate its absence (some senders drop it).
    let start = if head.len() >= PREAMBLE + 4 && &head[PREAMBLE..PREAMBLE + 4] == b"DICM" {
        PREAMBLE
    } else if head.len() >= 4 && &head[..4] == b"DICM" {
        0
    } else if head.len() < PREAMBLE + 4 {
        return MetaScan::NeedMore;
    } else {
        return MetaScan::NotDicom("not a DICOM Part 10 file (no DICM prefix)".into());
    };
    // (0002,0000) UL, explicit VR little endian: tag 4, "UL" 2, length 2, value 4.
    let group = start + 4;
    if head.len() < group + 12 {
        return MetaScan::NeedMore;
    }
    if head[group..group + 6] != [0x02, 0x00, 0x00, 0x00, b'U', b'L'] {
        return MetaScan::NotDicom("file meta information lacks its group length".into());
    }
    let length = u32::from_le_bytes([
        head[group + 8],
        head[group + 9],
        head[group + 10],
        head[group + 11],
    ]) as usize;
    if length > MAX_META_BYTES {
        return MetaScan::NotDicom(format!("file meta information claims {length} bytes"));
    }
    let end = group + 12 + length;
    if head.len() < end {
        MetaScan::NeedMore
    } else {
        MetaScan::Found(start..end)
    }
}

async fn drain(field: &mut Field, limit: u64) -> Result<(), DicomWebError> {
    while field
        .try_next()
        .await
        .map_err(multipart_error(limit))?
        .is_some()
    {}
    Ok(())
}

fn failed(
    sop_class: Option<String>,
    sop_instance: Option<String>,
    reason: u16,
    why: String,
) -> PartOutcome {
    tracing::warn!(reason = format!("{reason:#06x}"), why = %why, "STOW-RS instance refused");
    PartOutcome::Failed {
        sop_class,
        sop_instance,
        reason,
        why,
    }
}

fn store_failed(
    state: &DicomwebState,
    principal: &Principal,
    sop_class: Option<String>,
    sop_instance: Option<String>,
    error: &StoreError,
) -> PartOutcome {
    count_failure(state, principal, error.as_label());
    failed(
        sop_class,
        sop_instance,
        store_error_status(error),
        error.to_string(),
    )
}

fn count_failure(state: &DicomwebState, principal: &Principal, reason: &str) {
    state
        .metrics
        .ingest_failures
        .with_label_values(&[principal.site.as_str(), reason])
        .inc();
}

async fn remove_quietly(path: &std::path::Path) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        tracing::warn!(error = %e, "cannot remove refused temp file");
    }
}

/// The PS3.18 10.5.3 response body and status.
fn respond(req: &HttpRequest, outcomes: &[PartOutcome]) -> HttpResponse {
    let base = {
        let info = req.connection_info();
        format!("{}://{}{}", info.scheme(), info.host(), super::BASE_PATH)
    };
    let uid = |v: &str| json!({"vr": "UI", "Value": [v]});
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    let mut studies = std::collections::BTreeSet::new();
    for outcome in outcomes {
        match outcome {
            PartOutcome::Stored {
                sop_class,
                sop_instance,
                study,
                series,
            } => {
                studies.insert(study.clone());
                referenced.push(json!({
                    "00081150": uid(sop_class),
                    "00081155": uid(sop_instance),
                    "00081190": {"vr": "UR", "Value": [format!("{base}/studies/{study}/series/{series}/instances/{sop_instance}")]},
                }));
            }
            PartOutcome::Failed {
                sop_class,
                sop_instance,
                reason,
                ..
            } => {
                let mut item = serde_json::Map::new();
                if let Some(c) = sop_class {
                    item.insert("00081150".into(), uid(c));
                }
                if let Some(i) = sop_instance {
                    item.insert("00081155".into(), uid(i));
                }
                item.insert("00081197".into(), json!({"vr": "US", "Value": [reason]}));
                failed.push(Value::Object(item));
            }
        }
    }
    let mut body = serde_json::Map::new();
    if studies.len() == 1 {
        let study = studies
            .iter()
            .next()
            .map(String::as_str)
            .unwrap_or_default();
        body.insert(
            "00081190".into(),
            json!({"vr": "UR", "Value": [format!("{base}/studies/{study}")]}),
        );
    }
    if !failed.is_empty() {
        body.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
    }
    if !referenced.is_empty() {
        body.insert("00081199".into(), json!({"vr": "SQ", "Value": referenced}));
    }
    let mut response = match (referenced.is_empty(), failed.is_empty()) {
        (false, true) => HttpResponse::Ok(),
        (false, false) => HttpResponse::Accepted(),
        (true, _) => HttpResponse::Conflict(),
    };
    // Why each instance failed, for people (PS3.18 8.10.3 Warning header).
    for (i, outcome) in outcomes.iter().enumerate() {
        if let PartOutcome::Failed { reason, why, .. } = outcome {
            let text = format!("part {}: {reason:#06x} {why}", i + 1)
                .replace(['"', '\\', '\r', '\n'], " ");
            if let Ok(value) =
                header::HeaderValue::from_str(&format!("299 dicom-gateway \"{text}\""))
            {
                response.append_header((header::WARNING, value));
            }
        }
    }
    response
        .content_type("application/dicom+json")
        .body(Value::Object(body).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part10_head(meta_len: u32) -> Vec<u8> {
        let mut head = vec![0u8; PREAMBLE];
        head.extend(b"DICM");
        head.extend([0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        head.extend(meta_len.to_le_bytes());
        head
    }

    #[test]
    fn meta_is_located_incrementally() {
        let mut head = part10_head(20);
        assert!(matches!(locate_meta(&head[..100]), MetaScan::NeedMore));
        assert!(matches!(locate_meta(&head), MetaScan::NeedMore));
        head.extend([0u8; 20]);
        match locate_meta(&head) {
            MetaScan::Found(range) => assert_eq!(range, PREAMBLE..PREAMBLE + 4 + 12 + 20),
            _ => panic!("meta not found"),
        }
    }

    #[test]
    fn non_dicom_and_absurd_meta_are_rejected() {
        assert!(matches!(locate_meta(&[b'x'; 300]), MetaScan::NotDicom(_)));
        assert!(matches!(
            locate_meta(&part10_head(10 * 1024 * 1024)),
            MetaScan::NotDicom(_)
        ));
    }
}
