//! One part of a STOW-RS body, before it reaches the store: its media
//! type, its preamble and file meta (read with a bounded buffer), and a
//! reader that never polls an ended field.

use actix_multipart::Field;
use futures::TryStreamExt;

use super::{BodyLimits, DicomWebError};
use crate::dimse::negotiation::TRANSFER_SYNTAXES;
use crate::dimse::status;
use crate::dimse::storage_classes::STORAGE_SOP_CLASSES;
use crate::store::uid::validate_uid;

/// Largest file meta group we accept (real ones are a few hundred bytes).
const MAX_META_BYTES: usize = 64 * 1024;
/// Preamble plus `DICM`.
pub(super) const PREAMBLE: usize = 128;

/// A part's first bytes: the parsed file meta, and the bytes read so far
/// (the data set starts at `meta_end`).
pub(super) struct PartHead {
    pub meta: dicom_object::FileMetaTable,
    pub head: Vec<u8>,
    pub meta_end: usize,
}

/// Reads the preamble and file meta group of a part. `Ok(Err(why))` is a
/// part that is not a DICOM file (that instance fails); `Err` breaks the
/// request. Reads at most the preamble and [`MAX_META_BYTES`] plus a chunk.
pub(super) async fn read_part_head(
    part: &mut PartReader<'_>,
    number: usize,
) -> Result<Result<PartHead, String>, DicomWebError> {
    let mut head: Vec<u8> = Vec::new();
    let range = loop {
        match locate_meta(&head) {
            MetaScan::Found(range) => break range,
            MetaScan::NotDicom(why) => return Ok(Err(why)),
            MetaScan::NeedMore => {}
        }
        match part.next_chunk().await? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None if head.is_empty() => {
                return Err(DicomWebError::BadRequest(format!("part {number} is empty")));
            }
            None => {
                return Ok(Err(format!(
                    "part ends after {} bytes, inside the DICOM file header",
                    head.len()
                )));
            }
        }
    };
    Ok(
        dicom_object::FileMetaTable::from_reader(&head[range.clone()])
            .map(|meta| PartHead {
                meta,
                meta_end: range.end,
                head,
            })
            .map_err(|e| format!("file meta information does not parse: {e}")),
    )
}

/// A part must be a single DICOM object (PS3.18 10.5.1.1); anything
/// else is a malformed request, not a failed instance.
pub(super) fn check_part_type(
    content_type: Option<&mime::Mime>,
    number: usize,
) -> Result<(), DicomWebError> {
    match content_type {
        None => Err(DicomWebError::BadRequest(format!(
            "part {number} has no Content-Type"
        ))),
        Some(m) if m.type_() == mime::MULTIPART => Err(DicomWebError::BadRequest(format!(
            "part {number} is a nested multipart body"
        ))),
        Some(m) if m.essence_str() != "application/dicom" => {
            Err(DicomWebError::UnsupportedMediaType(format!(
                "part {number} is {}, only application/dicom is accepted",
                m.essence_str()
            )))
        }
        Some(_) => Ok(()),
    }
}

/// What the file meta announces must be something we store at all.
pub(super) fn precheck(
    sop_class: &str,
    sop_instance: &str,
    transfer_syntax: &str,
) -> Result<(), (u16, String)> {
    if validate_uid(sop_instance).is_err() {
        Err((
            status::INVALID_OBJECT_INSTANCE,
            "media storage SOP instance UID is not a valid UID".to_string(),
        ))
    } else if !STORAGE_SOP_CLASSES.iter().any(|(uid, _)| *uid == sop_class) {
        Err((
            status::SOP_CLASS_NOT_SUPPORTED,
            "not a storage SOP class".to_string(),
        ))
    } else if !TRANSFER_SYNTAXES
        .iter()
        .any(|(uid, _)| *uid == transfer_syntax)
    {
        Err((
            status::ERROR_CANNOT_UNDERSTAND,
            format!("transfer syntax {transfer_syntax} is not supported"),
        ))
    } else {
        Ok(())
    }
}

