//! Honest data sets in every encoding, and one malformed, truncated,
//! oversized, deeply nested or lying input per violation class.

use std::time::{Duration, Instant};

use dicom_core::{Tag, VR};
use dicom_dictionary_std::{tags, uids};

use super::fixtures::{self, Bytes, UNDEFINED};
use super::*;

mod malformed;

pub(super) const LE: Encoding = Encoding::EXPLICIT_LE;
pub(super) const LIMITS: Limits = Limits {
    max_depth: DEFAULT_MAX_DEPTH,
    max_dataset_bytes: 1 << 20,
};

pub(super) fn check(bytes: &[u8], encoding: Encoding) -> Result<DataSetShape, Violation> {
    validate(bytes, Some(bytes.len() as u64), encoding, &LIMITS)
}

pub(super) fn inflate_check(deflated: &[u8], limits: &Limits) -> Result<DataSetShape, Violation> {
    validate(
        flate2::read::DeflateDecoder::new(deflated),
        None,
        LE,
        limits,
    )
}

/// Runs `f` on a thread with a 256 KiB stack: a recursive walk of 100 000
/// levels could not finish there.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no stack overflow")
}

#[test]
fn honest_ct_passes_in_every_native_encoding() {
    let ct = fixtures::ct();
    let expected = DataSetShape {
        elements: fixtures::count_elements(&ct),
        max_depth_seen: 2,
        pixel_data: Some(PixelDataShape::Native {
            length: fixtures::CT_PIXEL_BYTES,
        }),
    };
    for (ts, encoding) in [
        (uids::IMPLICIT_VR_LITTLE_ENDIAN, Encoding::IMPLICIT_LE),
        (uids::EXPLICIT_VR_LITTLE_ENDIAN, Encoding::EXPLICIT_LE),
        (super::EXPLICIT_VR_BIG_ENDIAN, Encoding::EXPLICIT_BE),
    ] {
        let bytes = fixtures::encode(&ct, ts);
        assert_eq!(check(&bytes, encoding), Ok(expected.clone()), "{ts}");
        assert_eq!(Encoding::of_transfer_syntax(ts), (encoding, false));
    }
}

#[test]
fn honest_deflated_ct_passes_and_counts_inflated_bytes() {
    let ct = fixtures::ct();
    let plain = fixtures::encode(&ct, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    let deflated = fixtures::deflate(&plain);
    let shape = inflate_check(&deflated, &LIMITS).unwrap();
    assert_eq!(shape.elements, fixtures::count_elements(&ct));
    // A limit of exactly the inflated size passes; one byte less does not.
    let exact = Limits {
        max_dataset_bytes: plain.len() as u64,
        ..LIMITS
    };
    assert!(inflate_check(&deflated, &exact).is_ok());
    let under = Limits {
        max_dataset_bytes: plain.len() as u64 - 1,
        ..LIMITS
    };
    assert_eq!(
        inflate_check(&deflated, &under),
        Err(Violation::InflatedTooLarge {
            limit: plain.len() as u64 - 1
        })
    );
}

#[test]
fn honest_encapsulated_jpeg_passes_with_its_fragments_counted() {
    let bytes = fixtures::encode(&fixtures::jpeg(), uids::JPEG_BASELINE8_BIT);
    let shape = check(&bytes, LE).unwrap();
    assert_eq!(
        shape.pixel_data,
        Some(PixelDataShape::Encapsulated {
            fragments: 2,
            offset_table_bytes: 8
        })
    );
    assert_eq!(shape.max_depth_seen, 1, "the icon's elements");
}

#[test]
fn part10_files_pass_by_seeking_and_by_inflating() {
    use dicom_object::meta::FileMetaTableBuilder;
    let dir = tempfile::tempdir().unwrap();
    for ts in [
        uids::EXPLICIT_VR_LITTLE_ENDIAN,
        uids::IMPLICIT_VR_LITTLE_ENDIAN,
        uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    ] {
        let file = fixtures::ct()
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(ts)
                    .media_storage_sop_class_uid(fixtures::CT_IMAGE_STORAGE)
                    .media_storage_sop_instance_uid("1.2.826.0.1.3680043.10.1.1"),
            )
            .unwrap();
        let path = dir.path().join(format!("{ts}.dcm"));
        file.write_to_file(&path).unwrap();
        // Preamble and magic, the group length element, then the group.
        let offset = 132 + 12 + u64::from(file.meta().information_group_length);
        let shape = validate_file(&path, offset, ts, &LIMITS).unwrap();
        assert_eq!(
            shape.pixel_data,
            Some(PixelDataShape::Native {
                length: fixtures::CT_PIXEL_BYTES
            }),
            "{ts}"
        );
        // The same file from the wrong offset is not a data set.
        assert!(validate_file(&path, offset + 2, ts, &LIMITS).is_err());
    }
}

