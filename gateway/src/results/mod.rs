//! Results, after `infer`: what a model found, written as DICOM objects
//! (Comprehensive SR) and as a JSON summary.
// STUB-MERGE: replaced by the sr branch.
pub mod sr {
pub const COMPREHENSIVE_SR_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.88.33";
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyContext { pub study_instance_uid: String, pub patient_name: Option<String>, pub patient_id: Option<String>, pub patient_birth_date: Option<String>, pub patient_sex: Option<String>, pub study_date: Option<String>, pub study_time: Option<String>, pub accession_number: Option<String>, pub study_id: Option<String>, pub referring_physician_name: Option<String>, pub study_description: Option<String> }
#[derive(Debug, Clone, PartialEq, Eq)] pub struct SourceInstance { pub sop_class_uid: String, pub sop_instance_uid: String, pub series_instance_uid: String }
#[derive(Debug, Clone, PartialEq, Eq)] pub struct Algorithm { pub name: String, pub version: String, pub sha256: String, pub engine: String, pub demo: bool, pub clinical_use: String, pub intended_use: String, pub limitations: Vec<String> }
#[derive(Debug, Clone, PartialEq)] pub struct Finding { pub label: String, pub score: f32, pub threshold: f32, pub positive: bool }
#[derive(Debug, Clone, PartialEq, Eq)] pub struct ResultProvenance { pub route: String, pub step: String, pub step_reason: Option<String> }
#[derive(Debug, Clone)] pub struct SrRequest { pub study: StudyContext, pub sources: Vec<SourceInstance>, pub algorithm: Algorithm, pub provenance: ResultProvenance, pub findings: Vec<Finding>, pub series_instance_uid: String, pub sop_instance_uid: String, pub series_number: i64, pub series_description: String, pub content_date: String, pub content_time: String, pub manufacturer: String, pub software_version: String, pub station_ae_title: String }
#[derive(Debug, thiserror::Error)] #[error("sr")] pub struct SrError;
pub fn write_sr(_r: &SrRequest) -> Result<Vec<u8>, SrError> { Err(SrError) }
pub fn derived_uid(root: &str, _p: &[&str]) -> String { root.to_string() }
}
