//! Retrieve Study, Series and Instance (PS3.18 10.4.1.1.1): the stored Part
//! 10 files as `multipart/related; type="application/dicom"`, each part
//! byte-identical to what was received, streamed from disk. A single
//! instance may also be asked for as a bare `application/dicom`.
//!
//! Each instance's transfer syntax is negotiated on its own (PS3.18
//! 8.7.8.2, note 1), before the first byte is sent: if any instance is
//! stored in a syntax the request does not accept, the answer is 406 and
//! names the syntax, since we do not transcode.

use actix_web::body::SizedStream;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::accept::{Offer, Packaging, accept_ranges, negotiate};
use super::multipart::{Content, MultipartBody, Part, stream_contents};
use super::transfer_syntax::APPLICATION_DICOM;
use super::{IndexedInstance, Target, find_instances};
use crate::auth::Scope;
use crate::ingest::dicomweb::DicomwebState;
use crate::ingest::dicomweb::auth::Authenticated;
use crate::ingest::dicomweb::error::DicomWebError;

pub async fn study(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?;
    let target = Target::study(path.into_inner())?;
    let instances = find_instances(&state, principal, &target).await?;
    respond(&req, instances, Packaging::MULTIPART_ONLY)
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
    respond(&req, instances, Packaging::MULTIPART_ONLY)
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
    respond(&req, instances, Packaging::EITHER)
}

/// The part Content-Type of a stored instance.
fn part_content_type(instance: &IndexedInstance) -> String {
    format!(
        "{APPLICATION_DICOM}; transfer-syntax={}",
        instance.transfer_syntax_uid
    )
}

fn respond(
    req: &HttpRequest,
    instances: Vec<IndexedInstance>,
    packaging: Packaging,
) -> Result<HttpResponse, DicomWebError> {
    let ranges = accept_ranges(req);
    let mut multipart = true;
    for instance in &instances {
        let offer = Offer {
            media_type: APPLICATION_DICOM,
            transfer_syntax: Some(&instance.transfer_syntax_uid),
        };
        let choice = negotiate(&ranges, &[offer], packaging).ok_or_else(|| {
            DicomWebError::NotAcceptable(format!(
                "an instance is stored in transfer syntax {} and is returned only as stored \
                 (accept multipart/related; type=\"application/dicom\"; transfer-syntax=* or that syntax)",
                instance.transfer_syntax_uid
            ))
        })?;
        multipart = choice.multipart;
    }
    if !multipart {
        // Only ever one instance here: single part is offered for the instance resource alone.
        let instance = instances
            .into_iter()
            .next()
            .ok_or_else(|| DicomWebError::internal("no instance to send"))?;
        let content_type = part_content_type(&instance);
        let size = instance.file_size;
        let stream = stream_contents([Content::whole_file(instance.path, size)].into());
        return Ok(HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, content_type))
            .body(SizedStream::new(size, stream)));
    }
    let parts = instances
        .into_iter()
        .map(|instance| Part {
            content_type: part_content_type(&instance),
            content: Content::whole_file(instance.path, instance.file_size),
        })
        .collect();
    let body = MultipartBody::new(parts);
    let content_type = body.content_type(APPLICATION_DICOM);
    let length = body.content_length();
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(SizedStream::new(length, body.into_stream())))
}
