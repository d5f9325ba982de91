//! The PS3.18 10.5.3 answer to a STOW-RS request: which instances were
//! stored (with where to retrieve them) and which failed, and why.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use super::PartOutcome;

/// Most `Warning` headers on one response: the body carries every failure.
const MAX_WARNING_HEADERS: usize = 10;

/// The PS3.18 10.5.3 response body and status.
pub(super) fn respond(req: &HttpRequest, outcomes: &[PartOutcome]) -> HttpResponse {
    let base = {
        let info = req.connection_info();
        format!(
            "{}://{}{}",
            info.scheme(),
            info.host(),
            super::super::BASE_PATH
        )
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
    // Why instances failed, for people (PS3.18 8.10.3 Warning header). The
    // body lists every failure; the headers stop at a few, since clients
    // refuse responses with hundreds of header lines.
    let failures: Vec<(usize, u16, &str)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, outcome)| match outcome {
            PartOutcome::Failed { reason, why, .. } => Some((i + 1, *reason, why.as_str())),
            PartOutcome::Stored { .. } => None,
        })
        .collect();
    let mut warnings: Vec<String> = failures
        .iter()
        .take(MAX_WARNING_HEADERS - 1)
        .map(|(part, reason, why)| format!("part {part}: {reason:#06x} {why}"))
        .collect();
    match failures.len() {
        n if n == MAX_WARNING_HEADERS => {
            let (part, reason, why) = failures[n - 1];
            warnings.push(format!("part {part}: {reason:#06x} {why}"));
        }
        n if n > MAX_WARNING_HEADERS => warnings.push(format!(
            "{} more instances failed; FailedSOPSequence (0008,1198) in the body lists them all",
            n - (MAX_WARNING_HEADERS - 1)
        )),
        _ => {}
    }
    for text in warnings {
        let text = text.replace(['"', '\\', '\r', '\n'], " ");
        if let Ok(value) = header::HeaderValue::from_str(&format!("299 dicom-gateway \"{text}\"")) {
            response.append_header((header::WARNING, value));
        }
    }
    response
        .content_type("application/dicom+json")
        .body(Value::Object(body).to_string())
}
