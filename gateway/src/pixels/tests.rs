//! Small images built in memory, one per behaviour.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, FileMetaTableBuilder, InMemDicomObject};
use ndarray::Array3;

use super::*;
use crate::models::{Layout, Manifest, Normalisation, Preprocessing, Window};

const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

struct TestImage {
    rows: u16,
    columns: u16,
    photometric: &'static str,
    signed: bool,
    pixel_bytes: Vec<u8>,
    rescale: Option<(f64, f64)>,
    window: Option<(f64, f64)>,
}

impl TestImage {
    fn build(self) -> FileDicomObject<InMemDicomObject> {
        let mut obj = InMemDicomObject::new_empty();
        let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
        obj.put(us(tags::ROWS, self.rows));
        obj.put(us(tags::COLUMNS, self.columns));
        obj.put(us(tags::SAMPLES_PER_PIXEL, 1));
        obj.put(us(tags::BITS_ALLOCATED, 16));
        obj.put(us(tags::BITS_STORED, 16));
        obj.put(us(tags::HIGH_BIT, 15));
        obj.put(us(tags::PIXEL_REPRESENTATION, u16::from(self.signed)));
        obj.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from(self.photometric),
        ));
        if let Some((slope, intercept)) = self.rescale {
            obj.put(DataElement::new(
                tags::RESCALE_SLOPE,
                VR::DS,
                PrimitiveValue::from(slope.to_string()),
            ));
            obj.put(DataElement::new(
                tags::RESCALE_INTERCEPT,
                VR::DS,
                PrimitiveValue::from(intercept.to_string()),
            ));
        }
        if let Some((center, width)) = self.window {
            obj.put(DataElement::new(
                tags::WINDOW_CENTER,
                VR::DS,
                PrimitiveValue::from(format!("{center}\\{}", center + 100.0)),
            ));
            obj.put(DataElement::new(
                tags::WINDOW_WIDTH,
                VR::DS,
                PrimitiveValue::from(format!("{width}\\{}", width + 100.0)),
            ));
        }
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(self.pixel_bytes),
        ));
        obj.with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
                .media_storage_sop_instance_uid("1.2.3.4"),
        )
        .unwrap()
    }
}

