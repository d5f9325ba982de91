//! Results, after `infer`: what a model found, written as DICOM objects
//! (Comprehensive SR) and as a JSON summary.
