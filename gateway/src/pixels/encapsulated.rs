//! Which bytes the decoder will read for one frame, checked before
//! `pixels::decode_frame` hands the object to dicom-pixeldata.
//!
//! Native pixel data must hold every declared frame. Encapsulated pixel
//! data is split into frames exactly as the dicom-rs 0.10 adapters split
//! it (the JPEG adapter has its own rule, the RLE adapter takes one
//! fragment per frame, the others follow `PixelDataObject::
//! frame_pixel_data`), so the header `frame_header` checks is the header
//! the decoder reads. A transfer syntax we cannot check is not decoded.

use std::borrow::Cow;

use dicom_core::value::Value as DicomValue;
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};

use super::frame_header::{self, FrameCodec};
use super::{ImageGeometry, MAX_FRAME_BYTES, PixelError};

/// The most bytes one encoded frame may span (fragments joined): a
/// lossless codec can exceed the raw size a little on noise, never twice.
pub const MAX_ENCODED_FRAME_BYTES: u64 = 2 * MAX_FRAME_BYTES;
/// Each fragment's item header counts in Basic Offset Table offsets.
const ITEM_HEADER_BYTES: u64 = 8;

/// How a transfer syntax stores pixel data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelEncoding {
    Native,
    Encapsulated(FrameCodec),
}

/// The pixel encoding of the transfer syntaxes we decode; any other is
/// [`PixelError::Unsupported`] (no decoder runs on bytes we have not read).
pub fn pixel_encoding(transfer_syntax: &str) -> Result<PixelEncoding, PixelError> {
    use FrameCodec::*;
    use PixelEncoding::*;
    let uid = transfer_syntax.trim_end_matches(['\0', ' ']);
    Ok(match uid {
        // Implicit and explicit VR little endian, explicit big endian, deflated.
        "1.2.840.10008.1.2"
        | "1.2.840.10008.1.2.1"
        | "1.2.840.10008.1.2.2"
        | "1.2.840.10008.1.2.1.99" => Native,
        // Baseline, extended, and the two lossless processes.
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => Encapsulated(Jpeg),
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => Encapsulated(JpegLs),
        // JPEG 2000 (part 1 and part 2 multi-component) and HTJ2K.
        "1.2.840.10008.1.2.4.90"
        | "1.2.840.10008.1.2.4.91"
        | "1.2.840.10008.1.2.4.92"
        | "1.2.840.10008.1.2.4.93"
        | "1.2.840.10008.1.2.4.201"
        | "1.2.840.10008.1.2.4.202"
        | "1.2.840.10008.1.2.4.203" => Encapsulated(Jpeg2000),
        "1.2.840.10008.1.2.5" => Encapsulated(Rle),
        "1.2.840.10008.1.2.1.98" => Encapsulated(Uncompressed),
        other => {
            return Err(PixelError::Unsupported(format!(
                "pixel data in transfer syntax {other}"
            )));
        }
    })
}

/// Checks that decoding `frame` of `object` is bounded and agrees with
/// `image`: the bytes are there, and an encapsulated frame's own header
/// says what the attributes say.
pub fn check_pixel_data(
    object: &FileDicomObject<InMemDicomObject>,
    image: &ImageGeometry,
    frame: u32,
) -> Result<(), PixelError> {
    let encoding = pixel_encoding(object.meta().transfer_syntax())?;
    let element = object
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or(PixelError::MissingAttribute("PixelData"))?;
    let misplaced = |reason: &str| PixelError::InvalidAttribute {
        name: "PixelData",
        reason: reason.into(),
    };
    match (encoding, element.value()) {
        (PixelEncoding::Native, DicomValue::Primitive(value)) => {
            let expected = image.frame_bytes * u64::from(image.number_of_frames);
            let actual = value.calculate_byte_len() as u64;
            if actual < expected {
                return Err(PixelError::Truncated { expected, actual });
            }
            Ok(())
        }
        (PixelEncoding::Encapsulated(codec), DicomValue::PixelSequence(sequence)) => {
            let bytes = frame_bytes(
                codec,
                sequence.offset_table(),
                sequence.fragments(),
                image,
                frame,
            )?;
            frame_header::check_frame(codec, &bytes, image).map(drop)
        }
        (PixelEncoding::Native, DicomValue::PixelSequence(_)) => {
            Err(misplaced("encapsulated in a native transfer syntax"))
        }
        (PixelEncoding::Encapsulated(_), DicomValue::Primitive(_)) => {
            Err(misplaced("native in an encapsulated transfer syntax"))
        }
        (_, DicomValue::Sequence(_)) => Err(misplaced("a sequence")),
    }
}

/// The bytes of `frame`, fragments joined, chosen as the codec's dicom-rs
/// adapter chooses them: one fragment per frame when the counts allow it
/// (RLE always), otherwise the fragments from the frame's Basic Offset
/// Table entry up to the next one. The joined size is bounded before
/// anything is copied.
pub fn frame_bytes<'a>(
    codec: FrameCodec,
    offset_table: &[u32],
    fragments: &'a [Vec<u8>],
    image: &ImageGeometry,
    frame: u32,
) -> Result<Cow<'a, [u8]>, PixelError> {
    let frames = image.number_of_frames as usize;
    let frame = frame as usize;
    let missing = || PixelError::Truncated {
        expected: image.frame_bytes,
        actual: 0,
    };
    let one_per_frame = match codec {
        FrameCodec::Rle => true,
        FrameCodec::Jpeg => fragments.len() == 1 || fragments.len() == frames,
        FrameCodec::JpegLs | FrameCodec::Jpeg2000 | FrameCodec::Uncompressed => {
            fragments.len() == frames
        }
    };
    if one_per_frame {
        let fragment = fragments.get(frame).ok_or_else(missing)?;
        bounded(fragment.len() as u64)?;
        return Ok(Cow::Borrowed(fragment));
    }
    let start = match offset_table.get(frame) {
        Some(&offset) => u64::from(offset),
        None if frame == 0 => 0,
        None => {
            return Err(PixelError::InvalidAttribute {
                name: "PixelData",
                reason: format!("no offset table entry for frame {frame}"),
            });
        }
    };
    let next = offset_table.get(frame + 1).map(|&o| u64::from(o));
    let mut offset = 0u64;
    let mut chosen: Vec<&[u8]> = Vec::new();
    let mut total = 0u64;
    for fragment in fragments {
        if offset >= start {
            total += fragment.len() as u64;
            bounded(total)?;
            chosen.push(fragment);
        }
        offset += fragment.len() as u64 + ITEM_HEADER_BYTES;
        if next.is_some_and(|next| offset >= next) {
            break;
        }
    }
    match chosen.as_slice() {
        [] => Err(missing()),
        [one] => Ok(Cow::Borrowed(one)),
        many => Ok(Cow::Owned(many.concat())),
    }
}

fn bounded(bytes: u64) -> Result<(), PixelError> {
    if bytes > MAX_ENCODED_FRAME_BYTES {
        return Err(PixelError::TooLarge {
            declared: bytes,
            limit: MAX_ENCODED_FRAME_BYTES,
        });
    }
    Ok(())
}
