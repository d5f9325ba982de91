//! Deterministic synthetic DICOM: the input side of every load test and
//! end-to-end test.
//!
//! A [`SeriesSpec`] (modality, size, seed, site attributes) fully determines
//! the bytes of every instance, so a test can regenerate exactly what it sent
//! and compare it with what the gateway stored, without fixture files.

mod attributes;
mod encode;
pub mod hostile;
mod phantom;
mod population;
mod series;
mod spec;
mod uid;

use dicom_object::InMemDicomObject;

pub use encode::{
    IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, SynthError, transcode_dataset,
};
pub use population::synthetic_patient;
pub use series::SeriesGenerator;
pub use spec::{SeriesSpec, SynthModality, UnknownModality};
pub use uid::{SYNTH_UID_ROOT, is_valid_uid};

/// One generated instance: its identifying UIDs and the full data set.
///
/// The UIDs are copied out of the data set so callers (the SCU, tests) need
/// not dig through it.
#[derive(Clone)]
pub struct SynthInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub dataset: InMemDicomObject,
}

impl std::fmt::Debug for SynthInstance {
    // The data set holds megabytes of pixels; show only what identifies it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SynthInstance")
            .field("sop_class_uid", &self.sop_class_uid)
            .field("sop_instance_uid", &self.sop_instance_uid)
            .field("study_instance_uid", &self.study_instance_uid)
            .field("series_instance_uid", &self.series_instance_uid)
            .finish_non_exhaustive()
    }
}

/// Generate every instance of the series described by `spec`.
///
/// Deterministic: the same spec always yields the same instances. For large
/// series prefer [`SeriesGenerator`], which yields one instance at a time.
pub fn generate_series(spec: &SeriesSpec) -> Vec<SynthInstance> {
    SeriesGenerator::new(spec).collect()
}

/// Slice indices (0-based) of a CT series that show the hyperdense blob;
/// empty for other modalities. The ground truth for inference tests.
pub fn hyperdense_slices(spec: &SeriesSpec) -> std::ops::Range<usize> {
    SeriesGenerator::new(spec).hyperdense_slices()
}

#[cfg(test)]
mod tests;