fn signed_bytes(values: &[i16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn unsigned_bytes(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// An 8×8 CT slice, stored values 0..64 (HU = stored - 1024).
fn ct_8x8() -> TestImage {
    let values: Vec<i16> = (0..64).collect();
    TestImage {
        rows: 8,
        columns: 8,
        photometric: "MONOCHROME2",
        signed: true,
        pixel_bytes: signed_bytes(&values),
        rescale: Some((1.0, -1024.0)),
        window: None,
    }
}

fn pre(resize: [usize; 2], window: Window, channels: usize, layout: Layout) -> Preprocessing {
    Preprocessing {
        modality_lut: true,
        window,
        resize,
        normalisation: Normalisation::None,
        channels,
        layout,
    }
}

fn spec(shape: &[usize]) -> TensorSpec {
    TensorSpec {
        name: "image".into(),
        shape: shape.to_vec(),
        dtype: crate::models::DataType::Float32,
    }
}

#[test]
fn modality_lut_gives_hounsfield_units() {
    let object = ct_8x8().build();
    let p = pre([8, 8], Window::None, 1, Layout::Nchw);
    let tensor = image_to_tensor(&object, 0, &p, &spec(&[1, 1, 8, 8])).unwrap();
    assert_eq!(tensor[[0, 0, 0, 0]], -1024.0);
    assert_eq!(tensor[[0, 0, 7, 7]], 63.0 - 1024.0);
    assert_eq!(tensor[[0, 0, 1, 2]], 10.0 - 1024.0);

    let raw = Preprocessing {
        modality_lut: false,
        ..p
    };
    let tensor = image_to_tensor(&object, 0, &raw, &spec(&[1, 1, 8, 8])).unwrap();
    assert_eq!(tensor[[0, 0, 1, 2]], 10.0);
}

#[test]
fn negative_stored_values_keep_their_sign() {
    let mut image = ct_8x8();
    image.pixel_bytes = signed_bytes(&[-2000; 64]);
    image.rescale = None;
    let p = pre([8, 8], Window::None, 1, Layout::Nchw);
    let tensor = image_to_tensor(&image.build(), 0, &p, &spec(&[1, 1, 8, 8])).unwrap();
    assert!(tensor.iter().all(|&x| x == -2000.0));
}

#[test]
fn fixed_window_maps_center_to_one_half() {
    let mut image = ct_8x8();
    // HU: 40 at the first pixel, 40 - 40 = 0 and 40 + 40 = 80 around it.
    let mut values = vec![1064i16; 64];
    values[1] = 1024;
    values[2] = 1104;
    values[3] = 0;
    values[4] = 3000;
    image.pixel_bytes = signed_bytes(&values);
    let p = pre(
        [8, 8],
        Window::Fixed {
            center: 40.0,
            width: 80.0,
        },
        1,
        Layout::Nchw,
    );
    let tensor = image_to_tensor(&image.build(), 0, &p, &spec(&[1, 1, 8, 8])).unwrap();
    let row: Vec<f32> = (0..5).map(|x| tensor[[0, 0, 0, x]]).collect();
    assert_eq!(row, vec![0.5, 0.0, 1.0, 0.0, 1.0]);
}

#[test]
fn window_from_file_uses_the_first_pair() {
    // An MR image, 16-bit unsigned, no rescale.
    let mut values = vec![500u16; 16];
    values[1] = 250;
    let image = TestImage {
        rows: 4,
        columns: 4,
        photometric: "MONOCHROME2",
        signed: false,
        pixel_bytes: unsigned_bytes(&values),
        rescale: None,
        window: Some((500.0, 500.0)),
    };
    let p = pre([4, 4], Window::FromFile, 1, Layout::Nchw);
    let tensor = image_to_tensor(&image.build(), 0, &p, &spec(&[1, 1, 4, 4])).unwrap();
    assert_eq!(tensor[[0, 0, 0, 0]], 0.5);
    assert_eq!(tensor[[0, 0, 0, 1]], 0.0);
}

#[test]
fn window_from_file_without_window_is_a_typed_error() {
    let p = pre([8, 8], Window::FromFile, 1, Layout::Nchw);
    let error = image_to_tensor(&ct_8x8().build(), 0, &p, &spec(&[1, 1, 8, 8])).unwrap_err();
    assert_eq!(error, PixelError::MissingAttribute("WindowCenter"));
}

#[test]
fn monochrome1_is_inverted_after_windowing() {
    // A DX image where low values are white.
    let mut values = vec![1000u16; 16];
    values[1] = 0;
    let image = TestImage {
        rows: 4,
        columns: 4,
        photometric: "MONOCHROME1",
        signed: false,
        pixel_bytes: unsigned_bytes(&values),
        rescale: None,
        window: None,
    };
    let p = pre(
        [4, 4],
        Window::Fixed {
            center: 500.0,
            width: 1000.0,
        },
        1,
        Layout::Nchw,
    );
    let tensor = image_to_tensor(&image.build(), 0, &p, &spec(&[1, 1, 4, 4])).unwrap();
    assert_eq!(tensor[[0, 0, 0, 0]], 0.0);
    assert_eq!(tensor[[0, 0, 0, 1]], 1.0);
}

#[test]
fn bilinear_resize_samples_pixel_centres() {
    let pixels = Array3::from_shape_vec((1, 1, 2), vec![0.0, 10.0]).unwrap();
    let resized = resize_bilinear(&pixels, 1, 4);
    assert_eq!(resized.as_slice().unwrap(), &[0.0, 2.5, 7.5, 10.0]);

    let square = Array3::from_shape_vec((1, 2, 2), vec![0.0, 10.0, 20.0, 30.0]).unwrap();
    let resized = resize_bilinear(&square, 4, 4);
    // Row 1 sits a quarter of the way from the top source row to the bottom.
    assert_eq!(resized[[0, 1, 1]], 0.75 * 2.5 + 0.25 * 22.5);
    // Downsampling by two averages each 2×2 block.
    let big = Array3::from_shape_fn((1, 4, 4), |(_, y, x)| (y * 4 + x) as f32);
    let small = resize_bilinear(&big, 2, 2);
    assert_eq!(small[[0, 0, 0]], 2.5);
    assert_eq!(small[[0, 1, 1]], 12.5);
}

#[test]
fn resize_to_the_manifest_shape() {
    let p = pre([5, 3], Window::None, 1, Layout::Nchw);
    let tensor = image_to_tensor(&ct_8x8().build(), 0, &p, &spec(&[1, 1, 5, 3])).unwrap();
    assert_eq!(tensor.shape(), &[1, 1, 5, 3]);
}

#[test]
fn grey_is_replicated_on_three_channels_in_either_layout() {
    let object = ct_8x8().build();
    let nchw = image_to_tensor(
        &object,
        0,
        &pre([8, 8], Window::None, 3, Layout::Nchw),
        &spec(&[1, 3, 8, 8]),
    )
    .unwrap();
    let nhwc = image_to_tensor(
        &object,
        0,
        &pre([8, 8], Window::None, 3, Layout::Nhwc),
        &spec(&[1, 8, 8, 3]),
    )
    .unwrap();
    assert_eq!(nchw.shape(), &[1, 3, 8, 8]);
    assert_eq!(nhwc.shape(), &[1, 8, 8, 3]);
    assert!(nhwc.is_standard_layout());
    for c in 0..3 {
        assert_eq!(nchw[[0, c, 2, 5]], (2 * 8 + 5) as f32 - 1024.0);
        assert_eq!(nhwc[[0, 2, 5, c]], (2 * 8 + 5) as f32 - 1024.0);
    }
}

#[test]
fn normalisation_scale_and_mean_std() {
    let object = ct_8x8().build();
    let mut p = pre([8, 8], Window::None, 1, Layout::Nchw);
    p.normalisation = Normalisation::Scale {
        scale: 0.5,
        offset: 512.0,
    };
    let tensor = image_to_tensor(&object, 0, &p, &spec(&[1, 1, 8, 8])).unwrap();
    assert_eq!(tensor[[0, 0, 0, 0]], 0.0);

    let mut p = pre([8, 8], Window::None, 3, Layout::Nchw);
    p.normalisation = Normalisation::MeanStd {
        mean: vec![-1024.0, 0.0, -1000.0],
        std: vec![1.0, 2.0, 4.0],
    };
    let tensor = image_to_tensor(&object, 0, &p, &spec(&[1, 3, 8, 8])).unwrap();
    assert_eq!(tensor[[0, 0, 0, 0]], 0.0);
    assert_eq!(tensor[[0, 1, 0, 0]], -512.0);
    assert_eq!(tensor[[0, 2, 0, 0]], -6.0);
}

#[test]
fn a_spec_that_disagrees_with_the_preprocessing_is_refused() {
    let p = pre([8, 8], Window::None, 1, Layout::Nchw);
    let error = image_to_tensor(&ct_8x8().build(), 0, &p, &spec(&[1, 8, 8, 1])).unwrap_err();
    assert!(matches!(error, PixelError::Shape { .. }), "{error}");
}

#[test]
fn truncated_pixel_data_is_a_typed_error() {
    let mut image = ct_8x8();
    image.pixel_bytes.truncate(100);
    let p = pre([8, 8], Window::None, 1, Layout::Nchw);
    let error = image_to_tensor(&image.build(), 0, &p, &spec(&[1, 1, 8, 8])).unwrap_err();
    assert_eq!(
        error,
        PixelError::Truncated {
            expected: 128,
            actual: 100
        }
    );
}

#[test]
fn zero_rows_is_a_dimensions_error() {
    let mut image = ct_8x8();
    image.rows = 0;
    let p = pre([8, 8], Window::None, 1, Layout::Nchw);
    let error = image_to_tensor(&image.build(), 0, &p, &spec(&[1, 1, 8, 8])).unwrap_err();
    assert!(matches!(error, PixelError::Dimensions(_)), "{error}");
}

#[test]
fn absurd_dimensions_are_refused_before_allocating() {
    // 65535 × 65535 × 2 bytes × 100000 frames: far past the cap, with
    // only 128 bytes of pixel data behind it.
    let mut image = ct_8x8();
    image.rows = u16::MAX;
    image.columns = u16::MAX;
    let mut object = image.build();
    object.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("100000"),
    ));
    let p = pre([8, 8], Window::None, 1, Layout::Nchw);
    let error = image_to_tensor(&object, 0, &p, &spec(&[1, 1, 8, 8])).unwrap_err();
    assert!(matches!(error, PixelError::TooLarge { .. }), "{error}");
}

#[test]
fn missing_rows_and_frames_out_of_range_are_typed_errors() {
    let mut object = ct_8x8().build();
    let p = pre([8, 8], Window::None, 1, Layout::Nchw);
    let error = image_to_tensor(&object, 1, &p, &spec(&[1, 1, 8, 8])).unwrap_err();
    assert!(matches!(error, PixelError::Dimensions(_)), "{error}");
    object.remove_element(tags::ROWS);
    let error = image_to_tensor(&object, 0, &p, &spec(&[1, 1, 8, 8])).unwrap_err();
    assert_eq!(error, PixelError::MissingAttribute("Rows"));
}

#[test]
fn demo_ct_model_gets_hounsfield_units_at_256() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/ct-hyperdensity/1.0.0/manifest.toml"
    );
    let manifest = Manifest::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
    // A 512×512 phantom: air outside, 40 HU brain inside a circle, stored
    // as HU + 1024 with a -1024 intercept as scanners do.
    let stored: Vec<i16> = (0..512 * 512)
        .map(|i| {
            let (y, x) = ((i / 512) as f32 - 255.5, (i % 512) as f32 - 255.5);
            if x * x + y * y < 200.0 * 200.0 {
                1064
            } else {
                24
            }
        })
        .collect();
    let image = TestImage {
        rows: 512,
        columns: 512,
        photometric: "MONOCHROME2",
        signed: true,
        pixel_bytes: signed_bytes(&stored),
        rescale: Some((1.0, -1024.0)),
        window: None,
    };
    let tensor =
        image_to_tensor(&image.build(), 0, &manifest.preprocessing, &manifest.input).unwrap();
    assert_eq!(tensor.shape(), &[1, 1, 256, 256]);
    assert_eq!(tensor[[0, 0, 128, 128]], 40.0);
    assert_eq!(tensor[[0, 0, 0, 0]], -1000.0);
    assert!(tensor.iter().all(|&hu| (-1000.0..=40.0).contains(&hu)));
}

