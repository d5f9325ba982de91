//! Target: `Wire`, our PDU reader for the data-transfer phase, fed over an
//! in-memory duplex. Any byte stream ends (release, abort, or a typed error)
//! within a number of steps bounded by its length; a PDU announcing more
//! than the max PDU is refused on its header, before any body byte is
//! awaited or buffered; nothing is allocated by a declared length.

use std::time::Duration;

use bytes::BytesMut;
use dicom_gateway::dimse::wire::{Incoming, Wire, WireError};
use proptest::prelude::*;
use proptest::sample::select;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::corpus;
use super::mutate::{apply, mutations};
use super::peak::measure;

const MAX_PDU: u32 = 16_384;
/// Cases per property; the target runs in a few seconds in a debug build.
const ARBITRARY_CASES: u32 = 10_000;
const MUTATED_CASES: u32 = 30_000;
const OVERSIZED_CASES: u32 = 5_000;
const SHAPED_CASES: u32 = 30_000;
/// The reader's own buffer: one max PDU plus its 64 KiB read chunks.
const MAX_ALLOCATION: usize = MAX_PDU as usize + 4 * 64 * 1024;
/// Each PDV the reader hands out consumes at least its 6-byte item header.
const MIN_BYTES_PER_STEP: usize = 6;

/// How a stream ended.
#[derive(Debug)]
struct Ending {
    steps: usize,
    result: Result<Incoming, WireError>,
    peak: usize,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Reads `bytes` (then end of stream) to the end: every PDV body in full.
fn read_to_end(bytes: &[u8]) -> Ending {
    let runtime = runtime();
    let (mut near, mut far) = tokio::io::duplex(bytes.len() + 1);
    runtime.block_on(async { far.write_all(bytes).await.expect("fill duplex") });
    drop(far);
    let ((steps, result), peak) = measure(|| {
        runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut wire = Wire::new(&mut near, BytesMut::new(), MAX_PDU, deadline);
            let mut steps = 0;
            loop {
                steps += 1;
                match wire.next().await {
                    Ok(Incoming::Pdv(header)) => {
                        let mut body = 0u64;
                        loop {
                            match wire.read_chunk().await {
                                Ok(chunk) if chunk.is_empty() => break,
                                Ok(chunk) => body += chunk.len() as u64,
                                Err(e) => return (steps, Err(e)),
                            }
                        }
                        assert_eq!(body, u64::from(header.length), "PDV body length");
                    }
                    ended => return (steps, ended),
                }
            }
        })
    });
    Ending {
        steps,
        result,
        peak,
    }
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let ending = read_to_end(bytes);
    prop_assert!(
        ending.steps <= bytes.len() / MIN_BYTES_PER_STEP + 1,
        "{} steps for {} bytes",
        ending.steps,
        bytes.len()
    );
    prop_assert!(
        ending.peak <= MAX_ALLOCATION,
        "{} bytes allocated at once",
        ending.peak
    );
    prop_assert!(!matches!(ending.result, Err(WireError::Timeout)));
    Ok(())
}

fn label(result: &Result<Incoming, WireError>) -> &'static str {
    match result {
        Ok(Incoming::Pdv(_)) => "pdv",
        Ok(Incoming::ReleaseRequested) => "release",
        Ok(Incoming::Aborted) => "abort",
        Err(e) => e.as_label(),
    }
}

#[test]
fn valid_streams_are_read_in_full() {
    let endings: Vec<_> = corpus::streams()
        .iter()
        .map(|(name, bytes)| (*name, label(&read_to_end(bytes).result)))
        .collect();
    assert_eq!(
        endings,
        [
            ("c_store_then_release", "release"),
            ("c_echo_then_abort", "abort")
        ]
    );
    assert_eq!(label(&read_to_end(&corpus::empty_pdv()).result), "release");
}

#[test]
fn hostile_seeds_end_in_their_error() {
    for seed in corpus::hostile_pdus(MAX_PDU) {
        let ending = read_to_end(&seed.bytes);
        assert_eq!(label(&ending.result), seed.error, "{}", seed.name);
        assert!(
            ending.peak <= MAX_ALLOCATION,
            "{}: {} bytes",
            seed.name,
            ending.peak
        );
        // Each one also aborts (the reader names a reason) unless the peer left.
        if let Err(e) = &ending.result {
            assert_eq!(
                e.abort_pdu().is_none(),
                seed.error == "closed",
                "{}",
                seed.name
            );
        }
    }
}

