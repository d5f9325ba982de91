//! The attributes QIDO-RS can match and return from the index: where each
//! lives (an `instances` column or a value computed per study or series),
//! its VR and its level, and what PS3.18 10.6.3.3 requires at each level.
//!
//! Anything not listed here can still be asked for with `includefield`; it
//! is then read from the header of one stored instance (see `header`).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};

/// The Query/Retrieve level of an attribute or a search (PS3.4 C.6.2, Study
/// Root: patient attributes belong to the study).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Study,
    Series,
    Instance,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Study => "study",
            Self::Series => "series",
            Self::Instance => "instance",
        }
    }
}

/// Where the value of an attribute comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A column of the `instances` table.
    Column(&'static str),
    /// Distinct Modality values of the study's series (matchable).
    ModalitiesInStudy,
    StudySeriesCount,
    StudyInstanceCount,
    SeriesInstanceCount,
    /// The WADO-RS URL of the result at its own level.
    RetrieveUrl,
    /// Always `ONLINE`: every indexed instance is on local disk.
    InstanceAvailability,
    /// Always `ISO_IR 192`: DICOM JSON is UTF-8 (PS3.18 F.2), and the index
    /// holds text already decoded from the instance's character set.
    SpecificCharacterSet,
}

/// One attribute the index knows.
#[derive(Debug)]
pub struct Attribute {
    pub tag: Tag,
    pub vr: VR,
    pub level: Level,
    pub source: Source,
    /// Type C in PS3.18 Tables 10.6.3-3..5 ("shall be present if known"):
    /// left out of default results when the index has no value.
    pub conditional: bool,
}

impl Attribute {
    /// The column this attribute is matched on, if it can be matched.
    pub fn match_column(&self) -> Option<&'static str> {
        match self.source {
            Source::Column(column) => Some(column),
            Source::ModalitiesInStudy => Some("modality"),
            _ => None,
        }
    }
}

const fn column(tag: Tag, vr: VR, level: Level, name: &'static str) -> Attribute {
    Attribute {
        tag,
        vr,
        level,
        source: Source::Column(name),
        conditional: false,
    }
}

const fn conditional(tag: Tag, vr: VR, level: Level, name: &'static str) -> Attribute {
    Attribute {
        conditional: true,
        ..column(tag, vr, level, name)
    }
}

const fn computed(tag: Tag, vr: VR, level: Level, source: Source) -> Attribute {
    Attribute {
        tag,
        vr,
        level,
        source,
        conditional: false,
    }
}

use Level::{Instance, Series, Study};

/// Every attribute the index can answer, in tag order within each level.
pub static ATTRIBUTES: &[Attribute] = &[
    // Returned at every level; their level is the highest so any search may name them.
    computed(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        Study,
        Source::SpecificCharacterSet,
    ),
    computed(
        tags::INSTANCE_AVAILABILITY,
        VR::CS,
        Study,
        Source::InstanceAvailability,
    ),
    computed(tags::RETRIEVE_URL, VR::UR, Study, Source::RetrieveUrl),
    // Study (with patient) level.
    column(tags::STUDY_DATE, VR::DA, Study, "study_date"),
    column(tags::STUDY_TIME, VR::TM, Study, "study_time"),
    column(tags::ACCESSION_NUMBER, VR::SH, Study, "accession_number"),
    computed(
        tags::MODALITIES_IN_STUDY,
        VR::CS,
        Study,
        Source::ModalitiesInStudy,
    ),
    column(
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        Study,
        "referring_physician_name",
    ),
    column(tags::STUDY_DESCRIPTION, VR::LO, Study, "study_description"),
    column(tags::PATIENT_NAME, VR::PN, Study, "patient_name"),
    column(tags::PATIENT_ID, VR::LO, Study, "patient_id"),
    column(
        tags::PATIENT_BIRTH_DATE,
        VR::DA,
        Study,
        "patient_birth_date",
    ),
    column(tags::PATIENT_SEX, VR::CS, Study, "patient_sex"),
    column(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        Study,
        "study_instance_uid",
    ),
    column(tags::STUDY_ID, VR::SH, Study, "study_id"),
    computed(
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        VR::IS,
        Study,
        Source::StudySeriesCount,
    ),
    computed(
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        VR::IS,
        Study,
        Source::StudyInstanceCount,
    ),
    // Series level.
    column(tags::SERIES_DATE, VR::DA, Series, "series_date"),
    column(tags::SERIES_TIME, VR::TM, Series, "series_time"),
    column(tags::MODALITY, VR::CS, Series, "modality"),
    column(tags::MANUFACTURER, VR::LO, Series, "manufacturer"),
    column(tags::INSTITUTION_NAME, VR::LO, Series, "institution_name"),
    column(tags::STATION_NAME, VR::SH, Series, "station_name"),
    conditional(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        Series,
        "series_description",
    ),
    column(
        tags::MANUFACTURER_MODEL_NAME,
        VR::LO,
        Series,
        "manufacturer_model_name",
    ),
    column(
        tags::BODY_PART_EXAMINED,
        VR::CS,
        Series,
        "body_part_examined",
    ),
    column(tags::PROTOCOL_NAME, VR::LO, Series, "protocol_name"),
    column(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        Series,
        "series_instance_uid",
    ),
    column(tags::SERIES_NUMBER, VR::IS, Series, "series_number"),
    computed(
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        VR::IS,
        Series,
        Source::SeriesInstanceCount,
    ),
    // Instance level.
    column(tags::SOP_CLASS_UID, VR::UI, Instance, "sop_class_uid"),
    column(tags::SOP_INSTANCE_UID, VR::UI, Instance, "sop_instance_uid"),
    column(
        tags::AVAILABLE_TRANSFER_SYNTAX_UID,
        VR::UI,
        Instance,
        "transfer_syntax_uid",
    ),
    column(tags::INSTANCE_NUMBER, VR::IS, Instance, "instance_number"),
    conditional(tags::NUMBER_OF_FRAMES, VR::IS, Instance, "number_of_frames"),
    conditional(tags::ROWS, VR::US, Instance, "rows"),
    conditional(tags::COLUMNS, VR::US, Instance, "columns"),
    conditional(tags::BITS_ALLOCATED, VR::US, Instance, "bits_allocated"),
];

