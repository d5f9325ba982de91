//! What a synthetic series should look like: modality, size, seed and the
//! site attributes that routing rules in the gateway match on.

use std::fmt;
use std::str::FromStr;

use dicom_dictionary_std::uids;

/// The modalities the generator can synthesise.
///
/// Each one maps to exactly one storage SOP class, so the gateway sees the
/// same SOP class a real device of that kind would send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SynthModality {
    /// CT Image Storage, signed 16-bit Hounsfield units.
    Ct,
    /// MR Image Storage, unsigned 16-bit (12 bits stored).
    Mr,
    /// Computed Radiography Image Storage, 12 bits stored in 16.
    Cr,
    /// Digital X-Ray Image Storage - For Presentation, 12 bits stored in 16.
    Dx,
}

impl SynthModality {
    /// Every modality, in a fixed order (useful for proposing all SOP classes).
    pub const ALL: [SynthModality; 4] = [Self::Ct, Self::Mr, Self::Cr, Self::Dx];

    /// The storage SOP class UID of images of this modality.
    pub fn sop_class_uid(self) -> &'static str {
        match self {
            Self::Ct => uids::CT_IMAGE_STORAGE,
            Self::Mr => uids::MR_IMAGE_STORAGE,
            Self::Cr => uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
            Self::Dx => uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
        }
    }

    /// The value of the Modality (0008,0060) attribute.
    pub fn code(self) -> &'static str {
        match self {
            Self::Ct => "CT",
            Self::Mr => "MR",
            Self::Cr => "CR",
            Self::Dx => "DX",
        }
    }

    /// A small number mixed into the RNG stream so that the same seed used
    /// for two modalities does not produce the same UIDs.
    pub(crate) fn stream_id(self) -> u64 {
        match self {
            Self::Ct => 1,
            Self::Mr => 2,
            Self::Cr => 3,
            Self::Dx => 4,
        }
    }
}

impl fmt::Display for SynthModality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Error returned when a modality name is not one the generator knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown modality `{0}` (expected ct, mr, cr or dx)")]
pub struct UnknownModality(pub String);

impl FromStr for SynthModality {
    type Err = UnknownModality;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ct" => Ok(Self::Ct),
            "mr" => Ok(Self::Mr),
            "cr" => Ok(Self::Cr),
            "dx" => Ok(Self::Dx),
            _ => Err(UnknownModality(s.to_string())),
        }
    }
}

/// Everything that determines a synthetic series.
///
/// Generation is a pure function of this value: the same spec always yields
/// byte-identical instances, so tests can regenerate what they sent and
/// compare it with what the gateway stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSpec {
    pub modality: SynthModality,
    pub instances: usize,
    pub rows: u16,
    pub columns: u16,
    pub seed: u64,
    pub body_part: String,
    pub protocol_name: String,
    pub series_description: String,
    pub manufacturer: String,
    pub model_name: String,
    pub station_name: String,
    pub institution_name: String,
    pub patient_name: String,
    pub patient_id: String,
    /// Put the series into this study; `None` derives a study UID from the seed.
    pub study_instance_uid: Option<String>,
    /// CT only: draw a hyperdense (bleed-like) blob on some slices. Off,
    /// the series is a normal head (same UIDs: the blob is still drawn from
    /// the RNG, just not painted).
    pub hyperdense_lesion: bool,
}

/// Institution used by every preset; routing tests override it per site.
const DEFAULT_INSTITUTION: &str = "LOADTEST GENERAL HOSPITAL";
/// Manufacturer used by every preset, clearly not a real vendor.
const DEFAULT_MANUFACTURER: &str = "SYNTHETIC MEDICAL";

impl SeriesSpec {
    /// An axial non-contrast head CT, 512x512, as a stroke protocol would send it.
    pub fn ct_head(instances: usize, seed: u64) -> Self {
        Self::preset(
            SynthModality::Ct,
            instances,
            seed,
            (512, 512),
            "HEAD",
            "HEAD ROUTINE",
            "AX HEAD WO",
            ("SYNTH CT 64", "CT01"),
        )
    }

    /// An axial T1 brain MR, 256x256.
    pub fn mr_brain(instances: usize, seed: u64) -> Self {
        Self::preset(
            SynthModality::Mr,
            instances,
            seed,
            (256, 256),
            "BRAIN",
            "BRAIN ROUTINE",
            "AX T1 SE",
            ("SYNTH MR 1.5T", "MR01"),
        )
    }

    /// A PA chest computed radiograph, 1024x1024 (smaller than a real plate
    /// to keep tests quick).
    pub fn cr_chest(instances: usize, seed: u64) -> Self {
        Self::preset(
            SynthModality::Cr,
            instances,
            seed,
            (1024, 1024),
            "CHEST",
            "CHEST PA",
            "CHEST PA",
            ("SYNTH CR", "CR01"),
        )
    }

    /// A PA chest digital radiograph, for presentation, 1024x1024.
    pub fn dx_chest(instances: usize, seed: u64) -> Self {
        Self::preset(
            SynthModality::Dx,
            instances,
            seed,
            (1024, 1024),
            "CHEST",
            "CHEST PA",
            "CHEST PA",
            ("SYNTH DR", "DX01"),
        )
    }

    /// The default preset of a modality (what the CLI uses for `--modality`).
    pub fn for_modality(modality: SynthModality, instances: usize, seed: u64) -> Self {
        match modality {
            SynthModality::Ct => Self::ct_head(instances, seed),
            SynthModality::Mr => Self::mr_brain(instances, seed),
            SynthModality::Cr => Self::cr_chest(instances, seed),
            SynthModality::Dx => Self::dx_chest(instances, seed),
        }
    }

    /// The Study Instance UID this series will carry: the explicit one if
    /// given, otherwise the one derived from the seed.
    ///
    /// Lets a caller put several generated series into one study without
    /// generating any pixels first.
    pub fn resolved_study_instance_uid(&self) -> String {
        super::series::StudyContext::new(self).study_instance_uid
    }

    #[allow(clippy::too_many_arguments)]
    fn preset(
        modality: SynthModality,
        instances: usize,
        seed: u64,
        (rows, columns): (u16, u16),
        body_part: &str,
        protocol_name: &str,
        series_description: &str,
        (model_name, station_name): (&str, &str),
    ) -> Self {
        SeriesSpec {
            modality,
            instances,
            rows,
            columns,
            seed,
            body_part: body_part.to_string(),
            protocol_name: protocol_name.to_string(),
            series_description: series_description.to_string(),
            manufacturer: DEFAULT_MANUFACTURER.to_string(),
            model_name: model_name.to_string(),
            station_name: station_name.to_string(),
            institution_name: DEFAULT_INSTITUTION.to_string(),
            patient_name: "SYNTHETIC^PATIENT".to_string(),
            patient_id: format!("SYN{:08}", seed % 100_000_000),
            study_instance_uid: None,
            hyperdense_lesion: true,
        }
    }
}
