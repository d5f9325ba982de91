//! The DIMSE message layer (PS3.7, PS3.8 E) shared by every DICOM peer in
//! the workspace: the gateway's SCP (`gateway/src/dimse/`), its C-STORE SCU
//! for egress (`gateway/src/egress/`) and the load tool's SCU
//! (`loadtest/src/scu/`).
//!
//! It sits below associations: it knows command sets, P-DATA fragments and
//! status codes, never sockets, deadlines or what a status means for a
//! delivery or a load run. Each caller keeps its own error type and turns a
//! [`MessageError`] into it.
//!
//! - [`command`]: Command Field and Command Data Set Type values, the
//!   request command sets we send and the response fields we read, always
//!   implicit VR little endian. Decoding a *peer's* bytes here trusts
//!   dicom-rs's parser: the SCP runs its bounded validator before calling it.
//! - [`pdata`]: P-DATA-TF framing of a command or a data set into PDUs no
//!   larger than the peer's maximum.
//! - [`status`]: status codes and the classes callers act on.
//! - [`association`]: wording for A-ASSOCIATE-RJ results and sources, and
//!   dicom-ul's errors sorted into the cases the SCUs act on.

#![forbid(unsafe_code)]

pub mod association;
pub mod command;
pub mod pdata;
pub mod status;

pub use command::{
    DimseResponse, MAX_COMMAND_LEN, MessageError, NO_DATA_SET, command_field, parse_response,
};
pub use pdata::Fragment;