/// RLE Lossless: one fragment, two literal segments (high bytes, then low).
#[test]
fn rle_encapsulated_frames_decode_like_native_ones() {
    use dicom_core::value::PixelFragmentSequence;

    let values: Vec<i16> = (0..16).map(|v| v * 100 - 500).collect();
    let segment = |bytes: Vec<u8>| {
        let mut out = vec![(bytes.len() - 1) as u8];
        out.extend(bytes);
        out.push(0); // even length
        out
    };
    let high = segment(values.iter().map(|v| v.to_be_bytes()[0]).collect());
    let low = segment(values.iter().map(|v| v.to_be_bytes()[1]).collect());
    let mut fragment = Vec::new();
    for word in [2u32, 64, 64 + high.len() as u32] {
        fragment.extend(word.to_le_bytes());
    }
    fragment.resize(64, 0);
    fragment.extend(high);
    fragment.extend(low);

    let mut image = ct_8x8();
    image.rows = 4;
    image.columns = 4;
    let mut object = image.build();
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::new(vec![], vec![fragment]),
    ));
    let mut object = object
        .into_inner()
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2.5")
                .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
                .media_storage_sop_instance_uid("1.2.3.4"),
        )
        .unwrap();
    let p = pre([4, 4], Window::None, 1, Layout::Nchw);
    let tensor = image_to_tensor(&object, 0, &p, &spec(&[1, 1, 4, 4])).unwrap();
    let expected: Vec<f32> = values.iter().map(|&v| f32::from(v) - 1024.0).collect();
    assert_eq!(tensor.iter().copied().collect::<Vec<_>>(), expected);

    // A fragment sequence with no fragments is truncated, not a panic.
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::<Vec<u8>>::new(vec![], vec![]),
    ));
    let error = image_to_tensor(&object, 0, &p, &spec(&[1, 1, 4, 4])).unwrap_err();
    assert!(matches!(error, PixelError::Truncated { .. }), "{error}");
}

