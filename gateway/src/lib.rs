//! DICOM inference gateway.
//!
//! The pipeline, one way through:
//!
//! ```text
//! modality ──C-STORE──▶ ingest::dimse ──▶ store (durable file + index) ──▶ …
//! ```
//!
//! `ingest` receives instances and answers peers; `store` makes them durable
//! (fsynced file, SQLite index) before any success is sent; `sites` decides
//! who may send; `audit` records decisions in a hash-chained trail;
//! `telemetry` holds tracing and Prometheus metrics; `admin` is the
//! operator's API (routes, models, audit, reload) and its CLI; `config` turns TOML,
//! environment and flags into one validated [`config::GatewayConfig`];
//! `app` wires it all and runs it. See ARCHITECTURE.md for the full map.

pub mod admin;
pub mod app;
pub mod assemble;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod certs;
pub mod config;
pub mod egress;
pub mod infer;
pub mod ingest;
pub mod jobs;
pub mod models;
pub mod pixels;
pub mod report;
pub mod results;
pub mod route;
pub mod sites;
pub mod store;
pub mod telemetry;
pub mod time;