/// A header announcing too much is refused on the header alone: the peer
/// keeps the connection open and sends nothing more, so a reader that
/// waited for the body would hit the deadline instead.
fn refused_on_header(kind: u8, length: u32, body_prefix: &[u8]) -> Result<WireError, String> {
    let runtime = runtime();
    let (mut near, mut far) = tokio::io::duplex(64 * 1024);
    let mut bytes = vec![kind, 0];
    bytes.extend(length.to_be_bytes());
    bytes.extend(body_prefix);
    runtime.block_on(async { far.write_all(&bytes).await.expect("fill duplex") });
    let (result, peak) = measure(|| {
        runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(2);
            Wire::new(&mut near, BytesMut::new(), MAX_PDU, deadline)
                .next()
                .await
        })
    });
    drop(far);
    if peak > MAX_ALLOCATION {
        return Err(format!("{peak} bytes allocated at once"));
    }
    match result {
        Err(e) => Ok(e),
        Ok(incoming) => Err(format!("read {incoming:?}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(OVERSIZED_CASES))]

    #[test]
    fn oversized_p_data_is_refused_before_buffering(
        length in (MAX_PDU + 1)..=u32::MAX,
        body_prefix in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let error = refused_on_header(corpus::P_DATA_TF, length, &body_prefix)
            .map_err(TestCaseError::fail)?;
        prop_assert!(
            matches!(error, WireError::PduTooLarge { length: l, max: MAX_PDU } if l == length),
            "{error:?}"
        );
    }

    #[test]
    fn association_and_unknown_pdus_are_refused_on_their_header(
        kind in prop_oneof![select(vec![0x01u8, 0x02, 0x03, 0x06]), 0x08u8..=0xFF, Just(0x00u8)],
        length in any::<u32>(),
    ) {
        let error = refused_on_header(kind, length, &[]).map_err(TestCaseError::fail)?;
        prop_assert!(
            matches!(error, WireError::UnexpectedPdu(k) | WireError::UnknownPdu(k) if k == kind),
            "{error:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(ARBITRARY_CASES))]

    #[test]
    fn arbitrary_streams_end(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check(&bytes)?;
    }
}

fn seeds() -> Vec<Vec<u8>> {
    corpus::streams()
        .into_iter()
        .map(|(_, bytes)| bytes)
        .chain(
            corpus::hostile_pdus(MAX_PDU)
                .into_iter()
                .map(|seed| seed.bytes),
        )
        .chain([corpus::empty_pdv(), corpus::release_rq(), corpus::abort()])
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(MUTATED_CASES))]

    #[test]
    fn mutated_pdu_streams_end(seed in select(seeds()), mutations in mutations()) {
        check(&apply(&seed, &mutations))?;
    }
}

/// A stream of PDU-shaped pieces: mostly P-DATA holding PDV items, some
/// release/abort/unknown PDUs, each length honest or not.
fn pdu_shaped_stream() -> impl Strategy<Value = Vec<u8>> {
    let pdv = (
        any::<u8>(),
        0u8..4,
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::option::weighted(0.8, Just(())),
    );
    let pdu = (
        prop_oneof![6 => Just(corpus::P_DATA_TF), 1 => Just(corpus::RELEASE_RQ), 1 => any::<u8>()],
        proptest::collection::vec(pdv, 1..4),
        proptest::option::weighted(0.8, Just(())),
        any::<u32>(),
    );
    proptest::collection::vec(pdu, 1..6).prop_map(|pdus| {
        let mut out = Vec::new();
        for (kind, items, honest_pdu, lie) in pdus {
            let mut body = Vec::new();
            for (pc, control, data, honest_pdv) in items {
                let length = match honest_pdv {
                    Some(()) => data.len() as u32 + 2,
                    None => lie,
                };
                body.extend(length.to_be_bytes());
                body.extend([pc, control]);
                body.extend(data);
            }
            let length = match honest_pdu {
                Some(()) => body.len() as u32,
                None => lie.rotate_left(7),
            };
            out.extend([kind, 0]);
            out.extend(length.to_be_bytes());
            out.extend(body);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(SHAPED_CASES))]

    #[test]
    fn pdu_shaped_streams_end(bytes in pdu_shaped_stream()) {
        check(&bytes)?;
    }
}
