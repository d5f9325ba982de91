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
use crate::store::length_guard::{self, Encoding};

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
/// Little Endian into `tmp_dir`. Blocking: call it from `spawn_blocking`.
pub fn convert_to_explicit_le(
    source: &Path,
    stored_syntax: &str,
    tmp_dir: &Path,
) -> Result<ConvertedFile, String> {
    if !can_convert_to_explicit_le(stored_syntax) {
        return Err(format!("{stored_syntax} is not a native transfer syntax"));
    }
    check_whole_file(source, stored_syntax)?;
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

/// The parser allocates declared lengths up front: check every one against
/// the file before reading it whole (the ingest check stopped at Pixel Data).
fn check_whole_file(source: &Path, stored_syntax: &str) -> Result<(), String> {
    use std::io::{BufReader, Read, Seek, SeekFrom};
    let mut file =
        std::fs::File::open(source).map_err(|e| format!("cannot open stored file: {e}"))?;
    let total = file.metadata().map_err(|e| e.to_string())?.len();
    // Skip preamble, DICM and the file meta group (explicit VR LE, group length first).
    let mut head = [0u8; 144];
    file.read_exact(&mut head)
        .map_err(|_| "stored file is too short".to_string())?;
    let meta_length = u32::from_le_bytes([head[140], head[141], head[142], head[143]]) as u64;
    let dataset_offset = 144 + meta_length;
    file.seek(SeekFrom::Start(dataset_offset))
        .map_err(|e| e.to_string())?;
    let (encoding, deflated) = Encoding::of_transfer_syntax(stored_syntax);
    let reader = BufReader::new(file);
    if deflated {
        length_guard::check_lengths_to_end(
            flate2::read::DeflateDecoder::new(reader),
            None,
            encoding,
        )
    } else {
        length_guard::check_lengths_to_end(
            reader,
            Some(total.saturating_sub(dataset_offset)),
            encoding,
        )
    }
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
