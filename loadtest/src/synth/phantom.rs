//! Pixel phantoms: simple anatomy drawn from ellipses plus cheap noise.
//!
//! The shapes only need to look plausible to a human and give inference
//! engines something non-constant to chew on; speed matters more than
//! realism because the benchmark generates hundreds of slices. Each row is
//! painted as horizontal spans (no per-pixel geometry), and noise comes from
//! an xorshift generator, four pixels per 64-bit draw.

use std::ops::Range;

/// How a shape changes the pixels it covers.
#[derive(Debug, Clone, Copy)]
enum Paint {
    /// Replace the value (nested tissue).
    Set(i32),
    /// Add to the value (overlapping projections such as ribs).
    Add(i32),
}

/// An axis-aligned ellipse, in pixel coordinates.
#[derive(Debug, Clone, Copy)]
struct Shape {
    center_x: f32,
    center_y: f32,
    semi_axis_x: f32,
    semi_axis_y: f32,
    paint: Paint,
    /// Paint only rows where `(row / period) % 2 == 0`, to draw stripes.
    stripe_period: Option<usize>,
}

impl Shape {
    fn ellipse(center: (f32, f32), semi_axes: (f32, f32), paint: Paint) -> Self {
        Shape {
            center_x: center.0,
            center_y: center.1,
            semi_axis_x: semi_axes.0.max(0.5),
            semi_axis_y: semi_axes.1.max(0.5),
            paint,
            stripe_period: None,
        }
    }

    fn striped(self, period: usize) -> Self {
        Shape {
            stripe_period: Some(period.max(2)),
            ..self
        }
    }

    /// The columns this shape covers on row `y`, if any.
    fn span(&self, y: usize, width: usize) -> Option<Range<usize>> {
        if let Some(period) = self.stripe_period
            && !(y / period).is_multiple_of(2)
        {
            return None;
        }
        let dy = (y as f32 + 0.5 - self.center_y) / self.semi_axis_y;
        if dy.abs() >= 1.0 {
            return None;
        }
        let half_width = self.semi_axis_x * (1.0 - dy * dy).sqrt();
        let start = (self.center_x - half_width).max(0.0).round() as usize;
        let end = ((self.center_x + half_width).round().max(0.0) as usize).min(width);
        (start < end).then_some(start..end)
    }
}

/// How rendered values become stored pixel values.
#[derive(Debug, Clone, Copy)]
struct Storage {
    /// Added to each value before storing (1024 turns HU into CT stored values).
    offset: i32,
    /// Inclusive range of stored values.
    min: i32,
    max: i32,
    /// Peak amplitude of the triangular noise added to every pixel.
    noise: i32,
}

/// A 16-bit little-endian image of `rows * columns` pixels.
fn render(
    rows: u16,
    columns: u16,
    background: i32,
    shapes: &[Shape],
    storage: Storage,
    seed: u64,
) -> Vec<u8> {
    let (rows, columns) = (usize::from(rows), usize::from(columns));
    let mut out = Vec::with_capacity(rows * columns * 2);
    let mut row = vec![background; columns];
    let mut noise = PixelNoise::new(seed);
    for y in 0..rows {
        row.fill(background);
        for shape in shapes {
            if let Some(span) = shape.span(y, columns) {
                match shape.paint {
                    Paint::Set(v) => row[span].fill(v),
                    Paint::Add(v) => row[span].iter_mut().for_each(|p| *p += v),
                }
            }
        }
        for chunk in row.chunks(4) {
            let mut bits = noise.next_u64();
            for &value in chunk {
                // Two bytes summed give a triangular distribution in 0..=510.
                let triangular = (bits & 0xff) as i32 + ((bits >> 8) & 0xff) as i32 - 255;
                bits >>= 16;
                let noisy = value + storage.offset + triangular * storage.noise / 255;
                let stored = noisy.clamp(storage.min, storage.max);
                // Two's complement keeps signed values right for PixelRepresentation 1.
                out.extend_from_slice(&(stored as u16).to_le_bytes());
            }
        }
    }
    out
}

