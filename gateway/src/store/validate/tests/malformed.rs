//! One malformed, truncated or lying input per violation class, each
//! asserting the specific violation.

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;

use super::super::fixtures::{Bytes, ITEM, ITEM_DELIMITER, SEQUENCE_DELIMITER, UNDEFINED};
use super::{LE, LIMITS, check, inflate_check, two_elements};
use crate::store::validate::*;

#[test]
fn lying_lengths_are_caught_without_allocating() {
    // (0042,0011) OB claiming 3.75 GiB, followed by 10 bytes.
    let mut b = two_elements(LE);
    b.header(tags::ENCAPSULATED_DOCUMENT, VR::OB, 0xF000_0000)
        .raw(&[0; 10]);
    assert_eq!(
        check(&b.out, LE),
        Err(Violation::LengthExceedsData {
            tag: tags::ENCAPSULATED_DOCUMENT,
            declared: 0xF000_0000,
            left: 10
        })
    );
    // Native Pixel Data declaring 1.5 GiB in a 1 KB data set.
    let mut b = two_elements(Encoding::IMPLICIT_LE);
    b.header(tags::PIXEL_DATA, VR::OW, 0x6000_0000)
        .raw(&[0; 1000]);
    assert_eq!(
        check(&b.out, Encoding::IMPLICIT_LE),
        Err(Violation::LengthExceedsData {
            tag: tags::PIXEL_DATA,
            declared: 0x6000_0000,
            left: 1000
        })
    );
    // A fragment longer than what follows.
    let mut b = two_elements(LE);
    b.header(tags::PIXEL_DATA, VR::OB, UNDEFINED)
        .item(ITEM, 0)
        .item(ITEM, 0x1000_0000)
        .raw(&[0; 16]);
    assert_eq!(
        check(&b.out, LE).unwrap_err().as_label(),
        "length_exceeds_data"
    );
}

#[test]
fn contents_must_end_where_a_defined_length_says() {
    // An item of 6 bytes holding an 8-byte header.
    let mut b = Bytes::new(LE);
    b.header(tags::PROCEDURE_CODE_SEQUENCE, VR::SQ, UNDEFINED)
        .item(ITEM, 6)
        .element(tags::CODE_VALUE, VR::SH, b"AB")
        .item(SEQUENCE_DELIMITER, 0);
    assert_eq!(
        check(&b.out, LE),
        Err(Violation::CrossesEnd {
            tag: tags::CODE_VALUE,
            container: Container::Item(tags::PROCEDURE_CODE_SEQUENCE)
        })
    );
    // An item of 9 bytes whose one element's value needs two bytes.
    let mut b = Bytes::new(LE);
    b.header(tags::PROCEDURE_CODE_SEQUENCE, VR::SQ, UNDEFINED)
        .item(ITEM, 9)
        .element(tags::CODE_VALUE, VR::SH, b"AB")
        .item(SEQUENCE_DELIMITER, 0);
    assert_eq!(
        check(&b.out, LE),
        Err(Violation::LengthExceedsData {
            tag: tags::CODE_VALUE,
            declared: 2,
            left: 1
        })
    );
    // A 20-byte sequence holding a 30-byte item.
    let mut b = Bytes::new(LE);
    b.header(tags::PROCEDURE_CODE_SEQUENCE, VR::SQ, 20)
        .item(ITEM, 30)
        .raw(&[0; 40]);
    assert_eq!(
        check(&b.out, LE),
        Err(Violation::LengthExceedsData {
            tag: ITEM,
            declared: 30,
            left: 12
        })
    );
    // Defined lengths that add up pass, empty items and sequences included.
    let mut b = Bytes::new(LE);
    b.header(tags::PROCEDURE_CODE_SEQUENCE, VR::SQ, 8 + 10 + 8)
        .item(ITEM, 10)
        .element(tags::CODE_VALUE, VR::SH, b"AB")
        .item(ITEM, 0)
        .header(tags::REFERENCED_IMAGE_SEQUENCE, VR::SQ, 0);
    assert_eq!(check(&b.out, LE).map(|s| s.elements), Ok(3));
}

