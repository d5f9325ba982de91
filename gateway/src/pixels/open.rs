//! Opening a stored instance for the pixel pipeline, at the boundary
//! between the store (bytes a peer sent, kept as sent) and dicom-rs.
//!
//! dicom-parser reserves and zero-fills each declared length before it
//! reads the value, so a stored 1 KiB file whose Pixel Data header claims
//! 1.5 GiB costs 1.5 GiB when opened in full. [`open_stored`] first walks
//! every element header of the file (Pixel Data and its fragments
//! included) and checks each length against the bytes that follow, and
//! only then lets `open_file` read it. [`catch_decoder_panic`] is the task
//! boundary the runner decodes inside: a panic in a decoder becomes a
//! [`PixelError`] of the image, never a crashed or retried job.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use dicom_object::{FileDicomObject, InMemDicomObject};

use super::{MAX_PIXEL_DATA_BYTES, PixelError};
use crate::store::validate::{Limits, MAX_CONFIGURABLE_DEPTH, validate_file};

/// The largest stored instance the pipeline reads in full (and the most a
/// deflated one may inflate to): all of its pixel data at the cap, and
/// room for everything else.
pub const MAX_STORED_INSTANCE_BYTES: u64 = MAX_PIXEL_DATA_BYTES + 64 * 1024 * 1024;
/// The file meta group we write is a few hundred bytes.
const MAX_FILE_META_BYTES: u32 = 64 * 1024;
/// Preamble and `DICM`.
const PREAMBLE_BYTES: usize = 132;
/// (0002,0000) UL, explicit VR little endian: tag, VR, 2-byte length, value.
const GROUP_LENGTH_ELEMENT_BYTES: usize = 12;
const FILE_META_GROUP: u16 = 0x0002;
const TRANSFER_SYNTAX_UID: u16 = 0x0010;

/// Reads a stored Part 10 file in full once every declared length in it
/// has been checked against the file.
pub fn open_stored(path: &Path) -> Result<FileDicomObject<InMemDicomObject>, PixelError> {
    check_stored_lengths(path)?;
    dicom_object::open_file(path)
        .map_err(|e| PixelError::Unreadable(format!("cannot read stored instance: {e}")))
}

/// Runs `decode` and turns a panic inside it (a decoder library's) into
/// [`PixelError::DecoderPanic`]. Whatever `decode` touched is dropped with
/// it, so nothing half-built is seen afterwards.
pub fn catch_decoder_panic<T>(
    decode: impl FnOnce() -> Result<T, PixelError>,
) -> Result<T, PixelError> {
    catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(PixelError::DecoderPanic(message))
    })
}

/// Walks the whole data set of the file at `path` with the store's
/// validator (inflated, for the deflated syntax, up to
/// [`MAX_STORED_INSTANCE_BYTES`]).
fn check_stored_lengths(path: &Path) -> Result<(), PixelError> {
    let unreadable =
        |e: io::Error| PixelError::Unreadable(format!("cannot read stored instance: {e}"));
    let file = File::open(path).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len();
    if size > MAX_STORED_INSTANCE_BYTES {
        return Err(PixelError::TooLarge {
            declared: size,
            limit: MAX_STORED_INSTANCE_BYTES,
        });
    }
    let (meta_bytes, transfer_syntax) = read_file_meta(&mut BufReader::new(file))?;
    let limits = Limits {
        max_depth: MAX_CONFIGURABLE_DEPTH,
        max_dataset_bytes: MAX_STORED_INSTANCE_BYTES,
    };
    validate_file(path, meta_bytes, &transfer_syntax, &limits)
        .map(drop)
        .map_err(|violation| PixelError::Unreadable(violation.to_string()))
}