#[test]
fn command_sets_pass_and_may_not_nest() {
    use dicom_core::{DataElement, PrimitiveValue};
    let command = dicom_object::InMemDicomObject::command_from_element_iter([
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from("1.2.840.10008.1.1"),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0030u16)),
        DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(7u16)),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0x0101u16),
        ),
    ]);
    let bytes = fixtures::encode(&command, uids::IMPLICIT_VR_LITTLE_ENDIAN);
    assert_eq!(validate_command_set(&bytes), Ok(()));

    let mut nested = Bytes::new(Encoding::IMPLICIT_LE);
    nested.item(Tag(0x0000, 0x0900), 2).u16(0); // Status
    // Unknown to the dictionary and of undefined length: a sequence.
    nested.item(Tag(0x0000, 0x5555), UNDEFINED);
    assert_eq!(
        validate_command_set(&nested.out),
        Err(Violation::TooDeep {
            tag: Tag(0x0000, 0x5555),
            max_depth: 0
        })
    );
}

#[test]
fn nesting_at_the_limit_passes_and_one_deeper_does_not() {
    for encoding in [Encoding::IMPLICIT_LE, LE, Encoding::EXPLICIT_BE] {
        let at_limit = fixtures::nested(encoding, DEFAULT_MAX_DEPTH, true);
        assert_eq!(
            check(&at_limit, encoding).map(|s| s.max_depth_seen),
            Ok(DEFAULT_MAX_DEPTH)
        );
        let deeper = fixtures::nested(encoding, DEFAULT_MAX_DEPTH + 1, true);
        let err = check(&deeper, encoding).unwrap_err();
        assert_eq!(err.as_label(), "too_deep");
        assert_eq!(
            err.to_string(),
            "sequence nesting deeper than 64 levels at (0040,A730)"
        );
    }
}