#[test]
fn file_meta_elements_are_refused_at_any_depth() {
    let mut b = Bytes::new(LE);
    b.element(Tag(0x0002, 0x0010), VR::UI, b"1.2.840.10008.1.2\0");
    assert_eq!(
        check(&b.out, LE),
        Err(Violation::FileMetaInDataSet {
            tag: Tag(0x0002, 0x0010)
        })
    );
    let mut b = Bytes::new(LE);
    b.header(tags::REFERENCED_IMAGE_SEQUENCE, VR::SQ, UNDEFINED)
        .item(ITEM, UNDEFINED)
        .element(Tag(0x0002, 0x0001), VR::OB, &[0, 1]);
    assert_eq!(
        check(&b.out, LE).unwrap_err().as_label(),
        "file_meta_in_data_set"
    );
}

#[test]
fn data_that_ends_early_is_truncated_where_it_ends() {
    let b = two_elements(LE);
    let whole = b.out.clone();
    let cut = |n: usize| check(&whole[..n], LE);
    let truncated = |at| Err(Violation::Truncated { at });
    assert_eq!(cut(2), truncated(Truncation::ElementTag));
    assert_eq!(cut(6), truncated(Truncation::Header(tags::MODALITY)));
    // With the true size known, a value cut short is a length that lies...
    assert_eq!(
        cut(9),
        Err(Violation::LengthExceedsData {
            tag: tags::MODALITY,
            declared: 2,
            left: 1
        })
    );
    // ...and where fewer bytes arrive than announced, or an inflated stream
    // stops, it is truncated.
    assert_eq!(
        validate(&whole[..9], Some(whole.len() as u64), LE, &LIMITS),
        truncated(Truncation::Value(tags::MODALITY))
    );
    assert_eq!(
        inflate_check(&fixtures::deflate(&whole[..9]), &LIMITS),
        truncated(Truncation::Value(tags::MODALITY))
    );

    let mut b = Bytes::new(LE);
    b.header(tags::REFERENCED_IMAGE_SEQUENCE, VR::SQ, UNDEFINED)
        .item(ITEM, UNDEFINED)
        .element(tags::REFERENCED_SOP_CLASS_UID, VR::UI, b"1.2\0");
    assert_eq!(
        check(&b.out, LE),
        truncated(Truncation::Sequence(tags::REFERENCED_IMAGE_SEQUENCE))
    );

    let mut b = Bytes::new(LE);
    b.header(tags::PIXEL_DATA, VR::OB, UNDEFINED)
        .item(ITEM, 0)
        .item(ITEM, 4)
        .raw(&[0xFF, 0xD8, 0xFF, 0xD9]);
    assert_eq!(check(&b.out, LE), truncated(Truncation::PixelData));
}