/// One part's bytes. actix-multipart panics if a field is polled again
/// after it has ended, so this remembers the end (or an error) and never
/// polls past it, whichever path drains the part.
pub(super) struct PartReader<'l> {
    pub field: Field,
    ended: bool,
    limits: &'l BodyLimits,
}

impl<'l> PartReader<'l> {
    pub fn new(field: Field, limits: &'l BodyLimits) -> Self {
        Self {
            field,
            ended: false,
            limits,
        }
    }

    pub async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, DicomWebError> {
        if self.ended {
            return Ok(None);
        }
        match self.field.try_next().await {
            Ok(Some(chunk)) => Ok(Some(chunk)),
            Ok(None) => {
                self.ended = true;
                Ok(None)
            }
            Err(e) => {
                self.ended = true;
                Err(self.limits.multipart_error(e))
            }
        }
    }

    pub async fn drain(&mut self) -> Result<(), DicomWebError> {
        while self.next_chunk().await?.is_some() {}
        Ok(())
    }
}

pub(super) enum MetaScan {
    Found(std::ops::Range<usize>),
    NeedMore,
    NotDicom(String),
}

/// Finds `DICM` + the file meta group in the first bytes of a part. The
/// range starts at `DICM` (what `FileMetaTable::from_reader` expects).
pub(super) fn locate_meta(head: &[u8]) -> MetaScan {
    // PS3.10 requires the preamble; tolerate its absence (some senders drop it).
    let start = if head.len() >= PREAMBLE + 4 && &head[PREAMBLE..PREAMBLE + 4] == b"DICM" {
        PREAMBLE
    } else if head.len() >= 4 && &head[..4] == b"DICM" {
        0
    } else if head.len() < PREAMBLE + 4 {
        return MetaScan::NeedMore;
    } else {
        return MetaScan::NotDicom("not a DICOM Part 10 file (no DICM prefix)".into());
    };
    // (0002,0000) UL, explicit VR little endian: tag 4, "UL" 2, length 2, value 4.
    let group = start + 4;
    if head.len() < group + 12 {
        return MetaScan::NeedMore;
    }
    if head[group..group + 6] != [0x02, 0x00, 0x00, 0x00, b'U', b'L'] {
        return MetaScan::NotDicom("file meta information lacks its group length".into());
    }
    let length = u32::from_le_bytes([
        head[group + 8],
        head[group + 9],
        head[group + 10],
        head[group + 11],
    ]) as usize;
    if length > MAX_META_BYTES {
        return MetaScan::NotDicom(format!("file meta information claims {length} bytes"));
    }
    let end = group + 12 + length;
    if head.len() < end {
        MetaScan::NeedMore
    } else {
        MetaScan::Found(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part10_head(meta_len: u32) -> Vec<u8> {
        let mut head = vec![0u8; PREAMBLE];
        head.extend(b"DICM");
        head.extend([0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        head.extend(meta_len.to_le_bytes());
        head
    }

    #[test]
    fn meta_is_located_incrementally() {
        let mut head = part10_head(20);
        assert!(matches!(locate_meta(&head[..100]), MetaScan::NeedMore));
        assert!(matches!(locate_meta(&head), MetaScan::NeedMore));
        head.extend([0u8; 20]);
        match locate_meta(&head) {
            MetaScan::Found(range) => assert_eq!(range, PREAMBLE..PREAMBLE + 4 + 12 + 20),
            _ => panic!("meta not found"),
        }
    }

    #[test]
    fn non_dicom_and_absurd_meta_are_rejected() {
        assert!(matches!(locate_meta(&[b'x'; 300]), MetaScan::NotDicom(_)));
        assert!(matches!(
            locate_meta(&part10_head(10 * 1024 * 1024)),
            MetaScan::NotDicom(_)
        ));
    }
}
