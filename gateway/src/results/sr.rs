//! Comprehensive SR writer, in `results` after `infer`: turns one inference
//! outcome into one DICOM Comprehensive SR in the source study, in a new
//! series, ready for the store and egress.
//!
//! The document holds the patient and study attributes copied from the
//! source, the evidence (which source instances were read), the algorithm
//! (name, version, SHA-256 of the model file, engine, demo status, intended
//! use, limitations), why it ran (route and step), and per output label the
//! score, the operating-point threshold and the decision. The IOD modules
//! are in `document`, the content tree in `tree`, the codes (and the private
//! scheme `99DCMGW`) in `codes`.
//!
//! Writing is a pure function of the request: the caller picks the UIDs
//! (with [`derived_uid`]) and the content date and time, so re-running a
//! job yields a byte-identical file, which the store treats as a duplicate.

mod codes;
mod content;
mod document;
mod tree;
mod vr;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_tools;

use dicom_dictionary_std::uids;
use dicom_object::meta::FileMetaTableBuilder;
use sha2::{Digest, Sha256};

use crate::store::uid::{MAX_UID_LENGTH, UidError, validate_uid};
use crate::store::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

pub use codes::PRIVATE_SCHEME;

pub const COMPREHENSIVE_SR_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.88.33";

/// Patient and study attributes copied from the source instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyContext {
    pub study_instance_uid: String,
    pub patient_name: Option<String>,
    pub patient_id: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_id: Option<String>,
    pub referring_physician_name: Option<String>,
    pub study_description: Option<String>,
}

/// One instance the model read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub series_instance_uid: String,
}

/// The model that produced the result, as its manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Algorithm {
    pub name: String,
    pub version: String,
    /// SHA-256 of the model file, 64 hex digits.
    pub sha256: String,
    /// Engine kind that ran it: "onnx", "onnxruntime", "triton".
    pub engine: String,
    pub demo: bool,
    pub clinical_use: String,
    pub intended_use: String,
    pub limitations: Vec<String>,
}

/// One output label of the model, thresholded at its operating point.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub label: String,
    pub score: f32,
    pub threshold: f32,
    /// The decision as the caller took it (written as given, not recomputed,
    /// so the SR says exactly what the rest of the gateway acted on).
    pub positive: bool,
}

/// Which route and which of its steps produced the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultProvenance {
    pub route: String,
    /// "primary", "fallback", …
    pub step: String,
    pub step_reason: Option<String>,
}

/// Everything one SR is made from.
#[derive(Debug, Clone)]
pub struct SrRequest {
    pub study: StudyContext,
    /// At least one.
    pub sources: Vec<SourceInstance>,
    pub algorithm: Algorithm,
    pub provenance: ResultProvenance,
    /// At least one.
    pub findings: Vec<Finding>,
    /// Chosen by the caller (deterministic, see [`derived_uid`]).
    pub series_instance_uid: String,
    /// Chosen by the caller (deterministic, see [`derived_uid`]).
    pub sop_instance_uid: String,
    pub series_number: i64,
    /// e.g. "AI result: ct-hyperdensity 2.0.0".
    pub series_description: String,
    /// YYYYMMDD (UTC).
    pub content_date: String,
    /// HHMMSS (UTC).
    pub content_time: String,
    /// "DICOM Inference Gateway".
    pub manufacturer: String,
    /// The gateway version.
    pub software_version: String,
    /// The gateway's AE title (Station Name).
    pub station_ae_title: String,
}