#[test]
fn a_hundred_thousand_levels_stop_at_the_limit_quickly_on_a_small_stack() {
    let bytes = fixtures::nested(LE, 100_000, false);
    assert!(bytes.len() < 2 << 20);
    let started = Instant::now();
    let result = on_small_stack(move || check(&bytes, LE));
    assert_eq!(
        result,
        Err(Violation::TooDeep {
            tag: tags::CONTENT_SEQUENCE,
            max_depth: DEFAULT_MAX_DEPTH
        })
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn the_walk_itself_uses_constant_stack_however_deep() {
    // No depth limit: the whole 100 000 levels are walked on 256 KiB.
    let bytes = fixtures::nested(Encoding::IMPLICIT_LE, 100_000, false);
    let result = on_small_stack(move || {
        let unlimited = Limits {
            max_depth: usize::MAX,
            ..LIMITS
        };
        validate(
            &bytes[..],
            Some(bytes.len() as u64),
            Encoding::IMPLICIT_LE,
            &unlimited,
        )
    });
    assert_eq!(
        result,
        Err(Violation::Truncated {
            at: Truncation::Sequence(tags::CONTENT_SEQUENCE)
        })
    );
}

/// Elements one before the other in the given encoding.
pub(super) fn two_elements(encoding: Encoding) -> Bytes {
    let mut b = Bytes::new(encoding);
    b.element(tags::MODALITY, VR::CS, b"CT")
        .element(tags::PATIENT_NAME, VR::PN, b"Doe^Jane");
    b
}

#[test]
fn oversized_elements_are_refused_before_they_are_read() {
    let declared = (MAX_ELEMENT_BYTES + 2) as u32;
    let mut b = two_elements(LE);
    b.header(tags::ENCAPSULATED_DOCUMENT, VR::OB, declared);
    // The reader claims enough bytes; the cap speaks before any are read.
    let claimed = u64::from(b.len()) + u64::from(declared);
    assert_eq!(
        validate(&b.out[..], Some(claimed), LE, &LIMITS),
        Err(Violation::ElementTooLarge {
            tag: tags::ENCAPSULATED_DOCUMENT,
            declared: u64::from(declared),
            limit: MAX_ELEMENT_BYTES
        })
    );
}

#[test]
fn a_deflate_bomb_stops_at_the_limit() {
    // 64 private OB elements of 256 KiB of zeros: 16 MiB inflated from a
    // few KB, against a 1 MiB limit.
    let mut b = Bytes::new(LE);
    b.element(Tag(0x0009, 0x0010), VR::LO, b"BOMB");
    for element in 0..64u16 {
        b.element(Tag(0x0009, 0x1000 + element), VR::OB, &[0u8; 256 * 1024]);
    }
    let bomb = fixtures::deflate(&b.out);
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let started = Instant::now();
    assert_eq!(
        inflate_check(&bomb, &LIMITS),
        Err(Violation::InflatedTooLarge { limit: 1 << 20 })
    );
    // The same through a stored file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.dcm");
    std::fs::write(&path, &bomb).unwrap();
    assert_eq!(
        validate_file(&path, 0, uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, &LIMITS)
            .map_err(|v| v.as_label()),
        Err("inflated_too_large")
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn an_inflated_header_past_the_limit_is_too_large_not_truncated() {
    // Elements filling the limit exactly, then one more header.
    let mut b = Bytes::new(LE);
    b.element(tags::MODALITY, VR::CS, b"CT");
    let limit = u64::from(b.len()) + 12 + 100;
    b.element(tags::ENCAPSULATED_DOCUMENT, VR::OB, &[0; 100]);
    b.element(Tag(0x0043, 0x0010), VR::LO, b"MORE");
    let limits = Limits {
        max_dataset_bytes: limit,
        ..LIMITS
    };
    assert_eq!(
        inflate_check(&fixtures::deflate(&b.out), &limits),
        Err(Violation::InflatedTooLarge { limit })
    );
}

#[test]
fn unreadable_input_is_unreadable() {
    // Block type 3 is reserved in RFC 1951.
    let corrupt = [0xFFu8; 16];
    assert_eq!(
        inflate_check(&corrupt, &LIMITS).unwrap_err().as_label(),
        "unreadable"
    );
    let missing = std::path::Path::new("/nonexistent/validate/file.dcm");
    assert_eq!(
        validate_file(missing, 0, uids::EXPLICIT_VR_LITTLE_ENDIAN, &LIMITS)
            .unwrap_err()
            .as_label(),
        "unreadable"
    );
}

#[test]
fn transfer_syntaxes_map_to_encodings() {
    assert_eq!(
        Encoding::of_transfer_syntax("1.2.840.10008.1.2.1.99"),
        (LE, true)
    );
    assert_eq!(
        Encoding::of_transfer_syntax("1.2.840.10008.1.2.4.95"),
        (LE, true)
    );
    assert_eq!(
        Encoding::of_transfer_syntax("1.2.840.10008.1.2.4.50"),
        (LE, false)
    );
    assert_eq!(
        Encoding::of_transfer_syntax("1.2.840.10008.1.2\0"),
        (Encoding::IMPLICIT_LE, false)
    );
}

/// The configuration allows up to 256 levels: dicom-rs must parse that on
/// a tokio blocking thread's 2 MiB stack once we have accepted it.
#[test]
fn dicom_rs_parses_the_deepest_configurable_nesting_on_a_blocking_thread_stack() {
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    const CONFIG_MAX_DEPTH: usize = 256;
    let bytes = fixtures::nested(LE, CONFIG_MAX_DEPTH, true);
    let limits = Limits {
        max_depth: CONFIG_MAX_DEPTH,
        ..LIMITS
    };
    assert!(validate(&bytes[..], Some(bytes.len() as u64), LE, &limits).is_ok());
    let parsed = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
                .get(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .unwrap();
            dicom_object::InMemDicomObject::read_dataset_with_ts(&bytes[..], ts).is_ok()
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
    assert!(parsed);
}