#[test]
fn native_rgb_keeps_its_channels_and_refuses_a_grey_model() {
    let mut object = ct_8x8().build();
    let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    for (tag, value) in [
        (tags::ROWS, 2),
        (tags::COLUMNS, 2),
        (tags::SAMPLES_PER_PIXEL, 3),
        (tags::BITS_ALLOCATED, 8),
        (tags::BITS_STORED, 8),
        (tags::HIGH_BIT, 7),
        (tags::PIXEL_REPRESENTATION, 0),
        (tags::PLANAR_CONFIGURATION, 0),
    ] {
        object.put(us(tag, value));
    }
    object.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from("RGB"),
    ));
    // Pixel (0, 1) is pure green; the rest are (10, 20, 30).
    let mut bytes = [10u8, 20, 30].repeat(4);
    bytes[3..6].copy_from_slice(&[0, 255, 0]);
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(bytes),
    ));
    let mut p = pre([2, 2], Window::None, 3, Layout::Nchw);
    p.modality_lut = false;
    let tensor = image_to_tensor(&object, 0, &p, &spec(&[1, 3, 2, 2])).unwrap();
    assert_eq!([0, 1, 2].map(|c| tensor[[0, c, 0, 1]]), [0.0, 255.0, 0.0]);
    assert_eq!([0, 1, 2].map(|c| tensor[[0, c, 1, 1]]), [10.0, 20.0, 30.0]);

    let grey = pre([2, 2], Window::None, 1, Layout::Nchw);
    let error = image_to_tensor(&object, 0, &grey, &spec(&[1, 1, 2, 2])).unwrap_err();
    assert!(matches!(error, PixelError::Unsupported(_)), "{error}");
}
