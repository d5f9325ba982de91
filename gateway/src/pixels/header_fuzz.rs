//! The fuzz target of the frame header checker, on stable Rust with
//! proptest: mutated well-formed frames and arbitrary bytes, for every
//! codec, against small image geometries (see [`FUZZ_CASES`]).

use std::sync::LazyLock;

use proptest::prelude::*;

use super::frame_header::{CheckedFrame, FrameCodec, check_frame};
use super::test_frames::*;
use super::{ImageGeometry, MAX_FRAME_BYTES};

/// Cases per run: about 2 s in a debug build on the 2-core dev machine.
const FUZZ_CASES: u32 = 200_000;

/// A well-formed 16×16 8-bit grey frame per codec, built once.
static SEEDS: LazyLock<[(FrameCodec, Vec<u8>); 5]> = LazyLock::new(|| {
    [
        (FrameCodec::Jpeg, jpeg(16, 16)),
        (FrameCodec::JpegLs, jpeg_ls_header(16, 16, 1, 8)),
        (FrameCodec::Jpeg2000, jp2(&j2k_header(16, 16, 1, 8))),
        (FrameCodec::Rle, rle_fragment(1, 256, 3)),
        (FrameCodec::Uncompressed, vec![7; 256]),
    ]
});

/// The seed frame of `codec` (one the checker accepts, so mutations start
/// close to the headers) with `edits` applied and cut at `cut`.
fn mutated_frame(codec: FrameCodec, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut frame = SEEDS
        .iter()
        .find(|(seed_codec, _)| *seed_codec == codec)
        .map(|(_, seed)| seed.clone())
        .unwrap_or_default();
    for &(at, value) in edits {
        if !frame.is_empty() {
            let at = at % frame.len();
            frame[at] = value;
        }
    }
    if let Some(cut) = cut {
        frame.truncate(cut);
    }
    frame
}

fn codec_strategy() -> impl Strategy<Value = FrameCodec> {
    prop_oneof![
        Just(FrameCodec::Jpeg),
        Just(FrameCodec::JpegLs),
        Just(FrameCodec::Jpeg2000),
        Just(FrameCodec::Rle),
        Just(FrameCodec::Uncompressed),
    ]
}

/// The seed's own 16×16 8-bit grey geometry half the time, else any small one.
fn geometry_strategy() -> impl Strategy<Value = ImageGeometry> {
    prop_oneof![
        Just(geometry(16, 16, 1, 8)),
        (
            1usize..64,
            1usize..64,
            prop_oneof![Just(1usize), Just(3)],
            prop_oneof![Just(8u16), Just(16)]
        )
            .prop_map(|(r, c, s, b)| geometry(r, c, s, b)),
    ]
}

/// What an accepted frame's bytes can justify: the header the checker read
/// is physically there, and the decoded size follows from it.
fn assert_justified(codec: FrameCodec, frame: &[u8], image: &ImageGeometry, checked: CheckedFrame) {
    assert_eq!(checked.decoded_bytes, image.frame_bytes);
    assert!(checked.decoded_bytes <= MAX_FRAME_BYTES);
    let samples = image.samples_per_pixel;
    match codec {
        // SOI and a whole SOF with one 3-byte entry per sample.
        FrameCodec::Jpeg | FrameCodec::JpegLs => assert!(frame.len() >= 2 + 10 + 3 * samples),
        // SOC and a whole SIZ with one 3-byte entry per sample.
        FrameCodec::Jpeg2000 => assert!(frame.len() >= 4 + 38 + 3 * samples),
        // PackBits turns at most 2 bytes into 128.
        FrameCodec::Rle => {
            assert!(checked.largest_segment_bytes <= 64 * frame.len() as u64);
            assert!(checked.decoded_bytes <= 64 * frame.len() as u64);
        }
        FrameCodec::Uncompressed => assert!(checked.decoded_bytes <= frame.len() as u64),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(FUZZ_CASES))]

    /// Mutated and arbitrary frames never panic the checker, and whatever
    /// it accepts is justified by the bytes.
    #[test]
    fn frame_headers_never_panic_and_never_overstate(
        codec in codec_strategy(),
        image in geometry_strategy(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in proptest::option::of(0usize..1024),
        noise in proptest::option::weighted(0.2, proptest::collection::vec(any::<u8>(), 0..256)),
    ) {
        let frame = noise.unwrap_or_else(|| mutated_frame(codec, &edits, cut));
        if let Ok(checked) = check_frame(codec, &frame, &image) {
            assert_justified(codec, &frame, &image, checked);
        }
    }
}