#[test]
fn malformed_items_are_named() {
    let item_problem = |bytes: &[u8]| match check(bytes, LE) {
        Err(Violation::MalformedItem { problem, .. }) => problem,
        other => panic!("expected a malformed item, got {other:?}"),
    };
    let mut b = two_elements(LE);
    b.item(ITEM, 0);
    assert_eq!(item_problem(&b.out), ItemProblem::OutsideSequence);

    let mut b = Bytes::new(LE);
    b.header(tags::REFERENCED_IMAGE_SEQUENCE, VR::SQ, UNDEFINED)
        .element(tags::MODALITY, VR::CS, b"CT");
    assert_eq!(
        item_problem(&b.out),
        ItemProblem::NotAnItem {
            sequence: tags::REFERENCED_IMAGE_SEQUENCE
        }
    );

    let mut b = two_elements(LE);
    b.item(Tag(0xFFFE, 0x1234), 0);
    assert_eq!(item_problem(&b.out), ItemProblem::UnknownItemTag);

    let pixel = |build: &dyn Fn(&mut Bytes)| {
        let mut b = two_elements(LE);
        b.header(tags::PIXEL_DATA, VR::OB, UNDEFINED);
        build(&mut b);
        item_problem(&b.out)
    };
    assert_eq!(
        pixel(&|b| {
            b.item(ITEM, 0).item(ITEM, UNDEFINED).raw(&[0; 8]);
        }),
        ItemProblem::UndefinedFragment
    );
    assert_eq!(
        pixel(&|b| {
            b.item(SEQUENCE_DELIMITER, 0);
        }),
        ItemProblem::MissingOffsetTable
    );
    assert_eq!(
        pixel(&|b| {
            b.item(ITEM, 6).raw(&[0; 6]).item(SEQUENCE_DELIMITER, 0);
        }),
        ItemProblem::OffsetTableLength { length: 6 }
    );
    assert_eq!(
        pixel(&|b| {
            b.item(ITEM, 0).element(tags::MODALITY, VR::CS, b"CT");
        }),
        ItemProblem::NotAFragment
    );
}

#[test]
fn delimiters_must_be_empty_and_close_something_open() {
    let problem = |bytes: &[u8]| match check(bytes, LE) {
        Err(Violation::MalformedDelimiter { problem, .. }) => problem,
        other => panic!("expected a malformed delimiter, got {other:?}"),
    };
    let sequence = |length| {
        let mut b = Bytes::new(LE);
        b.header(tags::REFERENCED_IMAGE_SEQUENCE, VR::SQ, length);
        b
    };
    let mut b = sequence(UNDEFINED);
    b.item(ITEM, UNDEFINED).item(ITEM_DELIMITER, 4).raw(&[0; 4]);
    assert_eq!(
        problem(&b.out),
        DelimiterProblem::NonZeroLength { length: 4 }
    );

    let mut b = two_elements(LE);
    b.item(ITEM_DELIMITER, 0);
    assert_eq!(problem(&b.out), DelimiterProblem::NoOpenItem);

    let mut b = sequence(UNDEFINED);
    b.item(ITEM_DELIMITER, 0);
    assert_eq!(problem(&b.out), DelimiterProblem::NoOpenItem);

    let mut b = two_elements(LE);
    b.item(SEQUENCE_DELIMITER, 0);
    assert_eq!(problem(&b.out), DelimiterProblem::NoOpenSequence);

    let mut b = sequence(UNDEFINED);
    b.item(ITEM, UNDEFINED).item(SEQUENCE_DELIMITER, 0);
    assert_eq!(problem(&b.out), DelimiterProblem::ItemStillOpen);

    let mut b = sequence(16);
    b.item(ITEM, 0).item(SEQUENCE_DELIMITER, 0);
    assert_eq!(
        problem(&b.out),
        DelimiterProblem::InDefinedLength {
            container: Container::Sequence(tags::REFERENCED_IMAGE_SEQUENCE)
        }
    );

    let mut b = sequence(UNDEFINED);
    b.item(ITEM, 8).item(ITEM_DELIMITER, 0);
    assert_eq!(
        problem(&b.out),
        DelimiterProblem::InDefinedLength {
            container: Container::Item(tags::REFERENCED_IMAGE_SEQUENCE)
        }
    );
}

