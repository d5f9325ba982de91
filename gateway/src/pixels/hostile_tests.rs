//! Frames whose own headers lie, built in memory: each is refused before a
//! decoder runs, with the specific error.

use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

use super::frame_header::{FrameCodec, MAX_JPEG_HEADER_SCAN, check_frame};
use super::test_frames::*;
use super::*;

const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";
const JPEG_2000_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
/// Refusing a header takes microseconds; decoding an 8192×8192 JPEG in a
/// debug build takes seconds. Generous for a loaded CI machine.
const REFUSAL_TIME: Duration = Duration::from_millis(500);

fn frame_header_reason(error: PixelError, codec: &str) -> String {
    match error {
        PixelError::FrameHeader { codec: c, reason } if c == codec => reason,
        other => panic!("expected a {codec} frame header error, got {other:?}"),
    }
}

#[test]
fn an_honest_jpeg_decodes_through_the_check() {
    let object = encapsulated(JPEG_BASELINE, 64, 64, 8, vec![jpeg(64, 64)]);
    let tensor = tensor_of(&object, 64, 64).unwrap();
    assert_eq!(tensor.shape(), &[1, 1, 64, 64]);
    assert!(tensor.iter().any(|&v| v > 0.0));
}

#[test]
fn a_jpeg_sof_of_8192_in_a_64_image_is_refused_before_decoding() {
    let mut lying = jpeg(64, 64);
    patch_sof(&mut lying, 8192, 8192);
    let object = encapsulated(JPEG_BASELINE, 64, 64, 8, vec![lying]);
    let started = Instant::now();
    let reason = frame_header_reason(tensor_of(&object, 64, 64).unwrap_err(), "jpeg");
    assert!(started.elapsed() < REFUSAL_TIME, "{:?}", started.elapsed());
    assert!(reason.contains("8192x8192"), "{reason}");
    assert!(reason.contains("64x64"), "{reason}");
}

#[test]
fn a_jpeg_whose_samples_are_narrower_than_bits_allocated_is_refused() {
    // An 8-bit JPEG decodes to one byte per sample; the image allocates two.
    let object = encapsulated(JPEG_BASELINE, 64, 64, 16, vec![jpeg(64, 64)]);
    let reason = frame_header_reason(tensor_of(&object, 64, 64).unwrap_err(), "jpeg");
    assert!(reason.contains("8-bit samples"), "{reason}");
}

#[test]
fn a_jpeg_cut_before_its_frame_header_is_refused() {
    let whole = jpeg(64, 64);
    let sof = whole.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    for cut in [0, 1, 2, 7, sof, sof + 5] {
        let object = encapsulated(JPEG_BASELINE, 64, 64, 8, vec![whole[..cut].to_vec()]);
        frame_header_reason(tensor_of(&object, 64, 64).unwrap_err(), "jpeg");
    }
}

#[test]
fn a_jpeg_split_over_two_fragments_is_joined_and_checked() {
    let whole = jpeg(64, 64);
    let (first, second) = whole.split_at(100);
    let object = encapsulated(
        JPEG_BASELINE,
        64,
        64,
        8,
        vec![first.to_vec(), second.to_vec()],
    );
    assert_eq!(tensor_of(&object, 64, 64).unwrap().shape(), &[1, 1, 64, 64]);

    let mut lying = whole.clone();
    patch_sof(&mut lying, 64, 8192);
    let (first, second) = lying.split_at(100);
    let object = encapsulated(
        JPEG_BASELINE,
        64,
        64,
        8,
        vec![first.to_vec(), second.to_vec()],
    );
    frame_header_reason(tensor_of(&object, 64, 64).unwrap_err(), "jpeg");
}

#[test]
fn no_fragment_for_the_frame_is_truncated() {
    let object = encapsulated(JPEG_BASELINE, 64, 64, 8, vec![]);
    let error = tensor_of(&object, 64, 64).unwrap_err();
    assert!(matches!(error, PixelError::Truncated { .. }), "{error}");
}

