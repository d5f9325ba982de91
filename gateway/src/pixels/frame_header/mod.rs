//! Bounded readers for the header inside one encapsulated frame, run after
//! `pixels::encapsulated` has picked the frame's bytes and before any
//! decoder sees them.
//!
//! Each decoder sizes its work from its own header, not from the DICOM
//! attributes: jpeg-decoder from the JPEG SOF, CharLS from the JPEG-LS
//! SOF55, openjp2 from the JPEG 2000 SIZ, the RLE decoder from the segment
//! table. A header that disagrees with Rows, Columns, Samples per Pixel or
//! Bits Allocated makes the decoder allocate what the header says and then
//! panic, or write past what the attributes sized (dicom-rs 0.10's JPEG
//! adapter does exactly that). So each header is read here with fixed-size
//! reads and scans bounded by named limits, and must agree exactly with
//! the image; only then may the decoder run, and what it writes is then the
//! image's own frame size, which `checked_geometry` has capped.

mod j2k;
mod jpeg;
mod rle;

use super::{ImageGeometry, MAX_FRAME_BYTES, PixelError};

pub use jpeg::MAX_JPEG_HEADER_SCAN;

/// How the frames of an encapsulated transfer syntax are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCodec {
    /// JPEG baseline, extended and lossless (SOF0..SOF3).
    Jpeg,
    JpegLs,
    /// JPEG 2000 and HTJ2K, a raw codestream or one in a JP2 file.
    Jpeg2000,
    Rle,
    /// Encapsulated Uncompressed Explicit VR Little Endian.
    Uncompressed,
}

impl FrameCodec {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::JpegLs => "jpeg-ls",
            Self::Jpeg2000 => "jpeg 2000",
            Self::Rle => "rle",
            Self::Uncompressed => "uncompressed",
        }
    }
}

/// A frame whose header agrees with the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedFrame {
    /// Bytes the decoder writes for the frame: the image's frame size.
    pub decoded_bytes: u64,
    /// For RLE, the most one segment inflates to before a plane is taken
    /// from it (0 for other codecs, which write straight into the frame).
    pub largest_segment_bytes: u64,
}

/// Reads the header of `frame` (one frame's bytes, fragments joined) and
/// checks it against `image`. Never decodes, never allocates by what the
/// header says.
pub fn check_frame(
    codec: FrameCodec,
    frame: &[u8],
    image: &ImageGeometry,
) -> Result<CheckedFrame, PixelError> {
    if image.frame_bytes > MAX_FRAME_BYTES {
        return Err(PixelError::TooLarge {
            declared: image.frame_bytes,
            limit: MAX_FRAME_BYTES,
        });
    }
    let checked = match codec {
        FrameCodec::Jpeg | FrameCodec::JpegLs => {
            jpeg::read_sof(frame, codec).and_then(|sof| sof.agrees_with(image))
        }
        FrameCodec::Jpeg2000 => j2k::read_siz(frame).and_then(|siz| siz.agrees_with(image)),
        FrameCodec::Rle => rle::check_rle(frame, image),
        FrameCodec::Uncompressed => check_uncompressed(frame, image),
    };
    let largest_segment_bytes = checked.map_err(|reason| PixelError::FrameHeader {
        codec: codec.as_str(),
        reason,
    })?;
    Ok(CheckedFrame {
        decoded_bytes: image.frame_bytes,
        largest_segment_bytes,
    })
}

/// A frame stored as it is: exactly the frame's bytes, or one more when
/// that number is odd (fragments have even lengths).
fn check_uncompressed(frame: &[u8], image: &ImageGeometry) -> Result<u64, String> {
    let have = frame.len() as u64;
    let want = image.frame_bytes;
    if have == want || (want % 2 == 1 && have == want + 1) {
        Ok(0)
    } else {
        Err(format!(
            "the frame has {have} bytes, the image needs {want}"
        ))
    }
}

/// Rows, Columns and Samples per Pixel as a header declares them must be
/// the image's.
fn agree_geometry(
    header: &str,
    [rows, columns]: [u64; 2],
    components: u64,
    image: &ImageGeometry,
) -> Result<(), String> {
    if (rows, columns) != (image.rows as u64, image.columns as u64) {
        return Err(format!(
            "{header} declares {rows}x{columns} (rows x columns), the image is {}x{}",
            image.rows, image.columns
        ));
    }
    if components != image.samples_per_pixel as u64 {
        return Err(format!(
            "{header} declares {components} components, the image has {} samples per pixel",
            image.samples_per_pixel
        ));
    }
    Ok(())
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}
