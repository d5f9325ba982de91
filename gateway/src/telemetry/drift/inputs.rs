//! What the runner hands the drift monitor besides scores: acquisition
//! parameters read from a source header, and summary statistics of the
//! input tensor after preprocessing. Only numbers and a normalised kernel
//! category leave here; nothing identifying.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::quantity::category_slug;

/// Acquisition parameters of a series (from its first source instance).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcquisitionParams {
    /// KVP (0018,0060), kV.
    pub kvp: Option<f64>,
    /// SliceThickness (0018,0050), mm.
    pub slice_thickness: Option<f64>,
    /// PixelSpacing (0028,0030) row spacing, else ImagerPixelSpacing
    /// (0018,1164) for projection radiography, mm.
    pub pixel_spacing: Option<f64>,
    /// ConvolutionKernel (0018,1210) first value, normalised (lower-case
    /// `[a-z0-9-]`, at most 16 characters).
    pub convolution_kernel: Option<String>,
}

impl AcquisitionParams {
    /// Reads the parameters; absent, empty or malformed values are `None`.
    pub fn from_object(obj: &InMemDicomObject) -> Self {
        let number = |tag: Tag| -> Option<f64> {
            let values = obj.get(tag)?.to_multi_float64().ok()?;
            values
                .first()
                .copied()
                .filter(|v| v.is_finite() && *v > 0.0)
        };
        let kernel = obj
            .get(tags::CONVOLUTION_KERNEL)
            .and_then(|e| e.to_multi_str().ok().map(|v| v.first().cloned()))
            .flatten()
            .and_then(|k| category_slug(&k));
        Self {
            kvp: number(tags::KVP),
            slice_thickness: number(tags::SLICE_THICKNESS),
            pixel_spacing: number(tags::PIXEL_SPACING)
                .or_else(|| number(tags::IMAGER_PIXEL_SPACING)),
            convolution_kernel: kernel,
        }
    }
}

/// Mean and standard deviation of an input tensor after preprocessing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputStats {
    pub mean: f64,
    pub std: f64,
}

impl InputStats {
    /// Over every finite element (`None` for an empty tensor). One pass,
    /// Welford's update, so large tensors lose no precision.
    pub fn of(values: &[f32]) -> Option<Self> {
        let (mut n, mut mean, mut m2) = (0_u64, 0.0_f64, 0.0_f64);
        for v in values
            .iter()
            .map(|v| f64::from(*v))
            .filter(|v| v.is_finite())
        {
            n += 1;
            let delta = v - mean;
            mean += delta / n as f64;
            m2 += delta * (v - mean);
        }
        (n > 0).then(|| InputStats {
            mean,
            std: (m2 / n as f64).sqrt(),
        })
    }

    /// Of a tensor (any layout; the statistics ignore it).
    pub fn of_tensor(tensor: &crate::infer::Tensor) -> Option<Self> {
        match tensor.as_slice() {
            Some(slice) => Self::of(slice),
            None => Self::of(&tensor.iter().copied().collect::<Vec<f32>>()),
        }
    }

    /// The average of per-image statistics, one observation per series.
    pub fn mean_of(images: &[InputStats]) -> Option<Self> {
        let n = images.len() as f64;
        (!images.is_empty()).then(|| InputStats {
            mean: images.iter().map(|s| s.mean).sum::<f64>() / n,
            std: images.iter().map(|s| s.std).sum::<f64>() / n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    #[test]
    fn reads_acquisition_parameters_and_tames_the_kernel() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::KVP,
            VR::DS,
            PrimitiveValue::from("120 "),
        ));
        obj.put(DataElement::new(
            tags::SLICE_THICKNESS,
            VR::DS,
            PrimitiveValue::from("0.625"),
        ));
        obj.put(DataElement::new(
            tags::PIXEL_SPACING,
            VR::DS,
            PrimitiveValue::Strs(["0.488".to_string(), "0.488".to_string()].into()),
        ));
        obj.put(DataElement::new(
            tags::CONVOLUTION_KERNEL,
            VR::SH,
            PrimitiveValue::from("FC13 "),
        ));
        let params = AcquisitionParams::from_object(&obj);
        assert_eq!(params.kvp, Some(120.0));
        assert_eq!(params.slice_thickness, Some(0.625));
        assert_eq!(params.pixel_spacing, Some(0.488));
        assert_eq!(params.convolution_kernel.as_deref(), Some("fc13"));

        let mut bad = InMemDicomObject::new_empty();
        bad.put(DataElement::new(
            tags::KVP,
            VR::DS,
            PrimitiveValue::from("abc"),
        ));
        assert_eq!(
            AcquisitionParams::from_object(&bad),
            AcquisitionParams::default()
        );
    }

    #[test]
    fn input_statistics() {
        let stats = InputStats::of(&[1.0, 2.0, 3.0, 4.0, f32::NAN]).unwrap();
        assert!((stats.mean - 2.5).abs() < 1e-12);
        assert!((stats.std - 1.118_033_988_7).abs() < 1e-9);
        assert_eq!(InputStats::of(&[]), None);
        let tensor =
            crate::infer::Tensor::from_shape_vec(vec![1, 1, 2, 2], vec![0.0, 0.0, 1.0, 1.0])
                .unwrap();
        assert_eq!(InputStats::of_tensor(&tensor).unwrap().mean, 0.5);
        let mean = InputStats::mean_of(&[
            stats,
            InputStats {
                mean: 0.5,
                std: 0.0,
            },
        ])
        .unwrap();
        assert!((mean.mean - 1.5).abs() < 1e-12);
    }
}
