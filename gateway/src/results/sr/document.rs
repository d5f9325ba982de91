//! The IOD modules around the content tree (PS3.3 A.35.3, Comprehensive
//! SR): Patient, General Study, SR Document Series, General Equipment, SR
//! Document General, SR Document Content (root item) and SOP Common.
//!
//! Type 2 attributes are always written, empty when the source had no
//! usable value, so that validators and PACS see a complete header.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::codes::{self, IMAGING_MEASUREMENT_REPORT};
use super::content::{self, container_elements, sequence};
use super::{COMPREHENSIVE_SR_STORAGE, SourceInstance, SrRequest, vr};

/// UTF-8, declared only when some value needs it.
const UTF8_CHARACTER_SET: &str = "ISO_IR 192";

/// The whole data set; `request` has been validated.
pub(crate) fn dataset(request: &SrRequest, children: Vec<InMemDicomObject>) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    if needs_utf8(request) {
        put_str(
            &mut obj,
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            UTF8_CHARACTER_SET,
        );
    }
    sop_common(&mut obj, request);
    patient(&mut obj, request);
    general_study(&mut obj, request);
    sr_document_series(&mut obj, request);
    general_equipment(&mut obj, request);
    sr_document_general(&mut obj, request);
    for element in container_elements(IMAGING_MEASUREMENT_REPORT, children) {
        obj.put(element);
    }
    obj
}

fn put_str(obj: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, value: impl Into<String>) {
    let value: String = value.into();
    let value = if value.is_empty() {
        PrimitiveValue::Empty
    } else {
        PrimitiveValue::from(value)
    };
    obj.put(DataElement::new(tag, vr, value));
}

fn sop_common(obj: &mut InMemDicomObject, request: &SrRequest) {
    put_str(obj, tags::SOP_CLASS_UID, VR::UI, COMPREHENSIVE_SR_STORAGE);
    put_str(
        obj,
        tags::SOP_INSTANCE_UID,
        VR::UI,
        request.sop_instance_uid.as_str(),
    );
    put_str(
        obj,
        tags::INSTANCE_CREATION_DATE,
        VR::DA,
        request.content_date.as_str(),
    );
    put_str(
        obj,
        tags::INSTANCE_CREATION_TIME,
        VR::TM,
        request.content_time.as_str(),
    );
    // No Timezone Offset From UTC: it would apply to every DA and TM here,
    // including the study date and time copied from the source, which are
    // in the site's local time, not in the UTC of the content date.
    let private_scheme = InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::CODING_SCHEME_DESIGNATOR,
            VR::SH,
            codes::PRIVATE_SCHEME,
        ),
        DataElement::new(tags::CODING_SCHEME_NAME, VR::ST, codes::PRIVATE_SCHEME_NAME),
        DataElement::new(
            tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION,
            VR::ST,
            vr::lo(&request.manufacturer),
        ),
    ]);
    obj.put(sequence(
        tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE,
        vec![private_scheme],
    ));
}

fn patient(obj: &mut InMemDicomObject, request: &SrRequest) {
    let study = &request.study;
    let name = study.patient_name.as_deref().map(vr::pn);
    put_str(obj, tags::PATIENT_NAME, VR::PN, name.unwrap_or_default());
    let id = study.patient_id.as_deref().map(vr::lo);
    put_str(obj, tags::PATIENT_ID, VR::LO, id.unwrap_or_default());
    let birth = vr::date_or_empty(study.patient_birth_date.as_deref());
    put_str(obj, tags::PATIENT_BIRTH_DATE, VR::DA, birth);
    let sex = study.patient_sex.as_deref().map(vr::patient_sex);
    put_str(obj, tags::PATIENT_SEX, VR::CS, sex.unwrap_or_default());
}

fn general_study(obj: &mut InMemDicomObject, request: &SrRequest) {
    let study = &request.study;
    put_str(
        obj,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        study.study_instance_uid.as_str(),
    );
    let date = vr::date_or_empty(study.study_date.as_deref());
    put_str(obj, tags::STUDY_DATE, VR::DA, date);
    let time = vr::time_or_empty(study.study_time.as_deref());
    put_str(obj, tags::STUDY_TIME, VR::TM, time);
    let referring = study.referring_physician_name.as_deref().map(vr::pn);
    put_str(
        obj,
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        referring.unwrap_or_default(),
    );
    let study_id = study.study_id.as_deref().map(vr::sh);
    put_str(obj, tags::STUDY_ID, VR::SH, study_id.unwrap_or_default());
    let accession = study.accession_number.as_deref().map(vr::sh);
    put_str(
        obj,
        tags::ACCESSION_NUMBER,
        VR::SH,
        accession.unwrap_or_default(),
    );
    let description = study.study_description.as_deref().map(vr::lo);
    if let Some(description) = description.filter(|d| !d.is_empty()) {
        put_str(obj, tags::STUDY_DESCRIPTION, VR::LO, description);
    }
}

