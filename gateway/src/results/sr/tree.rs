//! The content tree of an inference result, in the spirit of TID 1500
//! (Measurement Report) without claiming conformance to it:
//!
//! ```text
//! CONTAINER Imaging Measurement Report (root)
//!  ├ HAS CONCEPT MOD  CODE Language = en-US
//!  ├ HAS OBS CONTEXT  Observer Type = Device, Device Observer UID, Name
//!  │                  and Manufacturer (TID 1004)
//!  ├ CONTAINS CODE    Procedure reported = Imaging procedure
//!  ├ CONTAINS CONTAINER Image Library ─ Image Library Group ─ IMAGE × sources
//!  ├ CONTAINS CONTAINER AI Algorithm (99DCMGW)
//!  │    TID 4019 (name, version, parameters: engine, model SHA-256),
//!  │    demo flag, clinical use, intended use, limitations,
//!  │    route, route step, step reason
//!  └ CONTAINS CONTAINER Imaging Measurements
//!       └ CONTAINER Measurement Group × findings
//!            HAS OBS CONTEXT  TEXT Tracking Identifier = label
//!            HAS CONCEPT MOD  TEXT Algorithm Name, Algorithm Version (TID 4019)
//!            CONTAINS CODE Finding = (label, 99DCMGW)
//!            CONTAINS NUM Score, NUM Threshold Value ({score})
//!            CONTAINS CODE Finding present at operating point = Yes/No
//! ```
//!
//! Every relationship here is one PS3.3 Table A.35.3-2 allows; dsrdump
//! checks that when it reads the document.

use dicom_object::InMemDicomObject;

use super::codes::{self, Code};
use super::content::{self, DynamicCode, Relationship};
use super::{Algorithm, Finding, ResultProvenance, SrError, SrRequest, vr};

/// The children of the root container.
pub(crate) fn root_children(
    request: &SrRequest,
    device_observer_uid: &str,
) -> Result<Vec<InMemDicomObject>, SrError> {
    use Relationship::*;
    let mut children = vec![
        content::code(HasConceptMod, codes::LANGUAGE_OF_CONTENT, codes::ENGLISH_US),
        content::code(HasObsContext, codes::OBSERVER_TYPE, codes::DEVICE),
        content::uidref(
            HasObsContext,
            codes::DEVICE_OBSERVER_UID,
            device_observer_uid,
        ),
    ];
    let station = vr::lo(&request.station_ae_title);
    if !station.is_empty() {
        children.push(content::text(
            HasObsContext,
            codes::DEVICE_OBSERVER_NAME,
            &station,
        ));
    }
    let manufacturer = vr::lo(&request.manufacturer);
    if !manufacturer.is_empty() {
        children.push(content::text(
            HasObsContext,
            codes::DEVICE_OBSERVER_MANUFACTURER,
            &manufacturer,
        ));
    }
    children.push(content::code(
        Contains,
        codes::PROCEDURE_REPORTED,
        codes::IMAGING_PROCEDURE,
    ));
    children.push(image_library(request));
    children.push(algorithm_container(&request.algorithm, &request.provenance));
    let groups = request
        .findings
        .iter()
        .enumerate()
        .map(|(index, finding)| measurement_group(index, finding, &request.algorithm))
        .collect::<Result<Vec<_>, _>>()?;
    children.push(content::container(
        Contains,
        codes::IMAGING_MEASUREMENTS,
        groups,
    ));
    Ok(children)
}

/// TID 1600-like Image Library: one IMAGE item per source instance.
fn image_library(request: &SrRequest) -> InMemDicomObject {
    let images = request
        .sources
        .iter()
        .map(|source| {
            content::image(
                Relationship::Contains,
                &source.sop_class_uid,
                &source.sop_instance_uid,
            )
        })
        .collect();
    let group = content::container(Relationship::Contains, codes::IMAGE_LIBRARY_GROUP, images);
    content::container(Relationship::Contains, codes::IMAGE_LIBRARY, vec![group])
}

