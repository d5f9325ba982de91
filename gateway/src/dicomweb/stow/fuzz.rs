//! Fuzz targets (proptest, stable Rust) for the STOW-RS body reader: the
//! multipart parser we trust with peer bytes (actix-multipart), our part
//! reader and our file meta scan, over arbitrary and mutated bodies split
//! into arbitrary chunks. Each case must finish without a panic, with every
//! part read to its end or a request error.

use actix_web::http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use bytes::Bytes;
use proptest::prelude::*;

use super::part::{MetaScan, PREAMBLE, locate_meta};
use super::*;

const BOUNDARY: &str = "fuzzboundary";

/// A valid body of Part 10-looking parts, the seed the mutations start from.
fn seed_body(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(part);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A file header: preamble, `DICM`, a file meta group of `meta_len` bytes.
fn part10_prefix(meta_len: u32, tail: &[u8]) -> Vec<u8> {
    let mut part = vec![0u8; PREAMBLE];
    part.extend(b"DICM");
    part.extend([0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    part.extend(meta_len.to_le_bytes());
    part.extend(tail);
    part
}

/// What reading a body came to: parts seen, or the request error.
#[derive(Debug)]
enum BodyOutcome {
    Parts(usize),
    Refused(String),
}

/// Reads `body`, delivered in chunks cut at `cuts`, the way the handler
/// does: every part through [`PartReader`] and [`read_part_head`], then
/// drained. The body limit is `limit` bytes.
fn read_body(body: &[u8], cuts: &[usize], limit: u64) -> BodyOutcome {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    cuts.sort_unstable();
    for cut in cuts.into_iter().chain([body.len()]) {
        if cut > start {
            chunks.push(Ok::<_, PayloadError>(Bytes::copy_from_slice(
                &body[start..cut],
            )));
            start = cut;
        }
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(&format!(
            "multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"
        ))
        .expect("header"),
    );
    let limits = BodyLimits {
        body: limit,
        exceeded: Arc::new(AtomicBool::new(false)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut multipart = Multipart::new(&headers, futures::stream::iter(chunks));
        let mut parts = 0;
        loop {
            let field = match multipart.try_next().await {
                Ok(Some(field)) => field,
                Ok(None) => return BodyOutcome::Parts(parts),
                Err(e) => return BodyOutcome::Refused(limits.multipart_error(e).to_string()),
            };
            parts += 1;
            if let Err(e) = check_part_type(field.content_type(), parts) {
                return BodyOutcome::Refused(e.to_string());
            }
            let mut part = PartReader::new(field, &limits);
            let head = read_part_head(&mut part, parts).await;
            if let Err(e) = head {
                return BodyOutcome::Refused(e.to_string());
            }
            // Whatever the head was, the rest of the part is drained: the
            // path that used to poll an ended field.
            if let Err(e) = part.drain().await {
                return BodyOutcome::Refused(e.to_string());
            }
            if let Err(e) = part.drain().await {
                return BodyOutcome::Refused(e.to_string());
            }
        }
    })
}

#[test]
fn parts_shorter_than_the_file_header_are_failures_not_panics() {
    // A few bytes, a cut inside the preamble, a cut inside the meta group,
    // then an honest-looking header: four parts, each read to its end.
    let parts = vec![
        b"DI".to_vec(),
        vec![0u8; 100],
        part10_prefix(200, &[0u8; 20]),
        part10_prefix(0, &[]),
    ];
    let outcome = read_body(&seed_body(&parts), &[], 1 << 20);
    assert!(matches!(outcome, BodyOutcome::Parts(4)), "{outcome:?}");
}

#[test]
fn a_boundary_that_never_comes_is_a_bad_request() {
    let body = vec![b'x'; 200_000];
    match read_body(&body, &[], 1 << 20) {
        BodyOutcome::Refused(why) => assert!(why.contains("boundary"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Lines, but never the boundary, and no closing boundary.
    let body = b"line\r\n".repeat(1000);
    match read_body(&body, &[], 1 << 20) {
        BodyOutcome::Refused(why) => assert!(why.contains("boundary"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_closing_boundary_is_a_bad_request() {
    let mut body = seed_body(&[part10_prefix(0, &[])]);
    body.truncate(body.len() - BOUNDARY.len() - 6);
    match read_body(&body, &[7, 50], 1 << 20) {
        BodyOutcome::Refused(why) => assert!(why.contains("malformed"), "{why}"),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(FUZZ_CASES))]

    /// Arbitrary bytes as a body, in arbitrary chunks.
    #[test]
    fn arbitrary_bodies_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let _ = read_body(&body, &cuts, 1 << 20);
    }

    /// Valid bodies with bytes flipped, cut short or spliced, in arbitrary
    /// chunks: the shapes a broken client or proxy produces.
    #[test]
    fn mutated_bodies_never_panic(
        sizes in proptest::collection::vec(0usize..400, 1..4),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<usize>()),
        splice in proptest::option::of((any::<usize>(), proptest::collection::vec(any::<u8>(), 0..64))),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let parts: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| part10_prefix(n as u32 / 2, &vec![0x20; n]))
            .collect();
        let mut body = seed_body(&parts);
        for (at, byte) in flips {
            let at = at % body.len();
            body[at] ^= byte;
        }
        if let Some((at, bytes)) = splice {
            let at = at % (body.len() + 1);
            body.splice(at..at, bytes);
        }
        if let Some(cut) = cut {
            body.truncate(cut % (body.len() + 1));
        }
        let _ = read_body(&body, &cuts, 1 << 20);
    }

    /// The meta scan never panics and never claims a range outside the bytes.
    #[test]
    fn meta_scan_stays_in_bounds(head in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let MetaScan::Found(range) = locate_meta(&head) {
            prop_assert!(range.end <= head.len());
        }
    }
}

/// Cases per target: ~10 s in a debug build on the 2-core CI machine.
const FUZZ_CASES: u32 = 1500;
