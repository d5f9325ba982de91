//! SR content items (PS3.3 C.17.3, the Document Relationship and Document
//! Content macros) as data set items: one small constructor per value type
//! the results writer uses.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::codes::Code;
use super::vr;

/// The relationship from a parent content item to a child. Only the ones
/// the Comprehensive SR IOD allows for the pairs we build (PS3.3 Table
/// A.35.3-2) are here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relationship {
    Contains,
    HasObsContext,
    HasConceptMod,
}

impl Relationship {
    fn as_str(self) -> &'static str {
        match self {
            Relationship::Contains => "CONTAINS",
            Relationship::HasObsContext => "HAS OBS CONTEXT",
            Relationship::HasConceptMod => "HAS CONCEPT MOD",
        }
    }
}

/// A coded entry whose value is only known at run time (a model label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DynamicCode {
    pub value: String,
    pub scheme: &'static str,
    pub meaning: String,
}

impl From<Code> for DynamicCode {
    fn from(code: Code) -> Self {
        Self {
            value: code.value.to_string(),
            scheme: code.scheme,
            meaning: code.meaning.to_string(),
        }
    }
}

/// A sequence element; an empty `items` writes a zero-length sequence,
/// which is how a type 2 sequence says "unknown".
pub(crate) fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    let value = if items.is_empty() {
        DataSetSequence::new(items, Length(0))
    } else {
        DataSetSequence::from(items)
    };
    DataElement::new(tag, VR::SQ, value)
}

/// One item of a code sequence (PS3.3 Table 8.8-1). A value longer than
/// 16 characters goes into Long Code Value (UC) since Code Value is SH.
pub(crate) fn code_sequence_item(code: impl Into<DynamicCode>) -> InMemDicomObject {
    let code = code.into();
    let value = vr::short_string(&code.value, vr::LO_MAX);
    let value_element = if value.chars().count() > vr::SH_MAX {
        DataElement::new(tags::LONG_CODE_VALUE, VR::UC, value)
    } else {
        DataElement::new(tags::CODE_VALUE, VR::SH, value)
    };
    InMemDicomObject::from_element_iter([
        value_element,
        DataElement::new(tags::CODING_SCHEME_DESIGNATOR, VR::SH, code.scheme),
        DataElement::new(tags::CODE_MEANING, VR::LO, vr::lo(&code.meaning)),
    ])
}

fn code_sequence(tag: Tag, code: impl Into<DynamicCode>) -> DataElement<InMemDicomObject> {
    sequence(tag, vec![code_sequence_item(code)])
}

/// The attributes every non-root item starts with.
fn item(relationship: Relationship, value_type: &str, concept: Option<Code>) -> InMemDicomObject {
    let mut item = InMemDicomObject::from_element_iter([
        DataElement::new(tags::RELATIONSHIP_TYPE, VR::CS, relationship.as_str()),
        DataElement::new(tags::VALUE_TYPE, VR::CS, value_type),
    ]);
    if let Some(concept) = concept {
        item.put(code_sequence(tags::CONCEPT_NAME_CODE_SEQUENCE, concept));
    }
    item
}

/// The elements of a CONTAINER, shared by the root and nested containers.
pub(crate) fn container_elements(
    concept: Code,
    children: Vec<InMemDicomObject>,
) -> [DataElement<InMemDicomObject>; 4] {
    [
        DataElement::new(tags::VALUE_TYPE, VR::CS, "CONTAINER"),
        code_sequence(tags::CONCEPT_NAME_CODE_SEQUENCE, concept),
        DataElement::new(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"),
        sequence(tags::CONTENT_SEQUENCE, children),
    ]
}

pub(crate) fn container(
    relationship: Relationship,
    concept: Code,
    children: Vec<InMemDicomObject>,
) -> InMemDicomObject {
    let mut item = item(relationship, "CONTAINER", None);
    for element in container_elements(concept, children) {
        item.put(element);
    }
    item
}

pub(crate) fn text(relationship: Relationship, concept: Code, value: &str) -> InMemDicomObject {
    let mut item = item(relationship, "TEXT", Some(concept));
    item.put(DataElement::new(tags::TEXT_VALUE, VR::UT, vr::text(value)));
    item
}

pub(crate) fn code(
    relationship: Relationship,
    concept: Code,
    value: impl Into<DynamicCode>,
) -> InMemDicomObject {
    let mut item = item(relationship, "CODE", Some(concept));
    item.put(code_sequence(tags::CONCEPT_CODE_SEQUENCE, value));
    item
}

/// A NUM item; `decimal` must already be a valid DS.
pub(crate) fn num(
    relationship: Relationship,
    concept: Code,
    decimal: String,
    unit: Code,
) -> InMemDicomObject {
    let measured = InMemDicomObject::from_element_iter([
        code_sequence(tags::MEASUREMENT_UNITS_CODE_SEQUENCE, unit),
        DataElement::new(tags::NUMERIC_VALUE, VR::DS, decimal),
    ]);
    let mut item = item(relationship, "NUM", Some(concept));
    item.put(sequence(tags::MEASURED_VALUE_SEQUENCE, vec![measured]));
    item
}

/// A UIDREF item; `uid` must already be a valid UID.
pub(crate) fn uidref(relationship: Relationship, concept: Code, uid: &str) -> InMemDicomObject {
    let mut item = item(relationship, "UIDREF", Some(concept));
    item.put(DataElement::new(tags::UID, VR::UI, uid));
    item
}

/// An IMAGE item without a concept name, as Image Library entries are.
pub(crate) fn image(
    relationship: Relationship,
    sop_class_uid: &str,
    sop_instance_uid: &str,
) -> InMemDicomObject {
    let mut item = item(relationship, "IMAGE", None);
    item.put(sequence(
        tags::REFERENCED_SOP_SEQUENCE,
        vec![referenced_sop(sop_class_uid, sop_instance_uid)],
    ));
    item
}

/// A Referenced SOP Sequence item (SOP Instance Reference macro).
pub(crate) fn referenced_sop(sop_class_uid: &str, sop_instance_uid: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        DataElement::new(tags::REFERENCED_SOP_CLASS_UID, VR::UI, sop_class_uid),
        DataElement::new(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, sop_instance_uid),
    ])
}
