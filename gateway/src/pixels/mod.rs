//! The pixel pipeline, between `assemble` (a ready series) and the engines:
//! one DICOM frame becomes the input tensor a model's manifest describes.
//!
//! The steps run in the manifest's order: decode (native, RLE, JPEG
//! baseline/lossless, JPEG 2000 through dicom-pixeldata), modality LUT, VOI
//! window, MONOCHROME1 inversion, bilinear resize, channel replication,
//! normalisation, layout. Image attributes come from peers, so every size is
//! checked before anything is allocated: a bad image is a [`PixelError`],
//! never a panic or an unbounded allocation. Stored files are opened with
//! [`open_stored`] (every declared length checked against the file first),
//! an encapsulated frame's own header must agree with the image before a
//! decoder runs (`encapsulated`, `frame_header`), and the runner decodes
//! inside [`catch_decoder_panic`].

mod encapsulated;
mod frame_header;
mod geometry;
#[cfg(test)]
mod header_fuzz;
#[cfg(test)]
mod hostile_tests;
mod open;
#[cfg(test)]
mod test_frames;
#[cfg(test)]
mod tests;

use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, Rescale, VoiLutOption};
use ndarray::Array3;

use crate::infer::Tensor;
use crate::models::{Preprocessing, TensorSpec, Window};

pub use encapsulated::{MAX_ENCODED_FRAME_BYTES, PixelEncoding, check_pixel_data, pixel_encoding};
pub use frame_header::{CheckedFrame, FrameCodec, MAX_JPEG_HEADER_SCAN, check_frame};
pub use geometry::resize_bilinear;
pub use open::{MAX_STORED_INSTANCE_BYTES, catch_decoder_panic, open_stored};

/// The most pixel data one object may declare (all frames, all samples).
pub const MAX_PIXEL_DATA_BYTES: u64 = 512 * 1024 * 1024;
/// The most one decoded frame may be (Rows × Columns × Samples × bytes per
/// sample): the decoder writes this much, and the pipeline then holds it
/// as f32. 64 MiB covers the largest radiographs (a 4320 × 4320 16-bit DX
/// is 36 MiB) and 4096 × 5120 RGB.
pub const MAX_FRAME_BYTES: u64 = 64 * 1024 * 1024;

