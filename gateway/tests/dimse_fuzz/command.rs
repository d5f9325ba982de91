//! Target: `DimseCommand::decode`, the first parse of every DIMSE message.
//! Arbitrary bytes and mutated command sets end in a command or a typed
//! error: never a panic, never an allocation sized by a declared length.

use std::sync::Once;

use dicom_gateway::dimse::command::DimseCommand;
use proptest::prelude::*;
use proptest::sample::select;

use super::corpus;
use super::mutate::{apply, mutations};
use super::peak::measure;

/// Cases per property; with the seed tests, the target runs in a few
/// seconds in a debug build.
const ARBITRARY_CASES: u32 = 20_000;
const MUTATED_CASES: u32 = 30_000;
const FLAT_CASES: u32 = 30_000;

/// The largest single allocation decoding may make, whatever the lengths
/// declared inside: far below the megabytes `HOSTILE_LENGTHS` plants.
const MAX_ALLOCATION: usize = 256 * 1024;

/// Decodes one valid command set outside any measurement: the first parse
/// builds dicom-rs's data dictionary (a one-time table of a few MiB), which
/// is not an allocation by any declared length.
fn warm_up() {
    static WARM: Once = Once::new();
    WARM.call_once(|| {
        DimseCommand::decode(&corpus::c_store_rq()).expect("valid seed");
    });
}

fn decode_bounded(bytes: &[u8]) -> Result<Option<DimseCommand>, TestCaseError> {
    warm_up();
    let (result, peak) = measure(|| DimseCommand::decode(bytes));
    prop_assert!(
        peak <= MAX_ALLOCATION,
        "decoding {} bytes allocated {peak} bytes at once",
        bytes.len()
    );
    let command = result.ok();
    if let Some(DimseCommand::Store {
        sop_class_uid,
        sop_instance_uid,
        ..
    }) = &command
    {
        // Whatever was decoded came from the bytes given.
        prop_assert!(sop_class_uid.len() + sop_instance_uid.len() <= bytes.len());
    }
    Ok(command)
}

#[test]
fn valid_seeds_decode() {
    let echo = DimseCommand::decode(&corpus::c_echo_rq()).unwrap();
    assert!(matches!(echo, DimseCommand::Echo { message_id: 1, .. }));
    let store = DimseCommand::decode(&corpus::c_store_rq()).unwrap();
    assert!(matches!(
        store,
        DimseCommand::Store {
            message_id: 7,
            has_data_set: true,
            ..
        }
    ));
    // A response where a request belongs is refused, not answered.
    assert!(DimseCommand::decode(&corpus::c_store_rsp()).is_err());
}

#[test]
fn hostile_seeds_are_refused_without_allocating_their_lies() {
    warm_up();
    for (name, bytes) in corpus::hostile_commands() {
        let (result, peak) = measure(|| DimseCommand::decode(&bytes));
        assert!(result.is_err(), "{name} decoded: {result:?}");
        assert!(
            peak <= MAX_ALLOCATION,
            "{name} allocated {peak} bytes at once"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(ARBITRARY_CASES))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        decode_bounded(&bytes)?;
    }
}

fn seeds() -> Vec<Vec<u8>> {
    corpus::commands()
        .into_iter()
        .chain(corpus::hostile_commands())
        .map(|(_, bytes)| bytes)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(MUTATED_CASES))]

    #[test]
    fn mutated_command_sets(seed in select(seeds()), mutations in mutations()) {
        decode_bounded(&apply(&seed, &mutations))?;
    }
}

/// Element numbers of group 0000 that requests use (PS3.7 E.1), so a
/// generated set often gets past "missing Command Field" to the UIDs.
const COMMAND_ELEMENTS: &[u16] = &[
    0x0000, 0x0002, 0x0100, 0x0110, 0x0120, 0x0700, 0x0800, 0x0900, 0x1000, 0x1030, 0x1031,
];

/// A flat command set of group 0000 elements with honest lengths and
/// arbitrary values: what passes the header walk and reaches the parser
/// (US of three bytes, UIDs of binary junk, unknown elements, repeats).
fn flat_command_set() -> impl Strategy<Value = Vec<u8>> {
    let element = prop_oneof![3 => select(COMMAND_ELEMENTS), 1 => any::<u16>()];
    let value = prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 2..=2),
        1 => proptest::collection::vec(any::<u8>(), 0..8),
        1 => "[0-9.]{0,64}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ];
    proptest::collection::vec((element, value), 0..12).prop_map(|elements| {
        let mut out = Vec::new();
        for (element, value) in elements {
            out.extend(0x0000u16.to_le_bytes());
            out.extend(element.to_le_bytes());
            out.extend((value.len() as u32).to_le_bytes());
            out.extend(value);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(FLAT_CASES))]

    #[test]
    fn flat_command_sets_reach_the_parser(bytes in flat_command_set()) {
        decode_bounded(&bytes)?;
    }
}
