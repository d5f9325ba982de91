//! QIDO-RS (PS3.18 10.6): searches for studies, series and instances,
//! answered from the index, read side of the store.
//!
//! A request becomes a [`plan::SearchPlan`] (level, filters, returned
//! attributes, page), runs against the index in one read transaction
//! ([`search`]), and comes back as DICOM JSON ([`render`]). Attributes the
//! index lacks are read from one stored header per result ([`header`]).
//! Every query carries the caller's site condition, so a study of another
//! site answers exactly like one that does not exist.
//!
//! Status codes (PS3.18 8.3.4.4.1 and Table 10.6.3-1 in the 2024-2025
//! editions): 200 with the matches; 204 No Content when there are none
//! ("If (results <= 0) then there are no matches, and a 204 (No Content)
//! response shall be returned"; CP-2473, not yet final text, would change
//! this to 200 with an empty array); 400 for a query we cannot run; 406
//! when the client accepts no JSON.

mod catalog;
mod header;
mod matching;
mod plan;
mod render;
mod search;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use actix_web::http::header::{self as http_header, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::DicomwebState;
use super::auth::{Authenticated, Visibility};
use super::error::DicomWebError;
use crate::auth::Scope;
use plan::{Limits, QueryError, SearchPlan, Target};

const DICOM_JSON: &str = "application/dicom+json";
const JSON: &str = "application/json";

pub fn register(cfg: &mut web::ServiceConfig) {
    // `route` puts the GET guard on the resource, so STOW's POST on the
    // same paths still reaches its own resource.
    cfg.route("/studies", web::get().to(search_studies))
        .route(
            "/studies/{study}/series",
            web::get().to(search_study_series),
        )
        .route(
            "/studies/{study}/series/{series}/instances",
            web::get().to(search_series_instances),
        )
        .route(
            "/studies/{study}/instances",
            web::get().to(search_study_instances),
        )
        .route("/series", web::get().to(search_all_series))
        .route("/instances", web::get().to(search_all_instances));
}

impl From<QueryError> for DicomWebError {
    fn from(e: QueryError) -> Self {
        Self::BadRequest(e.0)
    }
}

async fn search_studies(
    req: HttpRequest,
    state: web::Data<DicomwebState>,
    auth: Authenticated,
) -> Result<HttpResponse, DicomWebError> {
    search(req, state, auth, Target::AllStudies).await
}

async fn search_study_series(
    req: HttpRequest,
    state: web::Data<DicomwebState>,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, DicomWebError> {
    let study = path.into_inner();
    search(req, state, auth, Target::StudySeries { study }).await
}

async fn search_series_instances(
    req: HttpRequest,
    state: web::Data<DicomwebState>,
    auth: Authenticated,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, DicomWebError> {
    let (study, series) = path.into_inner();
    search(req, state, auth, Target::SeriesInstances { study, series }).await
}

async fn search_study_instances(
    req: HttpRequest,
    state: web::Data<DicomwebState>,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, DicomWebError> {
    let study = path.into_inner();
    search(req, state, auth, Target::StudyInstances { study }).await
}

async fn search_all_series(
    req: HttpRequest,
    state: web::Data<DicomwebState>,
    auth: Authenticated,
) -> Result<HttpResponse, DicomWebError> {
    search(req, state, auth, Target::AllSeries).await
}

async fn search_all_instances(
    req: HttpRequest,
    state: web::Data<DicomwebState>,
    auth: Authenticated,
) -> Result<HttpResponse, DicomWebError> {
    search(req, state, auth, Target::AllInstances).await
}

async fn search(
    req: HttpRequest,
    state: web::Data<DicomwebState>,
    auth: Authenticated,
    target: Target,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?;
    let media_type = negotiate(&req)?;
    let limits = Limits {
        default: state.config.qido_default_limit,
        max: state.config.qido_max_limit,
    };
    let plan = Arc::new(SearchPlan::build(&target, req.query_string(), limits)?);
    let site = Visibility::of(principal);
    let query_plan = Arc::clone(&plan);
    let page = state
        .index
        .run(move |conn| search::run(conn, &query_plan, &site))
        .await?;
    tracing::debug!(
        level = plan.level.as_str(),
        results = page.results.len(),
        "QIDO-RS search"
    );

    let mut response = if page.results.is_empty() {
        HttpResponse::NoContent()
    } else {
        HttpResponse::Ok()
    };
    if plan.fuzzy_requested {
        // PS3.18 8.3.4.2: fuzzy matching is optional; say that we matched literally.
        warn(
            &mut response,
            "The fuzzymatching parameter is not supported. Only literal matching has been performed.",
        );
    }
    if let Some(remaining) = page.remaining.filter(|n| *n > 0) {
        // PS3.18 8.3.4.4.1: the server's limit cut the response short.
        warn(
            &mut response,
            &format!("There are {remaining} additional results that can be requested"),
        );
    }
    if page.results.is_empty() {
        return Ok(response.finish());
    }

    let headers = read_headers(&state, &plan, &page.results).await?;
    let base = service_url(&req);
    let objects: Vec<serde_json::Value> = page
        .results
        .iter()
        .zip(headers)
        .map(|(found, from_header)| render::result_object(found, &plan, &base, from_header))
        .collect();
    let body = serde_json::to_vec(&objects).map_err(DicomWebError::internal)?;
    Ok(response.content_type(media_type).body(body))
}

/// `{scheme}://{host}/dicomweb`, as the client reached us.
fn service_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}{}", info.scheme(), info.host(), super::BASE_PATH)
}

/// `Warning: 299 dicom-gateway "<text>"` (RFC 9111 5.5 syntax, as STOW-RS writes it).
fn warn(response: &mut actix_web::HttpResponseBuilder, text: &str) {
    let text = text.replace(['"', '\\', '\r', '\n'], " ");
    if let Ok(value) = HeaderValue::from_str(&format!("299 dicom-gateway \"{text}\"")) {
        response.append_header((http_header::WARNING, value));
    }
}

/// Attributes outside the index, for each result, when any were asked for.
async fn read_headers(
    state: &DicomwebState,
    plan: &Arc<SearchPlan>,
    results: &[search::Found],
) -> Result<Vec<BTreeMap<dicom_core::Tag, serde_json::Value>>, DicomWebError> {
    if plan.from_headers.is_empty() {
        return Ok(vec![BTreeMap::new(); results.len()]);
    }
    let layout = state.store.layout();
    let paths: Vec<_> = results
        .iter()
        .map(|found| layout.absolute(Path::new(&found.representative)))
        .collect();
    let plan = Arc::clone(plan);
    web::block(move || {
        paths
            .iter()
            .map(|path| header::read_attributes(path, &plan.from_headers))
            .collect()
    })
    .await
    .map_err(DicomWebError::internal)
}

/// The response media type for the request's `Accept` (PS3.18 8.7.3):
/// DICOM JSON, or plain JSON for a client that prefers it; 406 otherwise
/// (for example a client that takes only `multipart/related;
/// type="application/dicom+xml"`, which we do not produce).
fn negotiate(req: &HttpRequest) -> Result<&'static str, DicomWebError> {
    let mut ranges = Vec::new();
    for value in req.headers().get_all(http_header::ACCEPT) {
        let value = value
            .to_str()
            .map_err(|_| DicomWebError::NotAcceptable("Accept header is not ASCII".into()))?;
        ranges.extend(value.split(',').filter_map(MediaRange::parse));
    }
    if ranges.is_empty() {
        return Ok(DICOM_JSON);
    }
    let dicom_json = quality(&ranges, "application", "dicom+json");
    let json = quality(&ranges, "application", "json");
    match (dicom_json, json) {
        (0, 0) => Err(DicomWebError::NotAcceptable(format!(
            "QIDO-RS answers {DICOM_JSON} or {JSON}; the Accept header allows neither"
        ))),
        (d, j) if d >= j => Ok(DICOM_JSON),
        _ => Ok(JSON),
    }
}

/// One `type/subtype;q=…` of an Accept header, q in thousandths.
#[derive(Debug)]
struct MediaRange {
    kind: String,
    subtype: String,
    quality: u16,
}

impl MediaRange {
    fn parse(item: &str) -> Option<Self> {
        let mut parts = item.split(';');
        let media = parts.next()?.trim().to_ascii_lowercase();
        let (kind, subtype) = media.split_once('/')?;
        let mut quality = 1000;
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                let q: f32 = value.trim().parse().unwrap_or(1.0);
                quality = (q.clamp(0.0, 1.0) * 1000.0).round() as u16;
            }
        }
        Some(Self {
            kind: kind.trim().to_string(),
            subtype: subtype.trim().to_string(),
            quality,
        })
    }
}

