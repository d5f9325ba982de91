//! Synthetic DICOM and C-STORE / DICOMweb load drivers for the gateway.
//!
//! The crate sits outside the pipeline, on the modality side of it: it plays
//! the part of a scanner (or several), so the gateway can be measured and
//! tested end to end without patient data.
//!
//! - [`synth`]: deterministic series generator (CT, MR, CR, DX).
//! - [`scu`]: our own C-STORE / C-ECHO SCU on dicom-ul's async client.
//! - [`run`]: spreads a prepared series over parallel associations and
//!   records every acknowledgement.
//! - [`report`]: throughput, latency percentiles and failures, for people
//!   and as JSON.
//! - [`dicomweb`]: STOW-RS, QIDO-RS and WADO-RS load over HTTPS, with
//!   their own reports in the same style.

#![forbid(unsafe_code)]

pub mod dicomweb;
pub mod report;
pub mod run;
pub mod scu;
pub mod synth;

pub use scu::{ScuError, ScuOptions, StoreAck, StoreClient};
pub use synth::{SeriesSpec, SynthError, SynthInstance, SynthModality, generate_series};
