//! Results, after `infer`: what a model found, written as DICOM objects
//! (Comprehensive SR) and as a JSON summary.

pub mod sr;

pub use sr::{
    Algorithm, COMPREHENSIVE_SR_STORAGE, Finding, ResultProvenance, SourceInstance, SrError,
    SrRequest, StudyContext, derived_uid, write_sr,
};
