//! Retrieve Study, Series and Instance (PS3.18 10.4.1.1.1): the stored Part
//! 10 files as `multipart/related; type="application/dicom"`, each part
//! byte-identical to what was received, streamed from disk. A single
//! instance may also be asked for as a bare `application/dicom`.
//!
//! Each instance's transfer syntax is negotiated on its own (PS3.18
//! 8.7.8.2, note 1), before the first byte is sent. An instance goes as
//! stored when the request accepts that; one stored in a native encoding
//! (implicit VR, big endian, deflated) may instead go as Explicit VR Little
//! Endian, converted into a temp file (see [`super::transcode`]). Anything
//! else the request does not accept is 406, naming the stored syntax.

use actix_web::body::SizedStream;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::accept::{Offer, Packaging, accept_ranges, negotiate};
use super::multipart::{Content, MultipartBody, Part, stream_contents};
use super::transcode::{ConvertedFile, can_convert_to_explicit_le, convert_to_explicit_le};
use super::transfer_syntax::{APPLICATION_DICOM, EXPLICIT_VR_LITTLE_ENDIAN};
use super::{IndexedInstance, Target, find_instances};
use crate::auth::Scope;
use crate::dicomweb::DicomwebState;
use crate::dicomweb::auth::Authenticated;
use crate::dicomweb::error::DicomWebError;
use futures::StreamExt;

pub async fn study(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?;
    let target = Target::study(path.into_inner())?;
    let instances = find_instances(&state, principal, &target).await?;
    respond(&req, &state, instances, Packaging::MULTIPART_ONLY).await
}

pub async fn series(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?;
    let (study, series) = path.into_inner();
    let target = Target::series(study, series)?;
    let instances = find_instances(&state, principal, &target).await?;
    respond(&req, &state, instances, Packaging::MULTIPART_ONLY).await
}

pub async fn instance(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?;
    let (study, series, instance) = path.into_inner();
    let target = Target::instance(study, series, instance)?;
    let instances = find_instances(&state, principal, &target).await?;
    respond(&req, &state, instances, Packaging::EITHER).await
}

/// The part Content-Type of an instance in `transfer_syntax`.
fn part_content_type(transfer_syntax: &str) -> String {
    format!("{APPLICATION_DICOM}; transfer-syntax={transfer_syntax}")
}

/// One instance ready to send: its content, length and syntax.
struct Prepared {
    transfer_syntax: String,
    content: Content,
    size: u64,
}

async fn respond(
    req: &HttpRequest,
    state: &DicomwebState,
    instances: Vec<IndexedInstance>,
    packaging: Packaging,
) -> Result<HttpResponse, DicomWebError> {
    let ranges = accept_ranges(req);
    let mut multipart = true;
    let mut plans = Vec::with_capacity(instances.len());
    for instance in instances {
        let stored = Offer {
            media_type: APPLICATION_DICOM,
            transfer_syntax: Some(&instance.transfer_syntax_uid),
        };
        let converted = Offer {
            media_type: APPLICATION_DICOM,
            transfer_syntax: Some(EXPLICIT_VR_LITTLE_ENDIAN),
        };
        let offers: &[Offer<'_>] = if can_convert_to_explicit_le(&instance.transfer_syntax_uid) {
            &[stored, converted]
        } else {
            &[stored]
        };
        let choice = negotiate(&ranges, offers, packaging).ok_or_else(|| {
            DicomWebError::NotAcceptable(format!(
                "an instance is stored in transfer syntax {} and is returned only as stored \
                 (accept multipart/related; type=\"application/dicom\"; transfer-syntax=* or that syntax)",
                instance.transfer_syntax_uid
            ))
        })?;
        multipart = choice.multipart;
        plans.push((instance, choice.offer == 1));
    }

    // Converted copies live until the response stream is dropped.
    let mut converted_files: Vec<ConvertedFile> = Vec::new();
    let mut prepared = Vec::with_capacity(plans.len());
    for (instance, convert) in plans {
        if convert {
            let source = instance.path.clone();
            let syntax = instance.transfer_syntax_uid.clone();
            let tmp_dir = state.store.layout().tmp_dir();
            let limits = state.store.limits(state.config.max_body_size);
            let file = tokio::task::spawn_blocking(move || {
                convert_to_explicit_le(&source, &syntax, &tmp_dir, &limits)
            })
            .await
            .map_err(DicomWebError::internal)?
            .map_err(DicomWebError::Internal)?;
            prepared.push(Prepared {
                transfer_syntax: EXPLICIT_VR_LITTLE_ENDIAN.to_string(),
                content: Content::whole_file(file.path.clone(), file.size),
                size: file.size,
            });
            converted_files.push(file);
        } else {
            prepared.push(Prepared {
                content: Content::whole_file(instance.path, instance.file_size),
                size: instance.file_size,
                transfer_syntax: instance.transfer_syntax_uid,
            });
        }
    }
    let keep_alive = move |chunk| {
        let _ = &converted_files;
        chunk
    };

    if !multipart {
        // Only ever one instance here: single part is offered for the instance resource alone.
        let one = prepared
            .into_iter()
            .next()
            .ok_or_else(|| DicomWebError::internal("no instance to send"))?;
        let stream = stream_contents([one.content].into()).map(keep_alive);
        return Ok(HttpResponse::Ok()
            .insert_header((
                header::CONTENT_TYPE,
                part_content_type(&one.transfer_syntax),
            ))
            .body(SizedStream::new(one.size, stream)));
    }
    let parts = prepared
        .into_iter()
        .map(|p| Part {
            content_type: part_content_type(&p.transfer_syntax),
            content: p.content,
        })
        .collect();
    let body = MultipartBody::new(parts);
    let content_type = body.content_type(APPLICATION_DICOM);
    let length = body.content_length();
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(SizedStream::new(length, body.into_stream().map(keep_alive))))
}