#[test]
fn undefined_length_is_only_for_sequences_items_and_fragments() {
    let mut b = two_elements(LE);
    b.header(tags::TEXT_VALUE, VR::UT, UNDEFINED);
    assert_eq!(
        check(&b.out, LE),
        Err(Violation::UndefinedLengthNotAllowed {
            tag: tags::TEXT_VALUE,
            vr: VR::UT
        })
    );
    // Explicit UN of undefined length: refused (see the module doc).
    let mut b = two_elements(LE);
    b.header(Tag(0x0011, 0x1010), VR::UN, UNDEFINED)
        .item(ITEM, UNDEFINED)
        .item(ITEM_DELIMITER, 0)
        .item(SEQUENCE_DELIMITER, 0);
    assert_eq!(
        check(&b.out, LE).unwrap_err().as_label(),
        "undefined_length_not_allowed"
    );
    // Implicit VR: a dictionary tag that is not SQ is refused...
    let mut b = Bytes::new(Encoding::IMPLICIT_LE);
    b.header(tags::MODALITY, VR::CS, UNDEFINED);
    assert_eq!(
        check(&b.out, Encoding::IMPLICIT_LE),
        Err(Violation::UndefinedLengthNotAllowed {
            tag: tags::MODALITY,
            vr: VR::CS
        })
    );
    // ...a private one is a sequence (PS3.5 7.5.1).
    let mut b = Bytes::new(Encoding::IMPLICIT_LE);
    b.header(Tag(0x0011, 0x1010), VR::UN, UNDEFINED)
        .item(ITEM, UNDEFINED)
        .element(tags::CODE_VALUE, VR::SH, b"AB")
        .item(ITEM_DELIMITER, 0)
        .item(SEQUENCE_DELIMITER, 0);
    assert_eq!(
        check(&b.out, Encoding::IMPLICIT_LE).map(|s| s.max_depth_seen),
        Ok(1)
    );
}

#[test]
fn binary_values_must_be_whole_units() {
    let mut b = Bytes::new(LE);
    b.element(tags::ROWS, VR::US, &[0, 2, 0]);
    assert_eq!(
        check(&b.out, LE),
        Err(Violation::MisalignedLength {
            tag: tags::ROWS,
            vr: VR::US,
            length: 3,
            unit: 2
        })
    );
    // Implicit VR: the dictionary's VR decides (Pixel Data is OW).
    let mut b = Bytes::new(Encoding::IMPLICIT_LE);
    b.element(tags::PIXEL_DATA, VR::OW, &[0; 33]);
    assert_eq!(
        check(&b.out, Encoding::IMPLICIT_LE).unwrap_err().as_label(),
        "misaligned_length"
    );
}

#[test]
fn unknown_vrs_and_disordered_tags_are_refused() {
    let mut b = Bytes::new(LE);
    b.tag(tags::MODALITY).raw(b"ZZ").u16(2).raw(b"CT");
    assert_eq!(
        check(&b.out, LE),
        Err(Violation::UnknownVr {
            tag: tags::MODALITY,
            vr: VrBytes(*b"ZZ")
        })
    );
    let mut b = Bytes::new(LE);
    b.element(tags::PATIENT_NAME, VR::PN, b"Doe^Jane")
        .element(tags::MODALITY, VR::CS, b"CT");
    assert_eq!(
        check(&b.out, LE),
        Err(Violation::OutOfOrder {
            tag: tags::MODALITY,
            previous: tags::PATIENT_NAME
        })
    );
    let mut b = Bytes::new(LE);
    b.element(tags::MODALITY, VR::CS, b"CT")
        .element(tags::MODALITY, VR::CS, b"MR");
    assert_eq!(
        check(&b.out, LE),
        Err(Violation::DuplicateElement {
            tag: tags::MODALITY
        })
    );
    // Order restarts in every item.
    let mut b = Bytes::new(LE);
    b.element(tags::MODALITY, VR::CS, b"CT")
        .header(tags::REFERENCED_IMAGE_SEQUENCE, VR::SQ, UNDEFINED)
        .item(ITEM, UNDEFINED)
        .element(tags::MODALITY, VR::CS, b"CT")
        .item(ITEM_DELIMITER, 0)
        .item(SEQUENCE_DELIMITER, 0)
        .element(tags::PATIENT_NAME, VR::PN, b"Doe^Jane");
    assert!(check(&b.out, LE).is_ok());
}
