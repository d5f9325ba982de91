//! Fuzz targets on stable Rust (proptest): arbitrary bytes in every
//! encoding, and mutations of valid data sets from our own fixtures.
//! Whatever the validator accepts, dicom-rs must then parse without
//! panicking and see the same elements, i.e. read nothing beyond the
//! lengths the walk checked against the bytes present.

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use proptest::prelude::*;
use proptest::sample::Index;

use super::fixtures;
use super::*;

/// Cases per target, sized so both together run in about 10 s in a debug
/// build on the 2-core machine (a one-off run of 1 000 000 each found
/// nothing; about 8% of mutations are accepted and all of those parse).
const ARBITRARY_CASES: u32 = 150_000;
const MUTATION_CASES: u32 = 150_000;

const LIMITS: Limits = Limits {
    max_depth: DEFAULT_MAX_DEPTH,
    max_dataset_bytes: 1 << 20,
};

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Truncate(Index),
    /// Copies `len` bytes from one place over another.
    Splice(Index, Index, usize),
    /// Overwrites four bytes with a length-like value.
    RewriteU32(Index, u32),
    Insert(Index, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let length_like = prop_oneof![
        Just(0u32),
        Just(0xFFFF_FFFF),
        Just(0xFFFF_FFFE),
        Just(0x8000_0000),
        Just(0x6000_0000),
        0u32..64,
        any::<u32>(),
    ];
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>(), 1usize..32)
            .prop_map(|(from, to, len)| Mutation::Splice(from, to, len)),
        (any::<Index>(), length_like).prop_map(|(at, v)| Mutation::RewriteU32(at, v)),
        (
            any::<Index>(),
            proptest::collection::vec(any::<u8>(), 1..12)
        )
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation, big_endian: bool) {
    if bytes.is_empty() {
        return;
    }
    match mutation {
        Mutation::FlipBit(at, bit) => {
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        Mutation::Splice(from, to, len) => {
            let from = from.index(bytes.len());
            let to = to.index(bytes.len());
            let len = (*len).min(bytes.len() - from).min(bytes.len() - to);
            bytes.copy_within(from..from + len, to);
        }
        Mutation::RewriteU32(at, value) => {
            let at = at.index(bytes.len());
            let b = if big_endian {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            for (i, byte) in b.into_iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + i) {
                    *slot = byte;
                }
            }
        }
        Mutation::Insert(at, extra) => {
            let at = at.index(bytes.len());
            bytes.splice(at..at, extra.iter().copied());
        }
    }
}

fn encoding() -> impl Strategy<Value = Encoding> {
    (any::<bool>(), any::<bool>()).prop_map(|(explicit_vr, big_endian)| Encoding {
        explicit_vr,
        big_endian,
    })
}

/// Parses accepted bytes with dicom-rs and checks it saw what we saw: it
/// parses, and finds the same number of elements (so it read no length
/// differently from the walk).
fn parse_accepted(data_set: &[u8], ts: &str, shape: &DataSetShape) -> Result<(), TestCaseError> {
    let ts = TransferSyntaxRegistry
        .get(ts)
        .ok_or_else(|| TestCaseError::fail("unregistered syntax"))?;
    // A panic here fails the case (proptest catches and shrinks it).
    match InMemDicomObject::read_dataset_with_ts(data_set, ts) {
        Ok(object) => {
            prop_assert_eq!(fixtures::count_elements(&object), shape.elements);
            Ok(())
        }
        Err(e) => Err(TestCaseError::fail(format!(
            "accepted, but dicom-rs cannot parse it: {e}"
        ))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(ARBITRARY_CASES))]

    /// Arbitrary peer bytes never panic the validator, in any encoding,
    /// with or without a known length; nor the command-set variant.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        encoding in encoding(),
        known_length in any::<bool>(),
    ) {
        let available = known_length.then_some(bytes.len() as u64);
        let _ = validate(&bytes[..], available, encoding, &LIMITS);
        let _ = validate_command_set(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(MUTATION_CASES))]

    /// Mutated valid data sets never panic the validator, and whatever it
    /// accepts dicom-rs parses without panicking, element for element.
    #[test]
    fn mutated_data_sets_never_panic_and_accepted_ones_parse(
        pick in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let corpus = corpus();
        let seed = &corpus[pick.index(corpus.len())];
        let (encoding, ts) = (seed.encoding, seed.transfer_syntax);
        let mut bytes = seed.bytes.clone();
        for m in &mutations {
            apply(&mut bytes, m, encoding.big_endian);
        }
        if seed.deflated {
            let compressed = fixtures::deflate(&bytes);
            let inflater = flate2::read::DeflateDecoder::new(&compressed[..]);
            if let Ok(shape) = validate(inflater, None, encoding, &LIMITS) {
                parse_accepted(&compressed, ts, &shape)?;
            }
        } else if let Ok(shape) = validate(&bytes[..], Some(bytes.len() as u64), encoding, &LIMITS) {
            parse_accepted(&bytes, ts, &shape)?;
        }
    }
}

/// The corpus is built once per test binary, not once per case.
fn corpus() -> &'static [fixtures::Seed] {
    static CORPUS: std::sync::OnceLock<Vec<fixtures::Seed>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(fixtures::corpus)
}

/// The unmutated corpus passes, and dicom-rs agrees on every element.
#[test]
fn the_corpus_itself_is_accepted_and_parsed_alike() {
    for seed in corpus() {
        let ts = seed.transfer_syntax;
        let plain = &seed.bytes;
        let shape = validate(&plain[..], Some(plain.len() as u64), seed.encoding, &LIMITS)
            .unwrap_or_else(|v| panic!("{ts}: {v}"));
        let data_set = if seed.deflated {
            fixtures::deflate(plain)
        } else {
            plain.clone()
        };
        parse_accepted(&data_set, ts, &shape).unwrap();
    }
}