/// Why a frame could not become a tensor. Every variant is the image's
/// fault (or the manifest asking for something the image cannot give),
/// so none is retryable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PixelError {
    #[error("missing attribute {0}")]
    MissingAttribute(&'static str),
    #[error("invalid attribute {name}: {reason}")]
    InvalidAttribute { name: &'static str, reason: String },
    #[error("bad image dimensions: {0}")]
    Dimensions(String),
    #[error("pixel data declares {declared} bytes, over the {limit} byte limit")]
    TooLarge { declared: u64, limit: u64 },
    #[error("pixel data has {actual} bytes, {expected} declared")]
    Truncated { expected: u64, actual: u64 },
    #[error("cannot decode pixel data: {0}")]
    Decode(String),
    /// An encapsulated frame's own header (JPEG SOF, JPEG-LS SOF55, JPEG
    /// 2000 SIZ, RLE segment table) disagrees with the image or is
    /// malformed; nothing was decoded.
    #[error("{codec} frame header: {reason}")]
    FrameHeader { codec: &'static str, reason: String },
    /// The stored file failed the length check, or dicom-rs could not read it.
    #[error("unreadable stored instance: {0}")]
    Unreadable(String),
    /// A decoder library panicked on the image (caught at the task boundary).
    #[error("decoder panicked: {0}")]
    DecoderPanic(String),
    #[error("unsupported image: {0}")]
    Unsupported(String),
    #[error("built tensor of shape {built:?}, the model takes {expected:?}")]
    Shape {
        expected: Vec<usize>,
        built: Vec<usize>,
    },
}

/// The image attributes the pipeline depends on, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGeometry {
    pub rows: usize,
    pub columns: usize,
    pub samples_per_pixel: usize,
    pub bits_allocated: u16,
    pub number_of_frames: u32,
    /// Bytes of one native frame.
    pub frame_bytes: u64,
}

/// Turns one frame of `object` into the tensor `input` describes, prepared
/// as `pre` says. `frame` counts from 0.
pub fn image_to_tensor(
    object: &FileDicomObject<InMemDicomObject>,
    frame: u32,
    pre: &Preprocessing,
    input: &TensorSpec,
) -> Result<Tensor, PixelError> {
    let [height, width] = pre.resize;
    let expected = geometry::layout_shape(pre.layout, pre.channels, height, width);
    // Refuse a manifest/spec mismatch before decoding anything.
    if expected != input.shape {
        return Err(PixelError::Shape {
            expected: input.shape.clone(),
            built: expected,
        });
    }
    let image = checked_geometry(object)?;
    if frame >= image.number_of_frames {
        return Err(PixelError::Dimensions(format!(
            "frame {frame} asked of an image with {} frames",
            image.number_of_frames
        )));
    }
    encapsulated::check_pixel_data(object, &image, frame)?;
    let photometric = string_attribute(object, tags::PHOTOMETRIC_INTERPRETATION)
        .ok_or(PixelError::MissingAttribute("PhotometricInterpretation"))?;
    let monochrome1 = match (photometric.as_str(), image.samples_per_pixel) {
        ("MONOCHROME1", 1) => true,
        ("MONOCHROME2", 1) => false,
        ("RGB", 3) => false,
        (other, samples) => {
            return Err(PixelError::Unsupported(format!(
                "photometric interpretation {other} with {samples} samples per pixel"
            )));
        }
    };
    if image.samples_per_pixel != 1 && image.samples_per_pixel != pre.channels {
        return Err(PixelError::Unsupported(format!(
            "a {}-sample image for a {}-channel model",
            image.samples_per_pixel, pre.channels
        )));
    }

    let mut pixels = decode_frame(object, frame, pre.modality_lut, &image)?;
    if let Some((center, width)) = window_for(object, pre.window)? {
        geometry::apply_window(&mut pixels, center, width);
        if monochrome1 {
            pixels.mapv_inplace(|x| 1.0 - x);
        }
    }
    let pixels = resize_bilinear(&pixels, height, width);
    let mut pixels = geometry::replicate_channels(pixels, pre.channels)?;
    geometry::normalise(&mut pixels, &pre.normalisation)?;
    let tensor = geometry::into_layout(pixels, pre.layout);
    if tensor.shape() != input.shape.as_slice() {
        return Err(PixelError::Shape {
            expected: input.shape.clone(),
            built: tensor.shape().to_vec(),
        });
    }
    Ok(tensor)
}

/// Reads and checks Rows, Columns, Samples per Pixel, Bits Allocated/Stored
/// and Number of Frames, and the sizes they declare (one frame under
/// [`MAX_FRAME_BYTES`], all frames under [`MAX_PIXEL_DATA_BYTES`]).
pub fn checked_geometry(
    object: &FileDicomObject<InMemDicomObject>,
) -> Result<ImageGeometry, PixelError> {
    let rows = int_attribute(object, tags::ROWS, "Rows")?;
    let columns = int_attribute(object, tags::COLUMNS, "Columns")?;
    let samples = int_attribute(object, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?;
    let bits_allocated = int_attribute(object, tags::BITS_ALLOCATED, "BitsAllocated")?;
    let bits_stored = match object.element_opt(tags::BITS_STORED).ok().flatten() {
        Some(_) => int_attribute(object, tags::BITS_STORED, "BitsStored")?,
        None => bits_allocated,
    };
    // Type 1C: absent means a single frame.
    let frames = match object.element_opt(tags::NUMBER_OF_FRAMES).ok().flatten() {
        Some(_) => int_attribute(object, tags::NUMBER_OF_FRAMES, "NumberOfFrames")?,
        None => 1,
    };
    if rows == 0 || columns == 0 || frames == 0 {
        return Err(PixelError::Dimensions(format!(
            "{rows} rows, {columns} columns, {frames} frames"
        )));
    }
    if samples != 1 && samples != 3 {
        return Err(PixelError::Unsupported(format!(
            "{samples} samples per pixel"
        )));
    }
    if bits_allocated != 8 && bits_allocated != 16 {
        return Err(PixelError::Unsupported(format!(
            "{bits_allocated} bits allocated"
        )));
    }
    if bits_stored == 0 || bits_stored > bits_allocated {
        return Err(PixelError::InvalidAttribute {
            name: "BitsStored",
            reason: format!("{bits_stored} with {bits_allocated} bits allocated"),
        });
    }
    let frame_bytes = rows
        .checked_mul(columns)
        .and_then(|n| n.checked_mul(samples))
        .and_then(|n| n.checked_mul(bits_allocated / 8));
    let declared = frame_bytes.and_then(|n| n.checked_mul(frames));
    let (Some(frame_bytes), Some(declared)) = (frame_bytes, declared) else {
        return Err(PixelError::TooLarge {
            declared: u64::MAX,
            limit: MAX_PIXEL_DATA_BYTES,
        });
    };
    if frame_bytes > MAX_FRAME_BYTES {
        return Err(PixelError::TooLarge {
            declared: frame_bytes,
            limit: MAX_FRAME_BYTES,
        });
    }
    if declared > MAX_PIXEL_DATA_BYTES {
        return Err(PixelError::TooLarge {
            declared,
            limit: MAX_PIXEL_DATA_BYTES,
        });
    }
    // Under the cap, every size fits in usize on 32- and 64-bit targets.
    Ok(ImageGeometry {
        rows: rows as usize,
        columns: columns as usize,
        samples_per_pixel: samples as usize,
        bits_allocated: bits_allocated as u16,
        number_of_frames: frames as u32,
        frame_bytes,
    })
}

/// Decodes one frame to `[samples, rows, columns]` f32, through the
/// modality LUT (Rescale Slope/Intercept) when asked and otherwise as
/// stored values (sign and Bits Stored respected).
fn decode_frame(
    object: &FileDicomObject<InMemDicomObject>,
    frame: u32,
    modality_lut: bool,
    image: &ImageGeometry,
) -> Result<Array3<f32>, PixelError> {
    let rescale = if modality_lut && image.samples_per_pixel == 1 {
        let slope = float_attribute(object, tags::RESCALE_SLOPE, "RescaleSlope")?.unwrap_or(1.0);
        let intercept =
            float_attribute(object, tags::RESCALE_INTERCEPT, "RescaleIntercept")?.unwrap_or(0.0);
        Rescale::new(slope, intercept)
    } else {
        Rescale::new(1.0, 0.0)
    };
    let options = ConvertOptions::new()
        .with_modality_lut(ModalityLutOption::Override(rescale))
        .with_voi_lut(VoiLutOption::Identity);
    let decoded = object
        .decode_pixel_data_frame(frame)
        .map_err(|e| PixelError::Decode(e.to_string()))?;
    if decoded.rows() as usize != image.rows || decoded.columns() as usize != image.columns {
        return Err(PixelError::Decode(format!(
            "decoded {}x{}, declared {}x{}",
            decoded.rows(),
            decoded.columns(),
            image.rows,
            image.columns
        )));
    }
    let samples: Vec<f32> = decoded
        .to_vec_frame_with_options(0, &options)
        .map_err(|e| PixelError::Decode(e.to_string()))?;
    let count = image.rows * image.columns * image.samples_per_pixel;
    if samples.len() != count {
        return Err(PixelError::Decode(format!(
            "decoded {} samples, expected {count}",
            samples.len()
        )));
    }
    // Samples arrive interleaved (planar configuration 0): [rows, columns,
    // samples]; the pipeline works channel-first.
    let interleaved = Array3::from_shape_vec(
        (image.rows, image.columns, image.samples_per_pixel),
        samples,
    )
    .map_err(|e| PixelError::Decode(e.to_string()))?;
    Ok(interleaved
        .permuted_axes([2, 0, 1])
        .as_standard_layout()
        .into_owned())
}

/// The window to apply, if any: the manifest's, or the image's first
/// Window Center/Width pair.
fn window_for(
    object: &FileDicomObject<InMemDicomObject>,
    window: Window,
) -> Result<Option<(f32, f32)>, PixelError> {
    let (center, width) = match window {
        Window::None => return Ok(None),
        Window::Fixed { center, width } => (center, width),
        Window::FromFile => {
            let center = float_attribute(object, tags::WINDOW_CENTER, "WindowCenter")?
                .ok_or(PixelError::MissingAttribute("WindowCenter"))?;
            let width = float_attribute(object, tags::WINDOW_WIDTH, "WindowWidth")?
                .ok_or(PixelError::MissingAttribute("WindowWidth"))?;
            (center as f32, width as f32)
        }
    };
    if !(width > 0.0 && width.is_finite() && center.is_finite()) {
        return Err(PixelError::InvalidAttribute {
            name: "WindowWidth",
            reason: format!("center {center}, width {width}"),
        });
    }
    Ok(Some((center, width)))
}

fn int_attribute(
    object: &FileDicomObject<InMemDicomObject>,
    tag: dicom_core::Tag,
    name: &'static str,
) -> Result<u64, PixelError> {
    let element = object
        .element_opt(tag)
        .ok()
        .flatten()
        .ok_or(PixelError::MissingAttribute(name))?;
    element
        .to_int::<u64>()
        .map_err(|e| PixelError::InvalidAttribute {
            name,
            reason: e.to_string(),
        })
}

/// The first value of a (possibly multi-valued) decimal attribute.
fn float_attribute(
    object: &FileDicomObject<InMemDicomObject>,
    tag: dicom_core::Tag,
    name: &'static str,
) -> Result<Option<f64>, PixelError> {
    let Some(element) = object.element_opt(tag).ok().flatten() else {
        return Ok(None);
    };
    // Read as text and split on backslashes: a multi-valued DS may arrive as one
    // string (built in memory, or from an odd writer) or as several.
    let text = element.to_str().map_err(|e| PixelError::InvalidAttribute {
        name,
        reason: e.to_string(),
    })?;
    let Some(first) = text
        .split('\\')
        .map(str::trim)
        .next()
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    match first.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Some(value)),
        _ => Err(PixelError::InvalidAttribute {
            name,
            reason: format!("`{first}` is not a number"),
        }),
    }
}

fn string_attribute(
    object: &FileDicomObject<InMemDicomObject>,
    tag: dicom_core::Tag,
) -> Option<String> {
    let element = object.element_opt(tag).ok().flatten()?;
    let text = element.to_str().ok()?;
    Some(text.trim_end_matches(['\0', ' ']).trim().to_owned())
}
