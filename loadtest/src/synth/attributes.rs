//! The data set of one synthetic instance: the patient, study, series,
//! equipment and image attributes a real device of the modality would send,
//! so routing rules and indexers in the gateway see realistic input.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR, dicom_value};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

use super::series::{SeriesContext, StudyContext};
use super::{SeriesSpec, SynthModality};

/// Everything needed to build the data set of instance `index`.
pub(crate) struct InstanceContext<'a> {
    pub spec: &'a SeriesSpec,
    pub study: &'a StudyContext,
    pub series: &'a SeriesContext,
    pub index: usize,
    pub sop_instance_uid: &'a str,
    /// Little-endian 16-bit pixel values, `rows * columns * 2` bytes.
    pub pixels: Vec<u8>,
}

/// Build the complete data set (no file meta group) of one instance.
pub(crate) fn instance_dataset(ctx: InstanceContext<'_>) -> InMemDicomObject {
    let spec = ctx.spec;
    let mut attrs = Attributes::default();
    common_attributes(&mut attrs, &ctx);
    match spec.modality {
        SynthModality::Ct => ct_attributes(&mut attrs, &ctx),
        SynthModality::Mr => mr_attributes(&mut attrs, &ctx),
        SynthModality::Cr => cr_attributes(&mut attrs),
        SynthModality::Dx => dx_attributes(&mut attrs),
    }
    attrs.us(tags::SAMPLES_PER_PIXEL, 1);
    attrs.text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
    attrs.us(tags::ROWS, spec.rows);
    attrs.us(tags::COLUMNS, spec.columns);
    attrs.us(tags::BITS_ALLOCATED, 16);
    let (bits_stored, signed) = match spec.modality {
        SynthModality::Ct => (16, true),
        SynthModality::Mr | SynthModality::Cr | SynthModality::Dx => (12, false),
    };
    attrs.us(tags::BITS_STORED, bits_stored);
    attrs.us(tags::HIGH_BIT, bits_stored - 1);
    attrs.us(tags::PIXEL_REPRESENTATION, u16::from(signed));
    attrs.push(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(ctx.pixels),
    ));
    InMemDicomObject::from_element_iter(attrs.elements)
}

fn common_attributes(attrs: &mut Attributes, ctx: &InstanceContext<'_>) {
    let (spec, study, series) = (ctx.spec, ctx.study, ctx.series);
    let series_time = add_minutes(&study.study_time, series.minutes_after_study);
    // Slices of a series are a second apart in content time.
    let content_time = add_seconds(&series_time, ctx.index as u32);

    attrs.text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
    attrs.text(tags::SOP_CLASS_UID, VR::UI, spec.modality.sop_class_uid());
    attrs.text(tags::SOP_INSTANCE_UID, VR::UI, ctx.sop_instance_uid);
    attrs.text(tags::STUDY_DATE, VR::DA, &study.study_date);
    attrs.text(tags::SERIES_DATE, VR::DA, &study.study_date);
    attrs.text(tags::ACQUISITION_DATE, VR::DA, &study.study_date);
    attrs.text(tags::CONTENT_DATE, VR::DA, &study.study_date);
    attrs.text(tags::STUDY_TIME, VR::TM, &study.study_time);
    attrs.text(tags::SERIES_TIME, VR::TM, &series_time);
    attrs.text(tags::ACQUISITION_TIME, VR::TM, &content_time);
    attrs.text(tags::CONTENT_TIME, VR::TM, &content_time);
    attrs.text(tags::ACCESSION_NUMBER, VR::SH, &study.accession_number);
    attrs.text(tags::MODALITY, VR::CS, spec.modality.code());
    attrs.text(tags::MANUFACTURER, VR::LO, &spec.manufacturer);
    attrs.text(tags::INSTITUTION_NAME, VR::LO, &spec.institution_name);
    attrs.empty(tags::REFERRING_PHYSICIAN_NAME, VR::PN);
    attrs.text(tags::STATION_NAME, VR::SH, &spec.station_name);
    let study_description = format!("{} {}", spec.modality.code(), spec.body_part);
    attrs.text(tags::STUDY_DESCRIPTION, VR::LO, &study_description);
    attrs.text(tags::SERIES_DESCRIPTION, VR::LO, &spec.series_description);
    attrs.text(tags::MANUFACTURER_MODEL_NAME, VR::LO, &spec.model_name);
    attrs.text(tags::PATIENT_NAME, VR::PN, &spec.patient_name);
    attrs.text(tags::PATIENT_ID, VR::LO, &spec.patient_id);
    attrs.text(tags::PATIENT_BIRTH_DATE, VR::DA, &study.patient_birth_date);
    attrs.text(tags::PATIENT_SEX, VR::CS, study.patient_sex);
    attrs.text(tags::BODY_PART_EXAMINED, VR::CS, &spec.body_part);
    attrs.text(tags::PROTOCOL_NAME, VR::LO, &spec.protocol_name);
    attrs.text(tags::STUDY_INSTANCE_UID, VR::UI, &study.study_instance_uid);
    attrs.text(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &series.series_instance_uid,
    );
    attrs.text(tags::STUDY_ID, VR::SH, &study.study_id);
    attrs.text(
        tags::SERIES_NUMBER,
        VR::IS,
        series.series_number.to_string(),
    );
    attrs.text(tags::ACQUISITION_NUMBER, VR::IS, "1");
    attrs.text(tags::INSTANCE_NUMBER, VR::IS, (ctx.index + 1).to_string());
}

