//! Synthetic input tensors for the engine tests: a head CT slice in HU with
//! or without a hyperdense blob, and radiographs at chosen exposures. Small,
//! deterministic, and made here rather than stored.

use super::tensor::Tensor;

/// A few HU of deterministic noise (xorshift), like a real scanner's.
struct Noise(u64);

impl Noise {
    fn next(&mut self, amplitude: f32) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // Triangular in [-amplitude, amplitude].
        let a = (self.0 & 0xffff) as f32 / 65535.0;
        let b = ((self.0 >> 16) & 0xffff) as f32 / 65535.0;
        (a + b - 1.0) * amplitude
    }
}

fn inside(x: usize, y: usize, center: (f32, f32), semi_axes: (f32, f32)) -> bool {
    let dx = (x as f32 + 0.5 - center.0) / semi_axes.0;
    let dy = (y as f32 + 0.5 - center.1) / semi_axes.1;
    dx * dx + dy * dy < 1.0
}

/// A 256×256 axial head slice in HU, shaped `[1, 1, 256, 256]`: air, scalp
/// (45 HU), skull (1000), brain (38) with deeper white matter (28), and,
/// when `blob_radius > 0`, a 70 HU blob of that radius in pixels.
pub fn ct_head(blob_radius: f32, seed: u64) -> Tensor {
    let mut noise = Noise(seed | 1);
    let c = (128.0, 128.0);
    Tensor::from_shape_fn(ndarray::IxDyn(&[1, 1, 256, 256]), |index| {
        let (y, x) = (index[2], index[3]);
        let mut hu = -1000.0;
        for (semi_axes, value) in [
            ((92.0, 112.0), 45.0),
            ((89.0, 109.0), 1000.0),
            ((83.0, 103.0), 38.0),
            ((58.0, 72.0), 28.0),
        ] {
            if inside(x, y, c, semi_axes) {
                hu = value;
            }
        }
        if blob_radius > 0.0 && inside(x, y, (150.0, 100.0), (blob_radius, blob_radius)) {
            hu = 70.0;
        }
        hu + noise.next(5.0)
    })
}

/// A 256×256 PA chest radiograph, 12-bit stored values scaled by 1/4095 as
/// the dx-exposure manifest asks, shaped `[1, 1, 256, 256]`. `exposure`
/// multiplies every stored value (1.0 is a well exposed film).
pub fn chest_radiograph(exposure: f32) -> Tensor {
    let mut noise = Noise(7);
    Tensor::from_shape_fn(ndarray::IxDyn(&[1, 1, 256, 256]), |index| {
        let (y, x) = (index[2], index[3]);
        let mut value = 150.0;
        if inside(x, y, (128.0, 141.0), (118.0, 154.0)) {
            value = 2300.0;
        }
        for side in [-1.0, 1.0] {
            if inside(x, y, (128.0 + side * 51.0, 115.0), (36.0, 72.0)) {
                value = if (y / 10) % 2 == 0 { 1150.0 } else { 800.0 };
            }
        }
        if inside(x, y, (136.0, 148.0), (31.0, 46.0)) {
            value = 2600.0;
        }
        if inside(x, y, (128.0, 141.0), (8.0, 115.0)) {
            value = 3000.0;
        }
        ((value + noise.next(40.0)) * exposure).clamp(0.0, 4095.0) / 4095.0
    })
}

/// Deterministic values in about -2..2, shaped as asked (for models whose
/// output means nothing, such as the random-weight ResNet).
pub fn pseudo_random(shape: &[usize], seed: u64) -> Tensor {
    let mut noise = Noise(seed | 1);
    Tensor::from_shape_fn(ndarray::IxDyn(shape), |_| noise.next(2.0))
}