#[test]
fn rle_headers_that_lie_are_refused() {
    let image = geometry(8, 8, 1, 16);
    let honest = rle_fragment(2, 64, 9);
    assert!(check_frame(FrameCodec::Rle, &honest, &image).is_ok());

    let mut three_segments = honest.clone();
    three_segments[0] = 3;
    let mut backwards = honest.clone();
    backwards[8..12].copy_from_slice(&10u32.to_le_bytes());
    let mut beyond = honest.clone();
    beyond[8..12].copy_from_slice(&100_000u32.to_le_bytes());
    let mut sixteen = honest.clone();
    sixteen[0] = 16;
    let short_header = honest[..40].to_vec();
    // Segments that inflate to half a plane: the decoder would index past them.
    let short_segments = rle_fragment(2, 32, 9);
    for (name, fragment) in [
        ("three segments", three_segments),
        ("offsets backwards", backwards),
        ("offset beyond the fragment", beyond),
        ("sixteen segments", sixteen),
        ("short header", short_header),
        ("short segments", short_segments),
    ] {
        let error = check_frame(FrameCodec::Rle, &fragment, &image).unwrap_err();
        assert!(
            matches!(error, PixelError::FrameHeader { codec: "rle", .. }),
            "{name}: {error}"
        );
    }

    // And through the pipeline: a lying RLE object is refused, not decoded.
    let object = encapsulated(RLE_LOSSLESS, 8, 8, 16, vec![rle_fragment(2, 32, 9)]);
    frame_header_reason(tensor_of(&object, 8, 8).unwrap_err(), "rle");
    let object = encapsulated(RLE_LOSSLESS, 8, 8, 16, vec![rle_fragment(2, 64, 9)]);
    assert_eq!(tensor_of(&object, 8, 8).unwrap()[[0, 0, 0, 0]], 2313.0);
}

#[test]
fn j2k_siz_that_disagrees_with_the_image_is_refused_raw_or_in_jp2() {
    let image = geometry(64, 64, 1, 16);
    for honest in [j2k_header(64, 64, 1, 12), jp2(&j2k_header(64, 64, 1, 12))] {
        assert!(check_frame(FrameCodec::Jpeg2000, &honest, &image).is_ok());
    }
    let mut subsampled = j2k_header(64, 64, 1, 12);
    subsampled[43] = 2;
    let mut jp2_palette = jp2(&j2k_header(64, 64, 1, 12));
    let ihdr = jp2_palette.windows(4).position(|w| w == b"ihdr").unwrap();
    jp2_palette[ihdr..ihdr + 4].copy_from_slice(b"pclr");
    for (name, frame, wanted) in [
        ("8192 square", j2k_header(8192, 8192, 1, 12), "8192x8192"),
        (
            "8192 in jp2",
            jp2(&j2k_header(8192, 8192, 1, 12)),
            "8192x8192",
        ),
        (
            "three components",
            j2k_header(64, 64, 3, 12),
            "3 components",
        ),
        ("20-bit samples", j2k_header(64, 64, 1, 20), "20-bit"),
        ("subsampled", subsampled, "subsampled"),
        ("palette", jp2_palette, "palette"),
        (
            "cut short",
            j2k_header(64, 64, 1, 12)[..30].to_vec(),
            "cut short",
        ),
    ] {
        let error = check_frame(FrameCodec::Jpeg2000, &frame, &image).unwrap_err();
        let reason = frame_header_reason(error, "jpeg 2000");
        assert!(reason.contains(wanted), "{name}: {reason}");
    }

    // 1×1 tiles on a 512×512 image: 262 144 tiles, each allocated by openjp2.
    let mut tiny_tiles = j2k_header(512, 512, 1, 12);
    tiny_tiles[24..28].copy_from_slice(&1u32.to_be_bytes());
    tiny_tiles[28..32].copy_from_slice(&1u32.to_be_bytes());
    let error = check_frame(
        FrameCodec::Jpeg2000,
        &tiny_tiles,
        &geometry(512, 512, 1, 16),
    );
    assert!(frame_header_reason(error.unwrap_err(), "jpeg 2000").contains("262144 tiles"));

    // Through the pipeline: refused before openjp2 sees it.
    let object = encapsulated(
        JPEG_2000_LOSSLESS,
        64,
        64,
        16,
        vec![j2k_header(8192, 8192, 1, 12)],
    );
    frame_header_reason(tensor_of(&object, 64, 64).unwrap_err(), "jpeg 2000");
}

