//! Frames and objects built in memory for the pixel tests: real JPEGs
//! (the `image` crate's encoder), hand-built JPEG-LS and JPEG 2000 headers,
//! RLE fragments, and images wrapping them.

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, FileMetaTableBuilder, InMemDicomObject};

use super::{ImageGeometry, PixelError, image_to_tensor};
use crate::models::{DataType, Layout, Normalisation, Preprocessing, TensorSpec, Window};

pub(super) fn geometry(rows: usize, columns: usize, samples: usize, bits: u16) -> ImageGeometry {
    ImageGeometry {
        rows,
        columns,
        samples_per_pixel: samples,
        bits_allocated: bits,
        number_of_frames: 1,
        frame_bytes: (rows * columns * samples) as u64 * u64::from(bits / 8),
    }
}

/// A real JPEG Baseline of a `rows × columns` grey ramp.
pub(super) fn jpeg(rows: u16, columns: u16) -> Vec<u8> {
    let grey: Vec<u8> = (0..usize::from(rows) * usize::from(columns))
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(
            &grey,
            u32::from(columns),
            u32::from(rows),
            image::ExtendedColorType::L8,
        )
        .unwrap();
    out
}

/// Rewrites height and width of the first SOF0..SOF3 segment.
pub(super) fn patch_sof(jpeg: &mut [u8], rows: u16, columns: u16) {
    let mut at = 2;
    loop {
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if (0xC0..=0xC3).contains(&jpeg[at + 1]) {
            jpeg[at + 5..at + 7].copy_from_slice(&rows.to_be_bytes());
            jpeg[at + 7..at + 9].copy_from_slice(&columns.to_be_bytes());
            return;
        }
        at += 2 + length;
    }
}

/// SOI and a JPEG-LS SOF55 header (then a bare SOS marker).
pub(super) fn jpeg_ls_header(rows: u16, columns: u16, components: u8, precision: u8) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xF7];
    out.extend((8 + 3 * u16::from(components)).to_be_bytes());
    out.push(precision);
    out.extend(rows.to_be_bytes());
    out.extend(columns.to_be_bytes());
    out.push(components);
    for id in 1..=components {
        out.extend([id, 0x11, 0]);
    }
    out.extend([0xFF, 0xDA]);
    out
}

/// SOC and SIZ of a one-tile JPEG 2000 codestream (then a bare COD marker).
pub(super) fn j2k_header(rows: u32, columns: u32, components: u16, precision: u8) -> Vec<u8> {
    let mut out = vec![0xFF, 0x4F, 0xFF, 0x51];
    out.extend((38 + 3 * components).to_be_bytes());
    out.extend(0u16.to_be_bytes());
    for value in [columns, rows, 0, 0, columns, rows, 0, 0] {
        out.extend(value.to_be_bytes());
    }
    out.extend(components.to_be_bytes());
    for _ in 0..components {
        out.extend([precision - 1, 1, 1]);
    }
    out.extend([0xFF, 0x52]);
    out
}

/// `codestream` in a JP2 file: signature, file type, header, codestream.
pub(super) fn jp2(codestream: &[u8]) -> Vec<u8> {
    let boxed = |kind: &[u8; 4], contents: &[u8]| {
        let mut out = ((8 + contents.len()) as u32).to_be_bytes().to_vec();
        out.extend(kind);
        out.extend(contents);
        out
    };
    let mut out = boxed(b"jP  ", &[0x0D, 0x0A, 0x87, 0x0A]);
    out.extend(boxed(b"ftyp", b"jp2 \0\0\0\0jp2 "));
    out.extend(boxed(b"jp2h", &boxed(b"ihdr", &[0; 14])));
    out.extend(boxed(b"jp2c", codestream));
    out
}

/// An RLE fragment of `planes` segments, each `plane` bytes of `value`
/// written as literal runs of up to 128 bytes.
pub(super) fn rle_fragment(planes: usize, plane: usize, value: u8) -> Vec<u8> {
    let mut segment = Vec::new();
    let mut left = plane;
    while left > 0 {
        let run = left.min(128);
        segment.push((run - 1) as u8);
        segment.extend(std::iter::repeat_n(value, run));
        left -= run;
    }
    if segment.len() % 2 == 1 {
        segment.push(0x80); // no-op padding
    }
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(&(planes as u32).to_le_bytes());
    for i in 0..planes {
        let offset = (64 + i * segment.len()) as u32;
        out[4 + 4 * i..8 + 4 * i].copy_from_slice(&offset.to_le_bytes());
    }
    for _ in 0..planes {
        out.extend(&segment);
    }
    out
}

/// A grey image of `rows × columns` whose pixel data is `fragments` in
/// transfer syntax `syntax`.
pub(super) fn encapsulated(
    syntax: &str,
    rows: u16,
    columns: u16,
    bits: u16,
    fragments: Vec<Vec<u8>>,
) -> FileDicomObject<InMemDicomObject> {
    let mut object = InMemDicomObject::new_empty();
    let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    for (tag, value) in [
        (tags::ROWS, rows),
        (tags::COLUMNS, columns),
        (tags::SAMPLES_PER_PIXEL, 1),
        (tags::BITS_ALLOCATED, bits),
        (tags::BITS_STORED, bits),
        (tags::HIGH_BIT, bits - 1),
        (tags::PIXEL_REPRESENTATION, 0),
    ] {
        object.put(us(tag, value));
    }
    object.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from("MONOCHROME2"),
    ));
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::new(Vec::<u32>::new(), fragments),
    ));
    object
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(syntax)
                .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
                .media_storage_sop_instance_uid("1.2.3.4"),
        )
        .unwrap()
}

/// Identity preprocessing to a `rows × columns` one-channel tensor.
pub(super) fn tensor_of(
    object: &FileDicomObject<InMemDicomObject>,
    rows: usize,
    columns: usize,
) -> Result<crate::infer::Tensor, PixelError> {
    let pre = Preprocessing {
        modality_lut: false,
        window: Window::None,
        resize: [rows, columns],
        normalisation: Normalisation::None,
        channels: 1,
        layout: Layout::Nchw,
    };
    let spec = TensorSpec {
        name: "image".into(),
        shape: vec![1, 1, rows, columns],
        dtype: DataType::Float32,
    };
    image_to_tensor(object, 0, &pre, &spec)
}
