//! Byte encodings of a synthetic instance: a bare data set for P-DATA and a
//! Part 10 file for tools such as dcmtk's `storescu`.

use dicom_core::header::HasLength;
use dicom_encoding::TransferSyntaxIndex;
use dicom_encoding::transfer_syntax::{Endianness, TransferSyntax};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::SynthInstance;
use dicom_dictionary_std::uids;

/// Implementation Class UID written into the file meta of generated files,
/// under the same `2.25` root as the synthetic UIDs.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.255693487321870394426541216113734155451";
/// Implementation Version Name written into the file meta.
pub const IMPLEMENTATION_VERSION_NAME: &str = "DICOM-LOADTEST";

/// Why an instance could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("unknown transfer syntax `{0}`")]
    UnknownTransferSyntax(String),
    /// Pixels are generated as native little-endian words, so only native
    /// little-endian transfer syntaxes can carry them without a codec.
    #[error("transfer syntax `{0}` is not a native little-endian syntax")]
    UnsupportedTransferSyntax(String),
    #[error("could not encode data set")]
    Encode(#[source] Box<dicom_object::WriteError>),
    #[error("could not decode data set")]
    Decode(#[source] Box<dicom_object::ReadError>),
    #[error("could not build file meta group")]
    FileMeta(#[source] Box<dicom_object::meta::Error>),
}

impl SynthInstance {
    /// The data set encoded (no preamble, no file meta) in the given
    /// transfer syntax: what travels in P-DATA after the C-STORE command.
    ///
    /// Supports the native little-endian syntaxes, implicit VR LE
    /// (`1.2.840.10008.1.2`) and explicit VR LE (`1.2.840.10008.1.2.1`).
    pub fn encode_dataset(&self, ts_uid: &str) -> Result<Vec<u8>, SynthError> {
        let ts = native_transfer_syntax(ts_uid)?;
        let mut out = Vec::with_capacity(self.estimated_len());
        self.dataset
            .write_dataset_with_ts(&mut out, ts)
            .map_err(|e| SynthError::Encode(Box::new(e)))?;
        Ok(out)
    }

    /// A complete Part 10 file: 128-byte preamble, `DICM`, file meta group
    /// and the data set in explicit VR little endian.
    pub fn to_part10(&self) -> Result<Vec<u8>, SynthError> {
        let ts_uid = uids::EXPLICIT_VR_LITTLE_ENDIAN;
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(self.sop_class_uid.as_str())
            .media_storage_sop_instance_uid(self.sop_instance_uid.as_str())
            .transfer_syntax(ts_uid)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
            .build()
            .map_err(|e| SynthError::FileMeta(Box::new(e)))?;
        let ts = native_transfer_syntax(ts_uid)?;
        let mut out = Vec::with_capacity(self.estimated_len() + 512);
        out.extend_from_slice(&[0u8; 128]);
        out.extend_from_slice(b"DICM");
        meta.write(&mut out)
            .map_err(|e| SynthError::FileMeta(Box::new(e)))?;
        self.dataset
            .write_dataset_with_ts(&mut out, ts)
            .map_err(|e| SynthError::Encode(Box::new(e)))?;
        Ok(out)
    }

    /// Pixel data dominates; a few kilobytes cover everything else.
    fn estimated_len(&self) -> usize {
        let pixels = self
            .dataset
            .get(dicom_dictionary_std::tags::PIXEL_DATA)
            .map_or(0, |element| element.value().length().0 as usize);
        pixels + 4096
    }
}

/// Re-encode a data set from one native little-endian transfer syntax to
/// another: the slow path for a peer that refused the syntax a run prepared.
pub fn transcode_dataset(bytes: &[u8], from_ts: &str, to_ts: &str) -> Result<Vec<u8>, SynthError> {
    let from = native_transfer_syntax(from_ts)?;
    let to = native_transfer_syntax(to_ts)?;
    let dataset = InMemDicomObject::read_dataset_with_ts(bytes, from)
        .map_err(|e| SynthError::Decode(Box::new(e)))?;
    let mut out = Vec::with_capacity(bytes.len() + 1024);
    dataset
        .write_dataset_with_ts(&mut out, to)
        .map_err(|e| SynthError::Encode(Box::new(e)))?;
    Ok(out)
}

/// Look up a transfer syntax that can carry native little-endian pixels.
pub(crate) fn native_transfer_syntax(ts_uid: &str) -> Result<&'static TransferSyntax, SynthError> {
    // Negotiated UIDs may arrive padded with a trailing NUL or space.
    let trimmed = ts_uid.trim_end_matches(['\0', ' ']);
    let ts = TransferSyntaxRegistry
        .get(trimmed)
        .ok_or_else(|| SynthError::UnknownTransferSyntax(trimmed.to_string()))?;
    if ts.is_codec_free() && ts.endianness() == Endianness::Little {
        Ok(ts)
    } else {
        Err(SynthError::UnsupportedTransferSyntax(trimmed.to_string()))
    }
}
