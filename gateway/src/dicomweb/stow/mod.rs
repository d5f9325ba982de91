//! STOW-RS (PS3.18 10.5): `POST /studies[/{study}]` with
//! `multipart/related; type="application/dicom"`.
//!
//! Each part streams straight into the same acceptance path as C-STORE:
//! its file meta is read from the first bytes, a staging file is opened with
//! our normalised meta, the rest of the part is written as it arrives, then
//! [`Store::accept`](crate::store::Store::accept) validates, checks and
//! commits it. Memory stays bounded by one read chunk per request whatever
//! the body size; no body shape panics the handler or loses the response. The response lists
//! every instance in ReferencedSOPSequence or FailedSOPSequence (with the
//! same failure codes a C-STORE would get): 200 all stored, 202 some, 409 none.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::{FutureExt, StreamExt, TryStreamExt};
use tokio::time::Instant;

use super::DicomwebState;
use super::auth::Authenticated;
use super::error::DicomWebError;
use crate::auth::{Principal, Scope};
use crate::dimse::status::{self, store_error_status};
use crate::store::uid::{trim_uid, validate_uid};
use crate::store::{self, Announced, Provenance, StagingFile, StoreError};

mod part;
mod response;

use part::{PartHead, PartReader, check_part_type, precheck, read_part_head};
use response::respond;

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
    let limits = BodyLimits {
        body: limit,
        exceeded: Arc::new(AtomicBool::new(false)),
    };
    let exceeded = limits.exceeded.clone();
    let mut received = 0u64;
    let counted = payload.map(move |chunk| {
        let chunk = chunk?;
        received += chunk.len() as u64;
        if received > limit {
            exceeded.store(true, Ordering::Relaxed);
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
        while let Some(field) = multipart
            .try_next()
            .await
            .map_err(|e| limits.multipart_error(e))?
        {
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
                    &limits,
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
    // A dependency that panics on some body shape costs this request, not
    // the connection: the client still gets an answer.
    let work = std::panic::AssertUnwindSafe(work).catch_unwind();
    let outcomes = match tokio::time::timeout_at(deadline, work).await {
        Err(_) => return Err(DicomWebError::RequestTimeout(state.config.body_timeout)),
        Ok(Err(_panic)) => {
            tracing::error!("STOW-RS request handling panicked");
            return Err(DicomWebError::BadRequest(
                "the multipart body could not be processed".into(),
            ));
        }
        Ok(Ok(outcomes)) => outcomes?,
    };
    Ok(respond(&req, &outcomes))
}

/// The request body's size limit, and whether the body ran past it (as
/// opposed to actix-multipart's own 64 KiB line buffer overflowing, which
/// is a malformed body: a boundary that never comes).
struct BodyLimits {
    body: u64,
    exceeded: Arc<AtomicBool>,
}

impl BodyLimits {
    fn multipart_error(&self, e: MultipartError) -> DicomWebError {
        match e {
            MultipartError::Payload(PayloadError::Overflow)
                if self.exceeded.load(Ordering::Relaxed) =>
            {
                DicomWebError::PayloadTooLarge { limit: self.body }
            }
            MultipartError::Payload(PayloadError::Overflow) => DicomWebError::BadRequest(
                "malformed multipart body: no boundary line within 64 KiB".into(),
            ),
            MultipartError::Nested => {
                DicomWebError::BadRequest("nested multipart bodies are not supported".into())
            }
            MultipartError::BoundaryMissing | MultipartError::Incomplete => {
                DicomWebError::BadRequest(
                    "malformed multipart body: the boundary or the closing boundary is missing"
                        .into(),
                )
            }
            other => DicomWebError::BadRequest(format!("malformed multipart body: {other}")),
        }
    }
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

/// Streams one part into the store. `Err` aborts the whole request (a
/// broken body); a bad instance is an `Ok(PartOutcome::Failed)`.
async fn receive_part(
    field: Field,
    number: usize,
    state: &DicomwebState,
    principal: &Principal,
    target_study: Option<&str>,
    limits: &BodyLimits,
) -> Result<PartOutcome, DicomWebError> {
    let site = principal.site.as_str();
    let mut part = PartReader::new(field, limits);
    check_part_type(part.field.content_type(), number)?;

    let PartHead {
        meta,
        head,
        meta_end,
    } = match read_part_head(&mut part, number).await? {
        Ok(found) => found,
        Err(why) => {
            part.drain().await?;
            state.store.count_refusal(site, "not_dicom");
            return Ok(failed(None, None, status::ERROR_CANNOT_UNDERSTAND, why));
        }
    };
    let sop_class = trim_uid(meta.media_storage_sop_class_uid()).to_string();
    let sop_instance = trim_uid(meta.media_storage_sop_instance_uid()).to_string();
    let transfer_syntax = trim_uid(meta.transfer_syntax()).to_string();
    if let Err((reason, why)) = precheck(&sop_class, &sop_instance, &transfer_syntax) {
        part.drain().await?;
        state.store.count_refusal(site, "precheck");
        return Ok(failed(Some(sop_class), Some(sop_instance), reason, why));
    }

    // Stream the data set into a staging file with our normalised meta.
    let staging = match store::file_meta(&sop_class, &sop_instance, &transfer_syntax) {
        Ok(meta) => state.store.begin(&meta, limits.body).await,
        Err(e) => Err(e),
    };
    let mut staging: StagingFile = match staging {
        Ok(staging) => staging,
        Err(e) => {
            part.drain().await?;
            state.store.count_refusal(site, e.as_label());
            return Ok(store_failed(Some(sop_class), Some(sop_instance), &e));
        }
    };
    let mut write_error = staging.write_dataset(&head[meta_end..]).await.err();
    drop(head);
    while let Some(chunk) = part.next_chunk().await? {
        if write_error.is_none() {
            write_error = staging.write_dataset(&chunk).await.err();
        }
    }
    if let Some(e) = write_error {
        state.store.count_refusal(site, e.as_label());
        return Ok(store_failed(Some(sop_class), Some(sop_instance), &e));
    }

    let announced = Announced {
        sop_class_uid: sop_class.clone(),
        sop_instance_uid: sop_instance.clone(),
        study_instance_uid: target_study.map(str::to_string),
        source: "file meta information",
    };
    let provenance = Provenance {
        site: principal.site.clone(),
        calling_ae: format!("token:{}", principal.token_id),
        protocol: "stow",
        transfer_syntax_uid: transfer_syntax,
    };
    match state.store.accept(staging, &announced, provenance).await {
        Ok(accepted) => Ok(PartOutcome::Stored {
            sop_class,
            sop_instance,
            study: accepted.study_instance_uid,
            series: accepted.series_instance_uid,
        }),
        Err(e) => Ok(store_failed(Some(sop_class), Some(sop_instance), &e)),
    }
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
    sop_class: Option<String>,
    sop_instance: Option<String>,
    error: &StoreError,
) -> PartOutcome {
    failed(
        sop_class,
        sop_instance,
        store_error_status(error),
        error.to_string(),
    )
}

#[cfg(test)]
mod fuzz;
