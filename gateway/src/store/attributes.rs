//! The attributes the index keeps for each instance: what QIDO-RS and routing
//! need, read once from the received header.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::uid::trim_uid;

/// Header attributes of one instance, as strings (absent or empty → `None`).
///
/// Patient attributes are stored here for QIDO-RS only; they never go to
/// logs or metric labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexedAttributes {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub instance_number: Option<i64>,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_description: Option<String>,
    pub study_id: Option<String>,
    pub referring_physician_name: Option<String>,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub body_part_examined: Option<String>,
    pub protocol_name: Option<String>,
    pub manufacturer: Option<String>,
    pub manufacturer_model_name: Option<String>,
    pub station_name: Option<String>,
    pub institution_name: Option<String>,
    pub series_date: Option<String>,
    pub series_time: Option<String>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub bits_allocated: Option<i64>,
    pub number_of_frames: Option<i64>,
}

impl IndexedAttributes {
    /// Reads the attributes from a parsed header. UIDs are returned trimmed
    /// but not validated; the caller checks them against the command.
    pub fn from_object(obj: &InMemDicomObject) -> Self {
        let text = |tag: Tag| -> Option<String> {
            let value = obj.get(tag)?.to_str().ok()?;
            let value = value.trim_matches(|c: char| c == '\0' || c.is_whitespace());
            (!value.is_empty()).then(|| value.to_string())
        };
        let uid = |tag: Tag| -> String {
            text(tag)
                .map(|v| trim_uid(&v).to_string())
                .unwrap_or_default()
        };
        // IS values are text; US values (Rows, Columns…) are binary: to_int reads both.
        let integer = |tag: Tag| -> Option<i64> { obj.get(tag)?.to_int::<i64>().ok() };
        Self {
            sop_class_uid: uid(tags::SOP_CLASS_UID),
            sop_instance_uid: uid(tags::SOP_INSTANCE_UID),
            study_instance_uid: uid(tags::STUDY_INSTANCE_UID),
            series_instance_uid: uid(tags::SERIES_INSTANCE_UID),
            instance_number: integer(tags::INSTANCE_NUMBER),
            patient_id: text(tags::PATIENT_ID),
            patient_name: text(tags::PATIENT_NAME),
            patient_birth_date: text(tags::PATIENT_BIRTH_DATE),
            patient_sex: text(tags::PATIENT_SEX),
            study_date: text(tags::STUDY_DATE),
            study_time: text(tags::STUDY_TIME),
            accession_number: text(tags::ACCESSION_NUMBER),
            study_description: text(tags::STUDY_DESCRIPTION),
            study_id: text(tags::STUDY_ID),
            referring_physician_name: text(tags::REFERRING_PHYSICIAN_NAME),
            modality: text(tags::MODALITY),
            series_number: integer(tags::SERIES_NUMBER),
            series_description: text(tags::SERIES_DESCRIPTION),
            body_part_examined: text(tags::BODY_PART_EXAMINED),
            protocol_name: text(tags::PROTOCOL_NAME),
            manufacturer: text(tags::MANUFACTURER),
            manufacturer_model_name: text(tags::MANUFACTURER_MODEL_NAME),
            station_name: text(tags::STATION_NAME),
            institution_name: text(tags::INSTITUTION_NAME),
            series_date: text(tags::SERIES_DATE),
            series_time: text(tags::SERIES_TIME),
            rows: integer(tags::ROWS),
            columns: integer(tags::COLUMNS),
            bits_allocated: integer(tags::BITS_ALLOCATED),
            number_of_frames: integer(tags::NUMBER_OF_FRAMES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    #[test]
    fn reads_and_trims_attributes() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.3\0"),
        ));
        obj.put(DataElement::new(
            tags::MODALITY,
            VR::CS,
            PrimitiveValue::from("CT "),
        ));
        obj.put(DataElement::new(
            tags::INSTANCE_NUMBER,
            VR::IS,
            PrimitiveValue::from("12 "),
        ));
        obj.put(DataElement::new(
            tags::BODY_PART_EXAMINED,
            VR::CS,
            PrimitiveValue::from(""),
        ));
        let attrs = IndexedAttributes::from_object(&obj);
        assert_eq!(attrs.sop_instance_uid, "1.2.3");
        assert_eq!(attrs.modality.as_deref(), Some("CT"));
        assert_eq!(attrs.instance_number, Some(12));
        assert_eq!(attrs.body_part_examined, None);
        assert_eq!(attrs.study_instance_uid, "");
    }
}