/// Everything a reader needs to judge the result: which model (and which
/// exact file), how it may be used, and why this model ran.
fn algorithm_container(algorithm: &Algorithm, provenance: &ResultProvenance) -> InMemDicomObject {
    use Relationship::Contains;
    let mut items = algorithm_identification(Contains, algorithm);
    items.push(content::text(
        Contains,
        codes::ALGORITHM_PARAMETERS,
        &format!("engine={}", algorithm.engine.trim()),
    ));
    items.push(content::text(
        Contains,
        codes::ALGORITHM_PARAMETERS,
        &format!("model_sha256={}", algorithm.sha256.trim()),
    ));
    items.push(content::code(
        Contains,
        codes::DEMO,
        codes::yes_no(algorithm.demo),
    ));
    push_text_if_any(&mut items, codes::CLINICAL_USE, &algorithm.clinical_use);
    push_text_if_any(&mut items, codes::INTENDED_USE, &algorithm.intended_use);
    for limitation in &algorithm.limitations {
        push_text_if_any(&mut items, codes::LIMITATION, limitation);
    }
    push_text_if_any(&mut items, codes::ROUTE, &provenance.route);
    push_text_if_any(&mut items, codes::ROUTE_STEP, &provenance.step);
    if let Some(reason) = &provenance.step_reason {
        push_text_if_any(&mut items, codes::STEP_REASON, reason);
    }
    content::container(Contains, codes::AI_ALGORITHM, items)
}

/// TID 4019 rows 1 and 2.
fn algorithm_identification(
    relationship: Relationship,
    algorithm: &Algorithm,
) -> Vec<InMemDicomObject> {
    vec![
        content::text(relationship, codes::ALGORITHM_NAME, &algorithm.name),
        content::text(relationship, codes::ALGORITHM_VERSION, &algorithm.version),
    ]
}

/// TEXT values must not be empty (PS3.3 C.17.3.2.1: Text Value is type 1),
/// so an empty statement is left out rather than written blank.
fn push_text_if_any(items: &mut Vec<InMemDicomObject>, concept: Code, value: &str) {
    if !vr::text(value).is_empty() {
        items.push(content::text(Relationship::Contains, concept, value));
    }
}

/// One finding as a TID 1501-like measurement group.
fn measurement_group(
    index: usize,
    finding: &Finding,
    algorithm: &Algorithm,
) -> Result<InMemDicomObject, SrError> {
    use Relationship::*;
    let invalid = |reason: &'static str| SrError::InvalidFinding { index, reason };
    let score = vr::decimal_string(finding.score).ok_or(invalid("score is not finite"))?;
    let threshold =
        vr::decimal_string(finding.threshold).ok_or(invalid("threshold is not finite"))?;
    let label = finding_label(&finding.label).ok_or(invalid("label is empty"))?;
    let mut items = vec![content::text(
        HasObsContext,
        codes::TRACKING_IDENTIFIER,
        &label.meaning,
    )];
    items.extend(algorithm_identification(HasConceptMod, algorithm));
    items.push(content::code(Contains, codes::FINDING, label));
    items.push(content::num(
        Contains,
        codes::SCORE,
        score,
        codes::UNIT_SCORE,
    ));
    items.push(content::num(
        Contains,
        codes::THRESHOLD_VALUE,
        threshold,
        codes::UNIT_SCORE,
    ));
    items.push(content::code(
        Contains,
        codes::DECISION,
        codes::yes_no(finding.positive),
    ));
    Ok(content::container(
        Contains,
        codes::MEASUREMENT_GROUP,
        items,
    ))
}

/// The label as a private code: the label is both value and meaning.
pub(crate) fn finding_label(label: &str) -> Option<DynamicCode> {
    let cleaned = vr::lo(label);
    (!cleaned.is_empty()).then(|| DynamicCode {
        value: cleaned.clone(),
        scheme: codes::PRIVATE_SCHEME,
        meaning: cleaned,
    })
}