fn sr_document_series(obj: &mut InMemDicomObject, request: &SrRequest) {
    put_str(obj, tags::MODALITY, VR::CS, "SR");
    put_str(
        obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        request.series_instance_uid.as_str(),
    );
    put_str(
        obj,
        tags::SERIES_NUMBER,
        VR::IS,
        request.series_number.to_string(),
    );
    put_str(
        obj,
        tags::SERIES_DATE,
        VR::DA,
        request.content_date.as_str(),
    );
    put_str(
        obj,
        tags::SERIES_TIME,
        VR::TM,
        request.content_time.as_str(),
    );
    let description = vr::lo(&request.series_description);
    if !description.is_empty() {
        put_str(obj, tags::SERIES_DESCRIPTION, VR::LO, description);
    }
    // Type 2: the gateway runs no modality worklist, so there is no step.
    obj.put(sequence(
        tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
        Vec::new(),
    ));
}

fn general_equipment(obj: &mut InMemDicomObject, request: &SrRequest) {
    put_str(
        obj,
        tags::MANUFACTURER,
        VR::LO,
        vr::lo(&request.manufacturer),
    );
    let station = vr::sh(&request.station_ae_title);
    if !station.is_empty() {
        put_str(obj, tags::STATION_NAME, VR::SH, station);
    }
    let version = vr::lo(&request.software_version);
    if !version.is_empty() {
        put_str(obj, tags::SOFTWARE_VERSIONS, VR::LO, version);
    }
}

fn sr_document_general(obj: &mut InMemDicomObject, request: &SrRequest) {
    put_str(obj, tags::INSTANCE_NUMBER, VR::IS, "1");
    // The model produced everything it will produce; nobody verified it.
    put_str(obj, tags::COMPLETION_FLAG, VR::CS, "COMPLETE");
    put_str(obj, tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED");
    put_str(
        obj,
        tags::CONTENT_DATE,
        VR::DA,
        request.content_date.as_str(),
    );
    put_str(
        obj,
        tags::CONTENT_TIME,
        VR::TM,
        request.content_time.as_str(),
    );
    // Type 2: no requested procedure is known to the gateway.
    obj.put(sequence(
        tags::PERFORMED_PROCEDURE_CODE_SEQUENCE,
        Vec::new(),
    ));
    obj.put(sequence(
        tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
        vec![evidence(
            &request.study.study_instance_uid,
            &request.sources,
        )],
    ));
}

/// Hierarchical SOP Instance Reference macro for the one source study:
/// sources grouped by series in first-seen order, duplicates dropped.
fn evidence(study_instance_uid: &str, sources: &[SourceInstance]) -> InMemDicomObject {
    let mut series: Vec<(&str, Vec<&SourceInstance>)> = Vec::new();
    for source in sources {
        let index = match series
            .iter()
            .position(|(uid, _)| *uid == source.series_instance_uid)
        {
            Some(index) => index,
            None => {
                series.push((&source.series_instance_uid, Vec::new()));
                series.len() - 1
            }
        };
        let instances = &mut series[index].1;
        if !instances
            .iter()
            .any(|i| i.sop_instance_uid == source.sop_instance_uid)
        {
            instances.push(source);
        }
    }
    let series_items = series
        .into_iter()
        .map(|(series_uid, instances)| {
            let sops = instances
                .into_iter()
                .map(|i| content::referenced_sop(&i.sop_class_uid, &i.sop_instance_uid))
                .collect();
            InMemDicomObject::from_element_iter([
                DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, series_uid),
                sequence(tags::REFERENCED_SOP_SEQUENCE, sops),
            ])
        })
        .collect();
    InMemDicomObject::from_element_iter([
        DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, study_instance_uid),
        sequence(tags::REFERENCED_SERIES_SEQUENCE, series_items),
    ])
}

/// Whether any value written from the request leaves the default
/// repertoire (ASCII).
fn needs_utf8(request: &SrRequest) -> bool {
    let study = &request.study;
    let algorithm = &request.algorithm;
    let provenance = &request.provenance;
    let optional = [
        &study.patient_name,
        &study.patient_id,
        &study.accession_number,
        &study.study_id,
        &study.referring_physician_name,
        &study.study_description,
        &provenance.step_reason,
    ];
    let fixed = [
        &algorithm.name,
        &algorithm.version,
        &algorithm.engine,
        &algorithm.clinical_use,
        &algorithm.intended_use,
        &provenance.route,
        &provenance.step,
        &request.series_description,
        &request.manufacturer,
        &request.software_version,
        &request.station_ae_title,
    ];
    vr::needs_utf8(
        optional
            .into_iter()
            .flatten()
            .chain(fixed)
            .chain(&algorithm.limitations)
            .chain(request.findings.iter().map(|f| &f.label))
            .map(String::as_str),
    )
}
