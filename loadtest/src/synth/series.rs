//! Turns a [`SeriesSpec`] into instances, one at a time.
//!
//! Randomness is split into independent ChaCha streams (study, series,
//! per-instance pixel seeds) so that, for example, a series placed into an
//! existing study keeps its own UIDs, and the pixel noise of one slice never
//! shifts the UIDs of the next.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::attributes::{InstanceContext, instance_dataset};
use super::phantom::{self, Lesion};
use super::uid::{stable_hash, uid_from_rng};
use super::{SeriesSpec, SynthInstance, SynthModality};

/// ChaCha stream used for study-level draws; series use the modality's id.
const STUDY_STREAM: u64 = 100;

/// Study- and patient-level values shared by every series of a study.
#[derive(Debug, Clone)]
pub(crate) struct StudyContext {
    pub study_instance_uid: String,
    pub accession_number: String,
    pub study_id: String,
    pub study_date: String,
    pub study_time: String,
    pub patient_birth_date: String,
    pub patient_sex: &'static str,
}

impl StudyContext {
    /// Study values come from the study UID when one is given, so every
    /// series put into the same study agrees on accession number and date.
    pub fn new(spec: &SeriesSpec) -> Self {
        let (study_seed, stream) = match &spec.study_instance_uid {
            Some(uid) => (stable_hash(uid.as_bytes()), STUDY_STREAM),
            None => (spec.seed, STUDY_STREAM + spec.modality.stream_id()),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(study_seed);
        rng.set_stream(stream);
        let minted_uid = uid_from_rng(&mut rng);
        let study_instance_uid = spec.study_instance_uid.clone().unwrap_or(minted_uid);
        let accession_number = format!("ACC{:09}", rng.random_range(0..1_000_000_000u32));
        let study_id = rng.random_range(1..100_000u32).to_string();
        let study_date = format!(
            "2025{:02}{:02}",
            rng.random_range(1..=12u32),
            rng.random_range(1..=28u32)
        );
        let study_time = format!(
            "{:02}{:02}{:02}",
            rng.random_range(7..19u32),
            rng.random_range(0..60u32),
            rng.random_range(0..60u32)
        );

        // Patient values follow the patient ID, as they would in a RIS.
        let mut patient_rng = ChaCha8Rng::seed_from_u64(stable_hash(spec.patient_id.as_bytes()));
        let patient_birth_date = format!(
            "{}{:02}{:02}",
            patient_rng.random_range(1940..2000u32),
            patient_rng.random_range(1..=12u32),
            patient_rng.random_range(1..=28u32)
        );
        let patient_sex = if patient_rng.random_bool(0.5) {
            "F"
        } else {
            "M"
        };

        StudyContext {
            study_instance_uid,
            accession_number,
            study_id,
            study_date,
            study_time,
            patient_birth_date,
            patient_sex,
        }
    }
}

/// Series-level values, drawn once before the first instance.
#[derive(Debug, Clone)]
pub(crate) struct SeriesContext {
    pub series_instance_uid: String,
    pub frame_of_reference_uid: String,
    pub series_number: u32,
    /// Minutes after the study time at which this series was acquired.
    pub minutes_after_study: u32,
    pub lesion: Option<Lesion>,
}

/// Generates the instances of one series lazily, so a caller can encode or
/// write each instance and drop it rather than hold the whole series.
#[derive(Debug, Clone)]
pub struct SeriesGenerator {
    spec: SeriesSpec,
    study: StudyContext,
    series: SeriesContext,
    rng: ChaCha8Rng,
    next_index: usize,
}

impl SeriesGenerator {
    pub fn new(spec: &SeriesSpec) -> Self {
        let study = StudyContext::new(spec);
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(spec.modality.stream_id());
        let series_instance_uid = uid_from_rng(&mut rng);
        let frame_of_reference_uid = uid_from_rng(&mut rng);
        let series_number = rng.random_range(1..100u32);
        let minutes_after_study = rng.random_range(1..30u32);
        let lesion = draw_lesion(&mut rng, spec);
        SeriesGenerator {
            spec: spec.clone(),
            study,
            series: SeriesContext {
                series_instance_uid,
                frame_of_reference_uid,
                series_number,
                minutes_after_study,
                lesion,
            },
            rng,
            next_index: 0,
        }
    }

    /// Slice indices (0-based) that carry the hyperdense blob; empty for
    /// modalities other than CT. Lets inference tests know the ground truth.
    pub fn hyperdense_slices(&self) -> std::ops::Range<usize> {
        self.series
            .lesion
            .as_ref()
            .map_or(0..0, |lesion| lesion.slices.clone())
    }
}

impl Iterator for SeriesGenerator {
    type Item = SynthInstance;

    fn next(&mut self) -> Option<SynthInstance> {
        let index = self.next_index;
        if index >= self.spec.instances {
            return None;
        }
        self.next_index += 1;
        let sop_instance_uid = uid_from_rng(&mut self.rng);
        let pixel_seed: u64 = self.rng.random();
        let spec = &self.spec;
        // Centre of the slice along the series, 0 = first, 1 = last.
        let position = (index as f32 + 0.5) / spec.instances as f32;
        let pixels = match spec.modality {
            SynthModality::Ct => {
                let lesion = self
                    .series
                    .lesion
                    .as_ref()
                    .filter(|lesion| lesion.slices.contains(&index));
                phantom::ct_head_slice(spec.rows, spec.columns, position, lesion, pixel_seed)
            }
            SynthModality::Mr => {
                phantom::mr_brain_slice(spec.rows, spec.columns, position, pixel_seed)
            }
            SynthModality::Cr | SynthModality::Dx => {
                phantom::chest_radiograph(spec.rows, spec.columns, pixel_seed)
            }
        };
        let dataset = instance_dataset(InstanceContext {
            spec,
            study: &self.study,
            series: &self.series,
            index,
            sop_instance_uid: &sop_instance_uid,
            pixels,
        });
        Some(SynthInstance {
            sop_class_uid: spec.modality.sop_class_uid().to_string(),
            sop_instance_uid,
            study_instance_uid: self.study.study_instance_uid.clone(),
            series_instance_uid: self.series.series_instance_uid.clone(),
            dataset,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.spec.instances.saturating_sub(self.next_index);
        (left, Some(left))
    }
}

impl ExactSizeIterator for SeriesGenerator {}

/// Where the CT blob goes. Drawn for every modality so that the RNG
/// sequence (and thus the instance UIDs) does not depend on the modality.
fn draw_lesion(rng: &mut ChaCha8Rng, spec: &SeriesSpec) -> Option<Lesion> {
    let n = spec.instances;
    let center = rng.random_range(n / 4..=(3 * n / 4).max(n / 4));
    let half_width = n / 20;
    let offset = (
        rng.random_range(-0.4..0.4f32),
        rng.random_range(-0.3..0.3f32),
    );
    let radius = rng.random_range(0.015..0.03f32);
    let hounsfield = rng.random_range(60..=80);
    (spec.modality == SynthModality::Ct && n > 0 && spec.hyperdense_lesion).then(|| Lesion {
        slices: center.saturating_sub(half_width)..(center + half_width + 1).min(n),
        offset,
        radius,
        hounsfield,
    })
}