/// The quality the most specific matching range gives `kind/subtype`
/// (RFC 9110 12.5.1), 0 when none matches.
fn quality(ranges: &[MediaRange], kind: &str, subtype: &str) -> u16 {
    ranges
        .iter()
        .filter_map(|r| {
            let specificity = match (r.kind.as_str(), r.subtype.as_str()) {
                (k, s) if k == kind && s == subtype => 2,
                (k, "*") if k == kind => 1,
                ("*", "*") => 0,
                _ => return None,
            };
            Some((specificity, r.quality))
        })
        .max_by_key(|(specificity, _)| *specificity)
        .map_or(0, |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn negotiated(accept: &[&str]) -> Result<&'static str, String> {
        let mut req = TestRequest::get();
        for value in accept {
            req = req.append_header((http_header::ACCEPT, *value));
        }
        negotiate(&req.to_http_request()).map_err(|e| e.to_string())
    }

    #[test]
    fn json_flavours_are_acceptable() {
        assert_eq!(negotiated(&[]), Ok(DICOM_JSON));
        assert_eq!(negotiated(&["application/dicom+json"]), Ok(DICOM_JSON));
        assert_eq!(negotiated(&["*/*"]), Ok(DICOM_JSON));
        assert_eq!(negotiated(&["application/*"]), Ok(DICOM_JSON));
        assert_eq!(negotiated(&["application/json"]), Ok(JSON));
        assert_eq!(
            negotiated(&["application/dicom+json, application/json"]),
            Ok(DICOM_JSON)
        );
        assert_eq!(
            negotiated(&["application/dicom+json;q=0.5, application/json"]),
            Ok(JSON)
        );
        assert_eq!(
            negotiated(&["text/html", "application/dicom+json; charset=utf-8"]),
            Ok(DICOM_JSON)
        );
    }

    #[test]
    fn other_media_types_are_not_acceptable() {
        assert!(negotiated(&["multipart/related; type=\"application/dicom+xml\""]).is_err());
        assert!(negotiated(&["application/dicom+xml"]).is_err());
        assert!(negotiated(&["*/*;q=0"]).is_err());
        assert!(negotiated(&["application/dicom+json;q=0, application/json;q=0"]).is_err());
        assert!(negotiated(&["*/*, application/dicom+json;q=0, application/json;q=0"]).is_err());
    }
}