/// Geometry of a stack of axial slices centred on the isocentre.
fn axial_geometry(attrs: &mut Attributes, ctx: &InstanceContext<'_>, field_of_view_mm: f64) {
    let spec = ctx.spec;
    let spacing_mm = field_of_view_mm / f64::from(spec.columns.max(1));
    let thickness_mm = slice_thickness_mm(spec.instances);
    let first_z = -0.5 * thickness_mm * spec.instances.saturating_sub(1) as f64;
    let z = first_z + thickness_mm * ctx.index as f64;
    let corner = -field_of_view_mm / 2.0;

    attrs.text(tags::PATIENT_POSITION, VR::CS, "HFS");
    attrs.text(tags::SLICE_THICKNESS, VR::DS, ds(thickness_mm));
    attrs.texts(
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        &[ds(corner), ds(corner), ds(z)],
    );
    attrs.texts(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        &["1", "0", "0", "0", "1", "0"].map(String::from),
    );
    attrs.text(
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        &ctx.series.frame_of_reference_uid,
    );
    attrs.empty(tags::POSITION_REFERENCE_INDICATOR, VR::LO);
    attrs.text(tags::SLICE_LOCATION, VR::DS, ds(z));
    attrs.texts(
        tags::PIXEL_SPACING,
        VR::DS,
        &[ds(spacing_mm), ds(spacing_mm)],
    );
}

/// Thinner slices for longer series, as scanners reconstruct them, so
/// the stack covers a plausible head length (15-30 cm).
fn slice_thickness_mm(instances: usize) -> f64 {
    match instances {
        0..=40 => 5.0,
        41..=80 => 2.5,
        81..=160 => 1.25,
        _ => 0.625,
    }
}

