//! Fuzz targets for the DIMSE decoders that see peer bytes first: the
//! command-set decoder (`DimseCommand::decode`) and the PDU reader of the
//! data-transfer phase (`Wire`). Property-based (proptest, stable Rust), each
//! with a seed corpus of hostile inputs built by our own code and a bounded
//! number of cases, so `cargo test` (and CI) runs every target in seconds.
//!
//! A counting global allocator ([`peak`]) records the largest single
//! allocation made on the test thread while a decoder runs, so "nothing is
//! allocated by a declared length" is measured, not assumed: the mutations
//! plant lengths of megabytes to gigabytes, far above the bounds asserted.

mod command;
mod corpus;
mod mutate;
mod negotiation;
mod peak;
mod wire;

#[global_allocator]
static ALLOCATOR: peak::PeakAllocator = peak::PeakAllocator;
