//! DICOM inference gateway.
//!
//! The pipeline, one way through:
//!
//! ```text
//! modality ──C-STORE──▶ dimse ────┐
//! PACS ─────STOW-RS───▶ dicomweb ─┴▶ store ─▶ assemble ─▶ route ─▶ jobs
//!   jobs: pixels ─▶ infer (models, cache) ─▶ results ─▶ store ─▶ egress ──▶ PACS
//! ```
//!
//! # Layout, in pipeline order
//!
//! - [`sites`]: who may send (calling AE title and address → site).
//! - [`dimse`]: the DIMSE listener (C-ECHO, C-STORE; admission,
//!   negotiation, our own PDU reader).
//! - [`dicomweb`]: the DICOMweb server (STOW-RS, QIDO-RS, WADO-RS) and, for
//!   now, the results, performance and deliveries APIs served beside it.
//! - [`store`]: the one acceptance path (`Store::accept`, the bounded
//!   validator), durable files and the SQLite index.
//! - [`assemble`]: a quiet series becomes a ready series.
//! - [`route`]: pure rule evaluation and operator route state.
//! - [`jobs`]: the durable job queue and the runner that conducts a ready
//!   series through pixels, inference, results and egress.
//! - [`pixels`]: a stored frame, checked and decoded, becomes a tensor.
//! - [`infer`]: engines (tract, ONNX Runtime, Triton) behind one trait.
//! - [`models`]: the model repository, manifests and hashes.
//! - [`cache`]: result cache (Redis or in-process) and shared route state.
//! - [`results`]: DICOM SR writers.
//! - [`egress`]: forwarding to PACS through a durable retry queue.
//! - [`report`]: per-site performance reports.
//! - [`admin`], [`auth`]: the operator API and CLI; DICOMweb tokens.
//! - [`audit`], [`telemetry`]: the hash-chained trail; tracing and metrics.
//! - [`config`], [`app`]: TOML to a validated configuration; wiring and run.
//! - [`db`]: the database leaf (connection policy, schema steps; the
//!   ordered list is `app::schema`).
//! - [`certs`], [`time`]: development certificates; clock helpers.
//!
//! Modules depend downwards in the order of ARCHITECTURE.md's "Layers"
//! (checked by the `layers` unit test).
//!
//! No module uses `unsafe`. See ARCHITECTURE.md for the full map.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod assemble;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod certs;
pub mod config;
pub mod db;
pub mod dicomweb;
pub mod dimse;
pub mod egress;
pub mod infer;
pub mod jobs;
#[cfg(test)]
mod layers;
pub mod models;
pub mod pixels;
pub mod report;
pub mod results;
pub mod route;
pub mod sites;
pub mod store;
pub mod telemetry;
pub mod time;