fn ct_attributes(attrs: &mut Attributes, ctx: &InstanceContext<'_>) {
    attrs.texts(
        tags::IMAGE_TYPE,
        VR::CS,
        &["ORIGINAL", "PRIMARY", "AXIAL"].map(String::from),
    );
    axial_geometry(attrs, ctx, 230.0);
    attrs.text(tags::KVP, VR::DS, "120");
    attrs.text(tags::DATA_COLLECTION_DIAMETER, VR::DS, "500");
    attrs.text(tags::RECONSTRUCTION_DIAMETER, VR::DS, "230");
    attrs.text(tags::GANTRY_DETECTOR_TILT, VR::DS, "0");
    attrs.text(tags::TABLE_HEIGHT, VR::DS, "150");
    attrs.text(tags::ROTATION_DIRECTION, VR::CS, "CW");
    attrs.text(tags::EXPOSURE_TIME, VR::IS, "1000");
    attrs.text(tags::X_RAY_TUBE_CURRENT, VR::IS, "300");
    attrs.text(tags::EXPOSURE, VR::IS, "300");
    attrs.text(tags::CONVOLUTION_KERNEL, VR::SH, "STANDARD");
    attrs.text(tags::RESCALE_INTERCEPT, VR::DS, "-1024");
    attrs.text(tags::RESCALE_SLOPE, VR::DS, "1");
    attrs.text(tags::RESCALE_TYPE, VR::LO, "HU");
    // Brain window.
    attrs.text(tags::WINDOW_CENTER, VR::DS, "40");
    attrs.text(tags::WINDOW_WIDTH, VR::DS, "80");
}

fn mr_attributes(attrs: &mut Attributes, ctx: &InstanceContext<'_>) {
    attrs.texts(
        tags::IMAGE_TYPE,
        VR::CS,
        &["ORIGINAL", "PRIMARY", "OTHER"].map(String::from),
    );
    axial_geometry(attrs, ctx, 240.0);
    let thickness = ds(slice_thickness_mm(ctx.spec.instances));
    attrs.text(tags::SCANNING_SEQUENCE, VR::CS, "SE");
    attrs.text(tags::SEQUENCE_VARIANT, VR::CS, "NONE");
    attrs.empty(tags::SCAN_OPTIONS, VR::CS);
    attrs.text(tags::MR_ACQUISITION_TYPE, VR::CS, "2D");
    attrs.text(tags::REPETITION_TIME, VR::DS, "500");
    attrs.text(tags::ECHO_TIME, VR::DS, "15");
    attrs.text(tags::ECHO_TRAIN_LENGTH, VR::IS, "1");
    attrs.text(tags::IMAGING_FREQUENCY, VR::DS, "63.87");
    attrs.text(tags::IMAGED_NUCLEUS, VR::SH, "1H");
    attrs.text(tags::MAGNETIC_FIELD_STRENGTH, VR::DS, "1.5");
    attrs.text(tags::SPACING_BETWEEN_SLICES, VR::DS, thickness);
    attrs.text(tags::FLIP_ANGLE, VR::DS, "90");
    attrs.text(tags::WINDOW_CENTER, VR::DS, "500");
    attrs.text(tags::WINDOW_WIDTH, VR::DS, "1000");
}

/// Attributes shared by CR and DX chest projections.
fn projection_attributes(attrs: &mut Attributes) {
    attrs.texts(
        tags::IMAGE_TYPE,
        VR::CS,
        &["ORIGINAL", "PRIMARY"].map(String::from),
    );
    attrs.text(tags::VIEW_POSITION, VR::CS, "PA");
    // Rows run towards the patient's left, columns towards the feet.
    attrs.texts(
        tags::PATIENT_ORIENTATION,
        VR::CS,
        &["L", "F"].map(String::from),
    );
    attrs.texts(
        tags::IMAGER_PIXEL_SPACING,
        VR::DS,
        &["0.4", "0.4"].map(String::from),
    );
    attrs.text(tags::KVP, VR::DS, "110");
    attrs.text(tags::EXPOSURE_TIME, VR::IS, "8");
    attrs.text(tags::X_RAY_TUBE_CURRENT, VR::IS, "320");
    attrs.text(tags::DISTANCE_SOURCE_TO_DETECTOR, VR::DS, "1800");
    attrs.text(tags::WINDOW_CENTER, VR::DS, "2048");
    attrs.text(tags::WINDOW_WIDTH, VR::DS, "4096");
}

fn cr_attributes(attrs: &mut Attributes) {
    projection_attributes(attrs);
    attrs.text(tags::PLATE_TYPE, VR::SH, "STANDARD");
}