/// Why no SR was written. Every variant is a defect in the request, which
/// the same request will hit again: none is retryable.
#[derive(Debug, thiserror::Error)]
pub enum SrError {
    /// The field is named; the UID itself is not, as UIDs stay out of logs.
    #[error("{field} is not a valid uid: {reason}")]
    InvalidUid {
        field: &'static str,
        reason: UidError,
    },
    /// The SR must be a new instance in a new series.
    #[error("{0} is already used by a source instance")]
    ReusedUid(&'static str),
    #[error("no source instances: an sr must reference what the model read")]
    NoSources,
    #[error("no findings: an sr must carry at least one result")]
    NoFindings,
    #[error("finding {index} is invalid: {reason}")]
    InvalidFinding { index: usize, reason: &'static str },
    #[error("algorithm is invalid: {0}")]
    InvalidAlgorithm(&'static str),
    #[error("{field} is not a valid {vr}")]
    InvalidDateTime {
        field: &'static str,
        vr: &'static str,
    },
    #[error("series number {0} does not fit an integer string")]
    InvalidSeriesNumber(i64),
    #[error("cannot encode the sr: {0}")]
    Encoding(String),
}

impl SrError {
    /// Whether writing the same request again may succeed: never, the
    /// writer is a pure function of its input.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// A bounded label for metrics.
    pub fn as_label(&self) -> &'static str {
        match self {
            Self::InvalidUid { .. } => "invalid_uid",
            Self::ReusedUid(_) => "reused_uid",
            Self::NoSources => "no_sources",
            Self::NoFindings => "no_findings",
            Self::InvalidFinding { .. } => "invalid_finding",
            Self::InvalidAlgorithm(_) => "invalid_algorithm",
            Self::InvalidDateTime { .. } => "invalid_date_time",
            Self::InvalidSeriesNumber(_) => "invalid_series_number",
            Self::Encoding(_) => "encoding",
        }
    }
}

/// A complete Part 10 file (preamble, file meta with the gateway's implementation class UID
/// `crate::store::IMPLEMENTATION_CLASS_UID` / `IMPLEMENTATION_VERSION_NAME`, Explicit VR Little Endian).
pub fn write_sr(request: &SrRequest) -> Result<Vec<u8>, SrError> {
    validate(request)?;
    let device_observer_uid = uuid_derived_uid(&[
        "device-observer",
        &request.manufacturer,
        &request.station_ae_title,
    ]);
    let children = tree::root_children(request, &device_observer_uid)?;
    let dataset = document::dataset(request, children);
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
    let file = dataset
        .with_meta(meta)
        .map_err(|e| SrError::Encoding(e.to_string()))?;
    let mut bytes = Vec::with_capacity(8 * 1024);
    file.write_all(&mut bytes)
        .map_err(|e| SrError::Encoding(e.to_string()))?;
    Ok(bytes)
}

/// A valid DICOM UID (<= 64 chars, digits and dots, no leading zeros in components) under `root`,
/// derived deterministically from `parts` (SHA-256 → decimal), so re-running a job yields the same UID.
///
/// The suffix is the SHA-256 of the length-prefixed parts (so `["ab", "c"]`
/// and `["a", "bc"]` differ) as a decimal, cut to at most 39 digits (about
/// 128 bits, as much as a UUID) and to the room the root leaves. When the
/// root is not a valid UID, or leaves fewer than 20 digits (about 64 bits,
/// too few to rule out collisions), the UID is `2.25.` followed by a
/// name-based UUID from the same hash instead (PS3.5 B.2): still valid and
/// still deterministic, though not under the configured root. Config
/// validation should keep roots short enough that this never happens.
pub fn derived_uid(root: &str, parts: &[&str]) -> String {
    let root = root.trim().trim_end_matches('.');
    let digest = parts_digest(parts);
    let room = MAX_UID_LENGTH.saturating_sub(root.len() + 1);
    if validate_uid(root).is_err() || room < MIN_SUFFIX_DIGITS {
        return uuid_uid(&digest);
    }
    let digits = decimal_digits(&digest);
    let suffix = &digits[..digits.len().min(room).min(MAX_SUFFIX_DIGITS)];
    format!("{root}.{suffix}")
}

/// Fewest hash digits we accept under a configured root.
const MIN_SUFFIX_DIGITS: usize = 20;
/// Most hash digits we use: as much entropy as a UUID.
const MAX_SUFFIX_DIGITS: usize = 39;

fn uuid_derived_uid(parts: &[&str]) -> String {
    uuid_uid(&parts_digest(parts))
}

fn parts_digest(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"dicom-gateway uid v1");
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// `2.25.<uuid as integer>`, the UUID being the first 16 bytes of the
/// digest with the version (8, RFC 9562 custom) and variant bits set.
fn uuid_uid(digest: &[u8; 32]) -> String {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format!("2.25.{}", u128::from_be_bytes(bytes))
}

/// The digest as a big-endian integer in decimal, without leading zeros.
fn decimal_digits(digest: &[u8; 32]) -> String {
    let mut number = digest.to_vec();
    let mut digits = Vec::with_capacity(78);
    while number.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 10) as u8;
            remainder = value % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// Checks what the writer cannot repair. Peer text is cleaned, not checked
/// (see `vr`); UIDs, dates the gateway chose, and the numbers are checked.
fn validate(request: &SrRequest) -> Result<(), SrError> {
    let uid = |field: &'static str, value: &str| {
        validate_uid(value).map_err(|reason| SrError::InvalidUid { field, reason })
    };
    uid("study instance uid", &request.study.study_instance_uid)?;
    uid("series instance uid", &request.series_instance_uid)?;
    uid("sop instance uid", &request.sop_instance_uid)?;
    if request.sources.is_empty() {
        return Err(SrError::NoSources);
    }
    for source in &request.sources {
        uid("source sop class uid", &source.sop_class_uid)?;
        uid("source sop instance uid", &source.sop_instance_uid)?;
        uid("source series instance uid", &source.series_instance_uid)?;
    }
    let reused_series = request.series_instance_uid == request.study.study_instance_uid
        || request
            .sources
            .iter()
            .any(|s| s.series_instance_uid == request.series_instance_uid);
    if reused_series {
        return Err(SrError::ReusedUid("series instance uid"));
    }
    if request
        .sources
        .iter()
        .any(|s| s.sop_instance_uid == request.sop_instance_uid)
    {
        return Err(SrError::ReusedUid("sop instance uid"));
    }
    if request.findings.is_empty() {
        return Err(SrError::NoFindings);
    }
    let algorithm = &request.algorithm;
    if vr::lo(&algorithm.name).is_empty() {
        return Err(SrError::InvalidAlgorithm("name is empty"));
    }
    if vr::lo(&algorithm.version).is_empty() {
        return Err(SrError::InvalidAlgorithm("version is empty"));
    }
    let sha = algorithm.sha256.trim();
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SrError::InvalidAlgorithm("sha256 is not 64 hex digits"));
    }
    if vr::lo(&algorithm.engine).is_empty() {
        return Err(SrError::InvalidAlgorithm("engine is empty"));
    }
    if !vr::is_date(&request.content_date) {
        return Err(SrError::InvalidDateTime {
            field: "content date",
            vr: "DA",
        });
    }
    if !vr::is_time(&request.content_time) {
        return Err(SrError::InvalidDateTime {
            field: "content time",
            vr: "TM",
        });
    }
    if i32::try_from(request.series_number).is_err() {
        return Err(SrError::InvalidSeriesNumber(request.series_number));
    }
    Ok(())
}
