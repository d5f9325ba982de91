//! Pixel data decoded with dicom-pixeldata, for rendering and for frames
//! asked for uncompressed from an encapsulated instance.
//!
//! Decoding loads the whole instance and its decoded frame into memory, so
//! it is bounded three ways: a size limit on the file and on one decoded
//! frame (checked, without overflow, before anything is decoded), and a
//! semaphore that lets one decode per core run at a time. Malformed pixel
//! data becomes a [`DecodeError`], never a panic; the work runs on the
//! blocking pool, where even a panic inside a codec is only a failed task.

use std::path::Path;
use std::sync::OnceLock;

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutOption};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use image::DynamicImage;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::dicomweb::error::DicomWebError;
use crate::pixels;

/// Largest stored file we load to decode.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Largest decoded frame (rows x columns x samples x bytes per sample).
pub const MAX_FRAME_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("instance has no pixel data")]
    NoPixelData,
    #[error("instance is too large to decode here ({0})")]
    TooLarge(String),
    #[error("pixel data in transfer syntax {0} cannot be decoded by this gateway")]
    Unsupported(String),
    #[error("frame {frame} is out of range: the instance has {frames} frame(s)")]
    OutOfRange { frame: u32, frames: u32 },
    #[error("pixel data cannot be decoded: {0}")]
    Corrupt(String),
    #[error("cannot read stored file: {0}")]
    Read(String),
}

impl From<DecodeError> for DicomWebError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::NoPixelData | DecodeError::OutOfRange { .. } => {
                Self::BadRequest(e.to_string())
            }
            // We hold the instance but cannot produce any acceptable
            // representation of its pixels.
            DecodeError::Unsupported(_) | DecodeError::TooLarge(_) => {
                Self::NotAcceptable(e.to_string())
            }
            DecodeError::Corrupt(_) | DecodeError::Read(_) => Self::internal(e),
        }
    }
}

/// Waits for a decoding slot (one per core, at most eight).
pub async fn permit() -> SemaphorePermit<'static> {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Semaphore::new(cores.clamp(1, 8))
    });
    // The semaphore is never closed.
    loop {
        if let Ok(permit) = permits.acquire().await {
            return permit;
        }
    }
}

/// Whether dicom-pixeldata (with the codecs we build) can decode `uid`.
pub fn can_decode(uid: &str) -> bool {
    TransferSyntaxRegistry
        .get(uid)
        .is_some_and(|ts| ts.can_decode_all())
}

/// Frame `frame` (0-based) in its native, uncompressed form. Blocking.
pub fn native_frame(path: &Path, frame: u32) -> Result<Vec<u8>, DecodeError> {
    let obj = open_checked(path, frame)?;
    let decoded = decode_frame(&obj, frame)?;
    Ok(decoded.data().to_vec())
}

/// Frame `frame` (0-based) with the modality LUT (rescale) and `voi`
/// applied, 8 bits per sample (PS3.18 8.7.4). Blocking.
pub fn render_frame(
    path: &Path,
    frame: u32,
    voi: VoiLutOption,
) -> Result<DynamicImage, DecodeError> {
    let obj = open_checked(path, frame)?;
    let decoded = decode_frame(&obj, frame)?;
    let options = ConvertOptions::new().with_voi_lut(voi).force_8bit();
    decoded
        .to_dynamic_image_with_options(0, &options)
        .map_err(|e| DecodeError::Corrupt(e.to_string()))
}

/// Decodes one frame; a codec that panics on these bytes is a corrupt image.
fn decode_frame(
    obj: &DefaultDicomObject,
    frame: u32,
) -> Result<dicom_pixeldata::DecodedPixelData<'static>, DecodeError> {
    pixels::catch_decoder_panic(|| {
        obj.decode_pixel_data_frame(frame)
            .map(|decoded| decoded.to_owned())
            .map_err(|e| pixels::PixelError::Decode(e.to_string()))
    })
    .map_err(|e| DecodeError::Corrupt(e.to_string()))
}

/// Opens the whole instance once its size, codec and geometry show that
/// decoding `frame` is possible and bounded.
fn open_checked(path: &Path, frame: u32) -> Result<DefaultDicomObject, DecodeError> {
    let size = std::fs::metadata(path)
        .map_err(|e| DecodeError::Read(e.to_string()))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(DecodeError::TooLarge(format!(
            "{size} bytes, the limit is {MAX_FILE_BYTES}"
        )));
    }
    // The same walk and frame-header checks as the inference pipeline: a
    // stored file is peer bytes, and the codecs trust their headers.
    let obj = pixels::open_stored(path).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let transfer_syntax = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    if !can_decode(&transfer_syntax) {
        return Err(DecodeError::Unsupported(transfer_syntax));
    }
    let pixel_data = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or(DecodeError::NoPixelData)?;
    let int = |tag| -> Option<u64> { obj.element_opt(tag).ok().flatten()?.to_int::<u64>().ok() };
    let rows = int(tags::ROWS).ok_or(DecodeError::Corrupt("no rows".into()))?;
    let columns = int(tags::COLUMNS).ok_or(DecodeError::Corrupt("no columns".into()))?;
    let samples = int(tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let bits = int(tags::BITS_ALLOCATED).ok_or(DecodeError::Corrupt("no bits allocated".into()))?;
    let frames = int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    if rows == 0 || columns == 0 || samples == 0 || !matches!(bits, 1 | 8 | 16 | 32) {
        return Err(DecodeError::Corrupt(format!(
            "unsupported geometry: {rows}x{columns}, {samples} samples, {bits} bits allocated"
        )));
    }
    if u64::from(frame) >= frames {
        return Err(DecodeError::OutOfRange {
            frame: frame + 1,
            frames: u32::try_from(frames).unwrap_or(u32::MAX),
        });
    }
    let frame_bytes = rows
        .checked_mul(columns)
        .and_then(|n| n.checked_mul(samples))
        .and_then(|n| n.checked_mul(bits.div_ceil(8)))
        .filter(|&n| n <= MAX_FRAME_BYTES)
        .ok_or_else(|| {
            DecodeError::TooLarge(format!(
                "{rows}x{columns} with {samples} samples of {bits} bits"
            ))
        })?;
    let image = pixels::checked_geometry(&obj).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    pixels::check_pixel_data(&obj, &image, frame)
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if let Some(native) = pixel_data.value().primitive() {
        // dicom-pixeldata slices native frames out of the value; make sure
        // the frame is there before it does.
        let needed = if bits == 1 {
            (u64::from(frame) + 1)
                .saturating_mul(rows * columns * samples)
                .div_ceil(8)
        } else {
            (u64::from(frame) + 1).saturating_mul(frame_bytes)
        };
        if (native.calculate_byte_len() as u64) < needed {
            return Err(DecodeError::Corrupt(
                "pixel data is shorter than its frames need".into(),
            ));
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_we_build_with() {
        assert!(can_decode("1.2.840.10008.1.2.1"));
        assert!(can_decode("1.2.840.10008.1.2.4.50"));
        assert!(can_decode("1.2.840.10008.1.2.5"));
        assert!(!can_decode("1.2.3.4"));
    }

    #[test]
    fn errors_map_to_statuses() {
        use actix_web::ResponseError;
        let status = |e: DecodeError| DicomWebError::from(e).status_code().as_u16();
        assert_eq!(status(DecodeError::NoPixelData), 400);
        assert_eq!(status(DecodeError::Unsupported("1.2".into())), 406);
        assert_eq!(status(DecodeError::Corrupt("x".into())), 500);
    }
}