/// The DX image, detector and anatomy modules that make a valid
/// "for presentation" digital X-ray.
fn dx_attributes(attrs: &mut Attributes) {
    projection_attributes(attrs);
    attrs.text(tags::PRESENTATION_INTENT_TYPE, VR::CS, "FOR PRESENTATION");
    attrs.text(tags::PIXEL_INTENSITY_RELATIONSHIP, VR::CS, "LOG");
    attrs.push(DataElement::new(
        tags::PIXEL_INTENSITY_RELATIONSHIP_SIGN,
        VR::SS,
        dicom_value!(I16, 1),
    ));
    attrs.text(tags::RESCALE_INTERCEPT, VR::DS, "0");
    attrs.text(tags::RESCALE_SLOPE, VR::DS, "1");
    attrs.text(tags::RESCALE_TYPE, VR::LO, "US");
    attrs.text(tags::PRESENTATION_LUT_SHAPE, VR::CS, "IDENTITY");
    attrs.text(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
    attrs.text(tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
    attrs.text(tags::DETECTOR_TYPE, VR::CS, "SCINTILLATOR");
    attrs.text(tags::IMAGE_LATERALITY, VR::CS, "U");
    attrs.texts(
        tags::PIXEL_SPACING,
        VR::DS,
        &["0.4", "0.4"].map(String::from),
    );
    let chest = InMemDicomObject::from_element_iter([
        DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from("51185008")),
        DataElement::new(
            tags::CODING_SCHEME_DESIGNATOR,
            VR::SH,
            PrimitiveValue::from("SCT"),
        ),
        DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from("Chest")),
    ]);
    attrs.push(DataElement::new(
        tags::ANATOMIC_REGION_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(vec![chest]),
    ));
}

/// Collects elements; `from_element_iter` sorts them by tag.
#[derive(Default)]
struct Attributes {
    elements: Vec<InMemElement>,
}

impl Attributes {
    fn push(&mut self, element: InMemElement) {
        self.elements.push(element);
    }

    fn text(&mut self, tag: dicom_core::Tag, vr: VR, value: impl AsRef<str>) {
        self.push(DataElement::new(
            tag,
            vr,
            PrimitiveValue::from(value.as_ref()),
        ));
    }

    fn texts(&mut self, tag: dicom_core::Tag, vr: VR, values: &[String]) {
        self.push(DataElement::new(
            tag,
            vr,
            PrimitiveValue::Strs(values.iter().cloned().collect()),
        ));
    }

    /// A present but empty (Type 2) attribute.
    fn empty(&mut self, tag: dicom_core::Tag, vr: VR) {
        self.push(DataElement::new(tag, vr, PrimitiveValue::Empty));
    }

    fn us(&mut self, tag: dicom_core::Tag, value: u16) {
        self.push(DataElement::new(tag, VR::US, dicom_value!(U16, value)));
    }
}

/// A decimal string of at most 16 characters, without needless zeros.
fn ds(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    match text {
        "" | "-0" => "0".to_string(),
        _ => text.to_string(),
    }
}

/// `HHMMSS` plus minutes, wrapping at midnight (the date stays the same,
/// which is fine for synthetic data).
fn add_minutes(time: &str, minutes: u32) -> String {
    add_seconds(time, minutes * 60)
}

fn add_seconds(time: &str, seconds: u32) -> String {
    let field = |range: std::ops::Range<usize>| -> u32 {
        time.get(range).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    let total = (field(0..2) * 3600 + field(2..4) * 60 + field(4..6) + seconds) % 86_400;
    format!("{:02}{:02}{:02}", total / 3600, total / 60 % 60, total % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_are_short_and_clean() {
        assert_eq!(ds(-115.0), "-115");
        assert_eq!(ds(0.44921875), "0.4492");
        assert_eq!(ds(0.0), "0");
        assert_eq!(ds(-0.00001), "0");
        assert_eq!(ds(0.625), "0.625");
        assert!(ds(-155.9375).len() <= 16);
    }

    #[test]
    fn times_add_and_wrap() {
        assert_eq!(add_minutes("235930", 1), "000030");
        assert_eq!(add_seconds("080000", 61), "080101");
    }
}