/// xorshift64*: a few instructions per draw, plenty for noise.
struct PixelNoise {
    state: u64,
}

impl PixelNoise {
    fn new(seed: u64) -> Self {
        // splitmix64 scrambles small or zero seeds into a usable state.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        PixelNoise { state: z | 1 }
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A hyperdense (bleed-like) blob on some CT slices.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lesion {
    /// Slice indices (0-based) that show the blob.
    pub slices: Range<usize>,
    /// Centre relative to the brain, as a fraction of its semi-axes.
    pub offset: (f32, f32),
    /// Radius as a fraction of the image width.
    pub radius: f32,
    /// Density in Hounsfield units (60 to 80).
    pub hounsfield: i32,
}

/// Axial head CT slice in Hounsfield units stored with intercept -1024.
///
/// `position` runs from 0 (most inferior) to 1 (vertex); the head is an
/// ellipsoid, so its cross-section shrinks towards both ends.
pub(crate) fn ct_head_slice(
    rows: u16,
    columns: u16,
    position: f32,
    lesion: Option<&Lesion>,
    seed: u64,
) -> Vec<u8> {
    let (w, h) = (f32::from(columns), f32::from(rows));
    let center = (w / 2.0, h / 2.0);
    let t = (position - 0.5) / 0.62;
    let scale = (1.0 - t * t).max(0.05).sqrt();
    let head = (0.36 * w * scale, 0.44 * h * scale);
    let skull = (head.0 - 0.012 * w, head.1 - 0.012 * w);
    let brain = (skull.0 - 0.022 * w, skull.1 - 0.022 * w);
    let mut shapes = vec![
        Shape::ellipse(center, head, Paint::Set(45)),
        Shape::ellipse(center, skull, Paint::Set(1000)),
        Shape::ellipse(center, brain, Paint::Set(38)),
        Shape::ellipse(center, (brain.0 * 0.7, brain.1 * 0.7), Paint::Set(28)),
    ];
    if (0.4..0.65).contains(&position) {
        for side in [-1.0, 1.0] {
            shapes.push(Shape::ellipse(
                (center.0 + side * 0.05 * w, center.1 - 0.02 * h),
                (0.025 * w, 0.09 * h),
                Paint::Set(6),
            ));
        }
    }
    if let Some(lesion) = lesion {
        let radius = lesion.radius * w;
        shapes.push(Shape::ellipse(
            (
                center.0 + lesion.offset.0 * brain.0,
                center.1 + lesion.offset.1 * brain.1,
            ),
            (radius, radius),
            Paint::Set(lesion.hounsfield),
        ));
    }
    let storage = Storage {
        offset: 1024,
        min: 0,
        max: 4095,
        noise: 6,
    };
    render(rows, columns, -1000, &shapes, storage, seed)
}

/// Axial T1-weighted brain MR slice, 12 bits stored.
pub(crate) fn mr_brain_slice(rows: u16, columns: u16, position: f32, seed: u64) -> Vec<u8> {
    let (w, h) = (f32::from(columns), f32::from(rows));
    let center = (w / 2.0, h / 2.0);
    let t = (position - 0.5) / 0.62;
    let scale = (1.0 - t * t).max(0.05).sqrt();
    let head = (0.36 * w * scale, 0.44 * h * scale);
    let shrink = |axes: (f32, f32), by: f32| (axes.0 - by * w, axes.1 - by * w);
    let skull = shrink(head, 0.02);
    let csf = shrink(skull, 0.012);
    let brain = shrink(csf, 0.01);
    let mut shapes = vec![
        Shape::ellipse(center, head, Paint::Set(900)),
        Shape::ellipse(center, skull, Paint::Set(60)),
        Shape::ellipse(center, csf, Paint::Set(300)),
        Shape::ellipse(center, brain, Paint::Set(550)),
        Shape::ellipse(center, (brain.0 * 0.7, brain.1 * 0.7), Paint::Set(720)),
    ];
    if (0.4..0.65).contains(&position) {
        for side in [-1.0, 1.0] {
            shapes.push(Shape::ellipse(
                (center.0 + side * 0.05 * w, center.1 - 0.02 * h),
                (0.025 * w, 0.09 * h),
                Paint::Set(180),
            ));
        }
    }
    let storage = Storage {
        offset: 0,
        min: 0,
        max: 4095,
        noise: 15,
    };
    render(rows, columns, 8, &shapes, storage, seed)
}

/// PA chest radiograph (MONOCHROME2: dense is bright), 12 bits stored.
pub(crate) fn chest_radiograph(rows: u16, columns: u16, seed: u64) -> Vec<u8> {
    let (w, h) = (f32::from(columns), f32::from(rows));
    let rib_period = usize::from(rows) / 24;
    let mut shapes = vec![Shape::ellipse(
        (w * 0.5, h * 0.55),
        (w * 0.46, h * 0.6),
        Paint::Set(2300),
    )];
    for side in [-1.0, 1.0] {
        let lung = Shape::ellipse(
            (w * (0.5 + side * 0.2), h * 0.45),
            (w * 0.14, h * 0.28),
            Paint::Set(800),
        );
        shapes.push(lung);
        shapes.push(
            Shape {
                paint: Paint::Add(350),
                ..lung
            }
            .striped(rib_period),
        );
    }
    shapes.push(Shape::ellipse(
        (w * 0.53, h * 0.58),
        (w * 0.12, h * 0.18),
        Paint::Set(2600),
    ));
    shapes.push(Shape::ellipse(
        (w * 0.5, h * 0.55),
        (w * 0.03, h * 0.45),
        Paint::Set(3000),
    ));
    let storage = Storage {
        offset: 0,
        min: 0,
        max: 4095,
        noise: 40,
    };
    render(rows, columns, 150, &shapes, storage, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_i16(pixels: &[u8], columns: usize, x: usize, y: usize) -> i16 {
        let i = (y * columns + x) * 2;
        i16::from_le_bytes([pixels[i], pixels[i + 1]])
    }

    #[test]
    fn ct_slice_has_air_bone_and_brain_in_hounsfield_units() {
        let pixels = ct_head_slice(512, 512, 0.5, None, 1);
        assert_eq!(pixels.len(), 512 * 512 * 2);
        let hu = |x, y| i32::from(stored_i16(&pixels, 512, x, y)) - 1024;
        assert!((-1010..=-990).contains(&hu(5, 5)), "air {}", hu(5, 5));
        // The skull ring sits just inside the scalp along the horizontal axis.
        let skull_x = 256 - (0.36 * 512.0 - 0.018 * 512.0) as usize;
        assert!(
            (990..=1010).contains(&hu(skull_x, 256)),
            "bone {}",
            hu(skull_x, 256)
        );
        // Grey matter just inside the skull.
        let brain_x = 256 - (0.36 * 512.0 - 0.06 * 512.0) as usize;
        assert!(
            (25..=50).contains(&hu(brain_x, 256)),
            "brain {}",
            hu(brain_x, 256)
        );
    }

    #[test]
    fn lesion_is_hyperdense() {
        let lesion = Lesion {
            slices: 0..1,
            offset: (0.0, 0.3),
            radius: 0.03,
            hounsfield: 70,
        };
        let pixels = ct_head_slice(512, 512, 0.5, Some(&lesion), 1);
        let brain_y = 0.44 * 512.0 - 0.034 * 512.0;
        let y = (256.0 + 0.3 * brain_y) as usize;
        let hu = i32::from(stored_i16(&pixels, 512, 256, y)) - 1024;
        assert!((60..=80).contains(&hu), "lesion {hu}");
    }

    #[test]
    fn noise_depends_on_seed_only() {
        assert_eq!(
            mr_brain_slice(64, 64, 0.5, 3),
            mr_brain_slice(64, 64, 0.5, 3)
        );
        assert_ne!(
            mr_brain_slice(64, 64, 0.5, 3),
            mr_brain_slice(64, 64, 0.5, 4)
        );
        assert_eq!(chest_radiograph(64, 48, 3).len(), 64 * 48 * 2);
    }
}