#[test]
fn jpeg_ls_sof55_is_checked_like_a_jpeg_sof() {
    let image = geometry(64, 64, 1, 16);
    assert!(check_frame(FrameCodec::JpegLs, &jpeg_ls_header(64, 64, 1, 12), &image).is_ok());
    let error = check_frame(FrameCodec::JpegLs, &jpeg_ls_header(8192, 64, 1, 12), &image);
    assert!(frame_header_reason(error.unwrap_err(), "jpeg-ls").contains("8192x64"));
    // A JPEG-LS frame in a JPEG syntax, and a JPEG frame in a JPEG-LS one.
    let error = check_frame(FrameCodec::Jpeg, &jpeg_ls_header(64, 64, 1, 12), &image);
    frame_header_reason(error.unwrap_err(), "jpeg");
    let error = check_frame(FrameCodec::JpegLs, &jpeg(64, 64), &geometry(64, 64, 1, 8));
    frame_header_reason(error.unwrap_err(), "jpeg-ls");

    let object = encapsulated(
        JPEG_LS_LOSSLESS,
        64,
        64,
        16,
        vec![jpeg_ls_header(64, 8192, 1, 16)],
    );
    frame_header_reason(tensor_of(&object, 64, 64).unwrap_err(), "jpeg-ls");
}

#[test]
fn a_frame_header_past_the_scan_window_is_not_found() {
    let mut padded = vec![0xFF, 0xD8];
    // APP1 segments of 60 000 bytes each, past the window.
    while padded.len() < MAX_JPEG_HEADER_SCAN {
        padded.extend([0xFF, 0xE1, 0xEA, 0x62]);
        padded.extend(std::iter::repeat_n(0u8, 60_000));
    }
    padded.extend(&jpeg(64, 64)[2..]);
    let error = check_frame(FrameCodec::Jpeg, &padded, &geometry(64, 64, 1, 8)).unwrap_err();
    assert!(frame_header_reason(error, "jpeg").contains("no frame header"));
}

#[test]
fn frames_over_the_decoded_size_cap_are_refused_before_their_header() {
    // 8192 × 8193 one-byte pixels: one row over the cap.
    let object = encapsulated(JPEG_BASELINE, 8192, 8193, 8, vec![jpeg(8, 8)]);
    let error = tensor_of(&object, 8, 8).unwrap_err();
    assert_eq!(
        error,
        PixelError::TooLarge {
            declared: 8192 * 8193,
            limit: MAX_FRAME_BYTES
        }
    );
}

#[test]
fn syntaxes_without_a_header_check_and_misplaced_pixel_data_are_refused() {
    // Deflated Image Frame Compression: the frame would inflate unchecked.
    let object = encapsulated("1.2.840.10008.1.2.8.1", 8, 8, 8, vec![vec![0; 64]]);
    let error = tensor_of(&object, 8, 8).unwrap_err();
    assert!(matches!(error, PixelError::Unsupported(_)), "{error}");

    let mut object = encapsulated(JPEG_BASELINE, 8, 8, 8, vec![]);
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(vec![0u8; 64]),
    ));
    let error = tensor_of(&object, 8, 8).unwrap_err();
    assert!(
        matches!(
            error,
            PixelError::InvalidAttribute {
                name: "PixelData",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_panicking_decoder_becomes_a_typed_error() {
    let result: Result<(), PixelError> =
        catch_decoder_panic(|| panic!("range end index 67108864 out of range"));
    assert_eq!(
        result,
        Err(PixelError::DecoderPanic(
            "range end index 67108864 out of range".into()
        ))
    );
}
