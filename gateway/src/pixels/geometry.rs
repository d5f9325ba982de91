//! The array steps of the pixel pipeline, on `[channels, rows, columns]`
//! images: window, bilinear resize, channel replication, normalisation and
//! the final layout.

use ndarray::{Array3, Axis};

use super::PixelError;
use crate::infer::Tensor;
use crate::models::{Layout, Normalisation};

/// The shape of one image's tensor: `[1, C, H, W]` or `[1, H, W, C]`.
pub(super) fn layout_shape(
    layout: Layout,
    channels: usize,
    height: usize,
    width: usize,
) -> Vec<usize> {
    match layout {
        Layout::Nchw => vec![1, channels, height, width],
        Layout::Nhwc => vec![1, height, width, channels],
    }
}

/// Linear VOI window onto `0..1`: `center - width/2` → 0, `center` → 0.5,
/// `center + width/2` → 1, clamped outside.
pub(super) fn apply_window(pixels: &mut Array3<f32>, center: f32, width: f32) {
    let low = center - width / 2.0;
    pixels.mapv_inplace(|x| ((x - low) / width).clamp(0.0, 1.0));
}

/// Bilinear resize of every channel to `height × width`, sampling at pixel
/// centres (`align_corners = false`, as PyTorch and OpenCV do) and clamping
/// at the edges.
pub fn resize_bilinear(pixels: &Array3<f32>, height: usize, width: usize) -> Array3<f32> {
    let (channels, rows, columns) = pixels.dim();
    if (rows, columns) == (height, width) {
        return pixels.clone();
    }
    let rows_axis = source_positions(rows, height);
    let columns_axis = source_positions(columns, width);
    Array3::from_shape_fn((channels, height, width), |(c, y, x)| {
        let (y0, y1, fy) = rows_axis[y];
        let (x0, x1, fx) = columns_axis[x];
        let top = pixels[[c, y0, x0]] * (1.0 - fx) + pixels[[c, y0, x1]] * fx;
        let bottom = pixels[[c, y1, x0]] * (1.0 - fx) + pixels[[c, y1, x1]] * fx;
        top * (1.0 - fy) + bottom * fy
    })
}

/// For each output index: the two source indices and the weight of the
/// second.
fn source_positions(source: usize, target: usize) -> Vec<(usize, usize, f32)> {
    let scale = source as f64 / target as f64;
    let last = source - 1;
    (0..target)
        .map(|i| {
            let position = ((i as f64 + 0.5) * scale - 0.5).clamp(0.0, last as f64);
            let first = position.floor() as usize;
            let second = (first + 1).min(last);
            (first, second, (position - first as f64) as f32)
        })
        .collect()
}

/// Repeats a grey image on `channels` channels; an image that already has
/// that many passes through.
pub(super) fn replicate_channels(
    pixels: Array3<f32>,
    channels: usize,
) -> Result<Array3<f32>, PixelError> {
    let have = pixels.dim().0;
    if have == channels {
        return Ok(pixels);
    }
    if have != 1 || channels == 0 {
        return Err(PixelError::Unsupported(format!(
            "{have} image channels for a {channels}-channel model"
        )));
    }
    let (_, rows, columns) = pixels.dim();
    let grey = pixels.index_axis(Axis(0), 0);
    Ok(Array3::from_shape_fn(
        (channels, rows, columns),
        |(_, y, x)| grey[[y, x]],
    ))
}

/// `x * scale + offset`, or `(x - mean[c]) / std[c]` per channel.
pub(super) fn normalise(
    pixels: &mut Array3<f32>,
    normalisation: &Normalisation,
) -> Result<(), PixelError> {
    match normalisation {
        Normalisation::None => {}
        Normalisation::Scale { scale, offset } => {
            pixels.mapv_inplace(|x| x * scale + offset);
        }
        Normalisation::MeanStd { mean, std } => {
            let channels = pixels.dim().0;
            if mean.len() != channels || std.len() != channels {
                return Err(PixelError::Unsupported(format!(
                    "{} means and {} deviations for {channels} channels",
                    mean.len(),
                    std.len()
                )));
            }
            for (c, mut channel) in pixels.axis_iter_mut(Axis(0)).enumerate() {
                let (m, s) = (mean[c], std[c]);
                channel.mapv_inplace(|x| (x - m) / s);
            }
        }
    }
    Ok(())
}

/// `[C, H, W]` into the model's layout with a leading batch axis of one.
pub(super) fn into_layout(pixels: Array3<f32>, layout: Layout) -> Tensor {
    let arranged = match layout {
        Layout::Nchw => pixels,
        Layout::Nhwc => pixels
            .permuted_axes([1, 2, 0])
            .as_standard_layout()
            .into_owned(),
    };
    arranged.insert_axis(Axis(0)).into_dyn()
}