/// Attributes every result of a level carries (PS3.18 Tables 10.6.3-3, -4
/// and -5), plus the parent UIDs, which clients need to build paths.
pub fn defaults(level: Level) -> &'static [Tag] {
    const COMMON: [Tag; 3] = [
        tags::SPECIFIC_CHARACTER_SET,
        tags::INSTANCE_AVAILABILITY,
        tags::RETRIEVE_URL,
    ];
    static STUDY: [Tag; 16] = [
        COMMON[0],
        COMMON[1],
        COMMON[2],
        tags::STUDY_DATE,
        tags::STUDY_TIME,
        tags::ACCESSION_NUMBER,
        tags::MODALITIES_IN_STUDY,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        tags::PATIENT_BIRTH_DATE,
        tags::PATIENT_SEX,
        tags::STUDY_INSTANCE_UID,
        tags::STUDY_ID,
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
    ];
    static SERIES: [Tag; 9] = [
        COMMON[0],
        COMMON[1],
        COMMON[2],
        tags::MODALITY,
        tags::SERIES_DESCRIPTION,
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::SERIES_NUMBER,
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
    ];
    static INSTANCE: [Tag; 12] = [
        COMMON[0],
        COMMON[1],
        COMMON[2],
        tags::SOP_CLASS_UID,
        tags::SOP_INSTANCE_UID,
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::INSTANCE_NUMBER,
        tags::NUMBER_OF_FRAMES,
        tags::ROWS,
        tags::COLUMNS,
        tags::BITS_ALLOCATED,
    ];
    match level {
        Level::Study => &STUDY,
        Level::Series => &SERIES,
        Level::Instance => &INSTANCE,
    }
}

pub fn lookup(tag: Tag) -> Option<&'static Attribute> {
    ATTRIBUTES.iter().find(|a| a.tag == tag)
}

/// Columns of attributes at `level` or above, each once: what a result row
/// of that level reads from the index.
pub fn columns_up_to(level: Level) -> Vec<&'static str> {
    ATTRIBUTES
        .iter()
        .filter(|a| a.level <= level)
        .filter_map(|a| match a.source {
            Source::Column(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// Resolves a QIDO-RS attribute id: a keyword from PS3.6 (case-sensitive)
/// or eight hex digits.
pub fn resolve(id: &str) -> Option<Tag> {
    if id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        let group = u16::from_str_radix(&id[..4], 16).ok()?;
        let element = u16::from_str_radix(&id[4..], 16).ok()?;
        return Some(Tag(group, element));
    }
    StandardDataDictionary
        .by_name(id)
        .map(|entry| entry.tag_range().inner())
}

/// `PatientName (0010,0010)`, for messages.
pub fn describe(tag: Tag) -> String {
    match StandardDataDictionary.by_tag(tag) {
        Some(entry) => format!("{} ({:04X},{:04X})", entry.alias(), tag.0, tag.1),
        None => format!("({:04X},{:04X})", tag.0, tag.1),
    }
}

/// The dictionary VR of `tag`, when it has one.
pub fn dictionary_vr(tag: Tag) -> Option<VR> {
    StandardDataDictionary
        .by_tag(tag)
        .and_then(|entry| entry.vr().exact())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_default_is_in_the_catalog_at_or_above_its_level() {
        for level in [Level::Study, Level::Series, Level::Instance] {
            for tag in defaults(level) {
                let attribute =
                    lookup(*tag).unwrap_or_else(|| panic!("{} not in catalog", describe(*tag)));
                assert!(attribute.level <= level, "{}", describe(*tag));
            }
        }
    }

    #[test]
    fn catalog_has_no_duplicates_and_matches_the_dictionary() {
        let mut seen = HashSet::new();
        for attribute in ATTRIBUTES {
            assert!(seen.insert(attribute.tag), "{}", describe(attribute.tag));
            assert_eq!(
                dictionary_vr(attribute.tag),
                Some(attribute.vr),
                "{}",
                describe(attribute.tag)
            );
        }
    }

    #[test]
    fn attribute_ids_resolve_by_keyword_or_tag() {
        assert_eq!(resolve("PatientID"), Some(tags::PATIENT_ID));
        assert_eq!(resolve("00100020"), Some(tags::PATIENT_ID));
        assert_eq!(resolve("0020000d"), Some(tags::STUDY_INSTANCE_UID));
        assert_eq!(resolve("patientid"), None, "keywords are case-sensitive");
        assert_eq!(resolve("NotAKeyword"), None);
        assert_eq!(resolve("0010002"), None);
        assert_eq!(describe(tags::PATIENT_ID), "PatientID (0010,0020)");
    }
}
