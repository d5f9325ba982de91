//! Ingest: where instances enter the gateway. Only this stage (and egress)
//! talks to DICOM peers; everything it accepts goes through `store`.

pub mod dicomweb;
pub mod dimse;
