//! The one conversion WADO-RS does: native (uncompressed) encodings to
//! Explicit VR Little Endian, the default transfer syntax of DICOMweb
//! (PS3.18 8.7.3.4 note 2 expects every origin server to offer it).
//!
//! Implicit VR Little Endian, Explicit VR Big Endian and Deflated Explicit
//! VR Little Endian hold the same pixel values as Explicit VR Little Endian;
//! only the encoding changes, so nothing is lost. Compressed syntaxes are
//! still returned only as stored. The converted file is written to the data
//! directory's `tmp/` (never held whole in memory across a series) and
//! deleted when the response is done with it.

use std::path::{Path, PathBuf};

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::OpenFileOptions;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::transfer_syntax::{
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
};
use crate::store::validate::{self, Limits};

/// Whether an instance stored as `uid` can be sent as Explicit VR Little Endian.
pub fn can_convert_to_explicit_le(uid: &str) -> bool {
    matches!(
        uid,
        IMPLICIT_VR_LITTLE_ENDIAN | EXPLICIT_VR_BIG_ENDIAN | DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    )
}

/// A converted copy that is deleted when dropped.
#[derive(Debug)]
pub struct ConvertedFile {
    pub path: PathBuf,
    pub size: u64,
}

impl Drop for ConvertedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes `source` (stored as `stored_syntax`) re-encoded as Explicit VR
/// Little Endian into `tmp_dir`, after the validator has walked the whole
/// stored data set under `limits`. Blocking: call it from `spawn_blocking`.
pub fn convert_to_explicit_le(
    source: &Path,
    stored_syntax: &str,
    tmp_dir: &Path,
    limits: &Limits,
) -> Result<ConvertedFile, String> {
    if !can_convert_to_explicit_le(stored_syntax) {
        return Err(format!("{stored_syntax} is not a native transfer syntax"));
    }
    check_whole_file(source, stored_syntax, limits)?;
    let mut object = OpenFileOptions::new()
        .open_file(source)
        .map_err(|e| format!("stored file does not parse: {e}"))?;
    let explicit_le = TransferSyntaxRegistry
        .get(EXPLICIT_VR_LITTLE_ENDIAN)
        .ok_or("explicit VR little endian is not registered")?;
    object.meta_mut().set_transfer_syntax(explicit_le);
    object.meta_mut().update_information_group_length();
    let path = tmp_dir.join(format!(
        "wado-{}-{}.dcm",
        crate::time::unix_nanos(),
        std::process::id()
    ));
    let mut converted = ConvertedFile { path, size: 0 };
    object
        .write_to_file(&converted.path)
        .map_err(|e| format!("cannot write converted copy: {e}"))?;
    converted.size = std::fs::metadata(&converted.path)
        .map_err(|e| format!("cannot stat converted copy: {e}"))?
        .len();
    Ok(converted)
}

/// The parser allocates declared lengths up front, recurses into sequences
/// and inflates without a cap: walk the whole stored data set, Pixel Data
/// included, before reading it in full.
fn check_whole_file(source: &Path, stored_syntax: &str, limits: &Limits) -> Result<(), String> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(source).map_err(|e| format!("cannot open stored file: {e}"))?;
    // Preamble, DICM and the file meta group length (explicit VR LE, first).
    let mut head = [0u8; 144];
    file.read_exact(&mut head)
        .map_err(|_| "stored file is too short".to_string())?;
    let meta_length = u32::from_le_bytes([head[140], head[141], head[142], head[143]]) as u64;
    validate::validate_file(source, 144 + meta_length, stored_syntax, limits)
        .map(|_| ())
        .map_err(|violation| format!("stored file fails validation: {violation}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_native_syntaxes_convert() {
        assert!(can_convert_to_explicit_le(IMPLICIT_VR_LITTLE_ENDIAN));
        assert!(can_convert_to_explicit_le(EXPLICIT_VR_BIG_ENDIAN));
        assert!(can_convert_to_explicit_le(
            DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
        ));
        assert!(!can_convert_to_explicit_le(EXPLICIT_VR_LITTLE_ENDIAN));
        assert!(!can_convert_to_explicit_le("1.2.840.10008.1.2.4.70"));
    }
}