/// Reads preamble and file meta group, leaving `reader` at the data set.
/// Returns the bytes consumed and the transfer syntax. The group must
/// start with its group length and end exactly where that says, as
/// dicom-rs reads it, so both find the data set at the same offset.
fn read_file_meta(reader: &mut impl Read) -> Result<(u64, String), PixelError> {
    let bad = |why: &str| PixelError::Unreadable(format!("stored file meta: {why}"));
    let mut head = [0u8; PREAMBLE_BYTES + GROUP_LENGTH_ELEMENT_BYTES];
    reader
        .read_exact(&mut head)
        .map_err(|_| bad("shorter than preamble and group length"))?;
    let element = &head[PREAMBLE_BYTES..];
    if &head[128..PREAMBLE_BYTES] != b"DICM" || element[..6] != [0x02, 0x00, 0x00, 0x00, b'U', b'L']
    {
        return Err(bad("no DICM prefix and group length"));
    }
    let group_length = u32::from_le_bytes([element[8], element[9], element[10], element[11]]);
    if group_length > MAX_FILE_META_BYTES {
        return Err(bad("group length over the limit"));
    }
    let mut group = vec![0u8; group_length as usize];
    reader
        .read_exact(&mut group)
        .map_err(|_| bad("shorter than its group length"))?;
    let transfer_syntax = meta_transfer_syntax(&group).ok_or_else(|| bad("malformed group"))?;
    let consumed = (PREAMBLE_BYTES + GROUP_LENGTH_ELEMENT_BYTES) as u64 + u64::from(group_length);
    Ok((consumed, transfer_syntax))
}

/// Walks the explicit VR little endian elements of the file meta group
/// (after its group length) and returns the Transfer Syntax UID; `None`
/// when an element is not of group 0002 or overruns the group.
fn meta_transfer_syntax(group: &[u8]) -> Option<String> {
    let mut at = 0;
    let mut transfer_syntax = None;
    while at < group.len() {
        let header = group.get(at..at + 8)?;
        let tag_group = u16::from_le_bytes([header[0], header[1]]);
        let element = u16::from_le_bytes([header[2], header[3]]);
        if tag_group != FILE_META_GROUP {
            return None;
        }
        let (length, value_at) = match &header[4..6] {
            b"OB" | b"OW" | b"UN" | b"UT" | b"SQ" | b"UC" | b"UR" | b"OD" | b"OF" | b"OL"
            | b"OV" => {
                let long = group.get(at + 8..at + 12)?;
                (
                    u32::from_le_bytes([long[0], long[1], long[2], long[3]]) as usize,
                    at + 12,
                )
            }
            _ => (
                usize::from(u16::from_le_bytes([header[6], header[7]])),
                at + 8,
            ),
        };
        let value = group.get(value_at..value_at.checked_add(length)?)?;
        if element == TRANSFER_SYNTAX_UID {
            let text = std::str::from_utf8(value).ok()?;
            transfer_syntax = Some(text.trim_end_matches(['\0', ' ']).to_string());
        }
        at = value_at + length;
    }
    transfer_syntax
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (0002,0010) UI `uid`, explicit VR little endian.
    fn transfer_syntax_element(uid: &str) -> Vec<u8> {
        let mut value = uid.as_bytes().to_vec();
        if value.len() % 2 == 1 {
            value.push(0);
        }
        let mut out = vec![0x02, 0x00, 0x10, 0x00, b'U', b'I'];
        out.extend((value.len() as u16).to_le_bytes());
        out.extend(value);
        out
    }

    #[test]
    fn the_file_meta_walk_finds_the_syntax_and_refuses_what_dicom_rs_would_misread() {
        let group = transfer_syntax_element("1.2.840.10008.1.2.1");
        assert_eq!(
            meta_transfer_syntax(&group).as_deref(),
            Some("1.2.840.10008.1.2.1")
        );
        // An element of another group inside the meta group's length.
        let mut foreign = group.clone();
        foreign[0] = 0x08;
        assert_eq!(meta_transfer_syntax(&foreign), None);
        // An element running past the group length.
        assert_eq!(meta_transfer_syntax(&group[..group.len() - 2]), None);
    }

    #[test]
    fn a_group_length_that_lies_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.dcm");
        let group = transfer_syntax_element("1.2.840.10008.1.2.1");
        let mut bytes = vec![0u8; 128];
        bytes.extend(b"DICM");
        bytes.extend([0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        // Says 4 bytes more than the group holds: the data set would start
        // inside what follows.
        bytes.extend((group.len() as u32 + 4).to_le_bytes());
        bytes.extend(&group);
        bytes.extend([0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'C', b'T']);
        std::fs::write(&path, bytes).unwrap();
        let error = open_stored(&path).unwrap_err();
        assert!(matches!(error, PixelError::Unreadable(_)), "{error}");
    }
}
