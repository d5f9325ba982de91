//! Each hostile object has the shape it claims: a valid file meta group, an
//! honest CT around the hostile change (it parses once the change is cut
//! out), and the change itself, checked byte by byte. Nothing here hands a
//! hostile data set to dicom-rs: the deep ones would overflow the stack.

use std::io::Read;

use dicom_core::Tag;
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{FileMetaTable, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use memchr::memmem;

use super::*;
use crate::synth::is_valid_uid;

const SEED: u64 = 12;
const PIXEL_TAG: [u8; 4] = [0xE0, 0x7F, 0x10, 0x00];
const SEQ_DELIMITER: [u8; 8] = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];
const ITEM_DELIMITER: [u8; 8] = [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0];

fn make(kind: HostileKind) -> HostileObject {
    hostile(kind, SEED).expect("builds")
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memmem::find(haystack, needle)
}

/// Parses honest bytes (never a hostile structure) as a data set.
fn parse(bytes: &[u8], ts: &str) -> InMemDicomObject {
    let ts = TransferSyntaxRegistry.get(ts).expect("known syntax");
    InMemDicomObject::read_dataset_with_ts(bytes, ts).expect("honest bytes parse")
}

fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.element(tag)
        .expect("present")
        .to_str()
        .expect("text")
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// Position of the Pixel Data header (the first `(7FE0,0010)` in the data set).
fn pixel_header(dataset: &[u8]) -> usize {
    find(dataset, &PIXEL_TAG).expect("a Pixel Data header")
}

/// The honest CT before the hostile change parses and is the object's.
fn assert_honest_prefix(obj: &HostileObject, prefix: &[u8], ts: &str) {
    let parsed = parse(prefix, ts);
    assert_eq!(text(&parsed, tags::SOP_INSTANCE_UID), obj.sop_instance_uid);
    assert_eq!(text(&parsed, tags::MODALITY), "CT");
}

#[test]
fn every_kind_is_a_part10_file_with_a_valid_meta_and_its_data_set() {
    let mut uids_seen = std::collections::HashSet::new();
    for kind in HostileKind::ALL {
        let obj = if kind == HostileKind::DeflateBomb {
            deflate_bomb(4 * 1024 * 1024, SEED).unwrap()
        } else {
            make(kind)
        };
        let file = &obj.part10;
        assert_eq!(&file[..128], &[0u8; 128], "{kind}");
        assert_eq!(&file[128..132], b"DICM", "{kind}");
        let meta = FileMetaTable::from_reader(&file[128..]).expect("meta parses");
        assert_eq!(meta.transfer_syntax(), obj.transfer_syntax_uid, "{kind}");
        assert_eq!(
            meta.media_storage_sop_instance_uid(),
            obj.sop_instance_uid,
            "{kind}"
        );
        assert_eq!(meta.media_storage_sop_class_uid(), uids::CT_IMAGE_STORAGE);
        let meta_end = 132 + 12 + u32_at(file, 140) as usize;
        assert_eq!(&file[meta_end..], obj.dataset.as_slice(), "{kind}");
        assert!(is_valid_uid(&obj.sop_instance_uid), "{kind}");
        assert!(uids_seen.insert(obj.sop_instance_uid.clone()), "{kind}");
        assert_eq!(kind.name().parse::<HostileKind>(), Ok(kind));
    }
    assert!("no-such-kind".parse::<HostileKind>().is_err());
}

#[test]
fn same_seed_same_bytes() {
    let a = make(HostileKind::ItemWithoutDelimiter);
    let b = make(HostileKind::ItemWithoutDelimiter);
    assert_eq!(a.part10, b.part10);
    assert_ne!(a.part10, hostile(a.kind, SEED + 1).unwrap().part10);
}

#[test]
fn deep_nesting_nests_five_thousand_levels_in_under_200_kb() {
    for kind in HostileKind::of_class(HostileClass::DeepNesting) {
        let obj = make(kind);
        let explicit = obj.transfer_syntax_uid == uids::EXPLICIT_VR_LITTLE_ENDIAN;
        let defined = matches!(
            kind,
            HostileKind::DeepNestingExplicitDefined | HostileKind::DeepNestingImplicitDefined
        );
        let data = &obj.dataset;
        let sq_tag = [0x40, 0x00, 0x30, 0xA7];
        let start = find(data, &sq_tag).expect("a Content Sequence");
        assert_honest_prefix(&obj, &data[..start], &obj.transfer_syntax_uid);
        let sq_header = if explicit { 12 } else { 8 };
        let (mut at, mut depth) = (start, 0usize);
        while data[at..].starts_with(&sq_tag) {
            if explicit {
                assert_eq!(&data[at + 4..at + 8], b"SQ\0\0");
            }
            let (sq_len, item_len) = (
                u32_at(data, at + sq_header - 4),
                u32_at(data, at + sq_header + 4),
            );
            assert_eq!(
                &data[at + sq_header..at + sq_header + 4],
                &[0xFE, 0xFF, 0x00, 0xE0]
            );
            if defined {
                assert_eq!(sq_len, item_len + 8, "{kind} level {depth}");
            } else {
                assert_eq!((sq_len, item_len), (u32::MAX, u32::MAX), "{kind}");
            }
            at += sq_header + 8;
            depth += 1;
        }
        assert_eq!(depth, DEFAULT_NESTING_DEPTH, "{kind}");
        let pixels = pixel_header(&data[at..]) + at;
        if defined {
            // The outermost sequence spans exactly the nesting.
            assert_eq!(
                u32_at(data, start + sq_header - 4) as usize,
                pixels - start - sq_header
            );
        } else {
            let closing = &data[pixels - 16 * depth..pixels];
            assert!(
                closing
                    .chunks(16)
                    .all(|c| c[..8] == ITEM_DELIMITER && c[8..] == SEQ_DELIMITER)
            );
        }
        assert!(
            (60_000..200_000).contains(&data.len()),
            "{kind}: {}",
            data.len()
        );
    }
}

#[test]
fn deep_nesting_takes_any_depth_up_to_its_cap() {
    let shallow = deep_nesting(3, true, true, SEED).unwrap();
    assert_eq!(shallow.kind, HostileKind::DeepNestingExplicitDefined);
    // Three levels are honest: dicom-rs reads them.
    parse(&shallow.dataset, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    let shallow = deep_nesting(3, false, false, SEED).unwrap();
    parse(&shallow.dataset, uids::IMPLICIT_VR_LITTLE_ENDIAN);
    assert!(matches!(
        deep_nesting(MAX_NESTING_DEPTH + 1, true, true, SEED),
        Err(HostileError::TooDeep(_))
    ));
}

#[test]
fn pixel_data_declares_more_than_is_present() {
    let truncated = make(HostileKind::PixelDataTruncated);
    let at = pixel_header(&truncated.dataset);
    assert_honest_prefix(
        &truncated,
        &truncated.dataset[..at],
        uids::EXPLICIT_VR_LITTLE_ENDIAN,
    );
    let prefix = parse(&truncated.dataset[..at], uids::EXPLICIT_VR_LITTLE_ENDIAN);
    assert_eq!(text(&prefix, tags::ROWS), "512");
    assert_eq!(text(&prefix, tags::COLUMNS), "512");
    assert_eq!(&truncated.dataset[at + 4..at + 8], b"OW\0\0");
    assert_eq!(u32_at(&truncated.dataset, at + 8), 512 * 512 * 2);
    assert_eq!(truncated.dataset.len() - (at + 12), 512 * 512 * 2 / 4);

    let huge = make(HostileKind::PixelDataHugeDeclared);
    let at = pixel_header(&huge.dataset);
    assert_eq!(u32_at(&huge.dataset, at + 8), 0x6000_0000);
    assert!(huge.part10.len() < 2048, "{}", huge.part10.len());
}

#[test]
fn encapsulated_fragments_overrun_or_lack_their_delimiter() {
    for kind in HostileKind::of_class(HostileClass::EncapsulatedPixelData) {
        let obj = make(kind);
        assert_eq!(obj.transfer_syntax_uid, "1.2.840.10008.1.2.4.70");
        let data = &obj.dataset;
        let at = pixel_header(data);
        assert_honest_prefix(&obj, &data[..at], uids::EXPLICIT_VR_LITTLE_ENDIAN);
        assert_eq!(&data[at + 4..at + 12], b"OB\0\0\xFF\xFF\xFF\xFF");
        // Empty Basic Offset Table, then one fragment that starts a JPEG.
        assert_eq!(
            &data[at + 12..at + 20],
            &[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]
        );
        assert_eq!(&data[at + 20..at + 24], &[0xFE, 0xFF, 0x00, 0xE0]);
        let declared = u32_at(data, at + 24) as usize;
        let present = data.len() - (at + 28);
        assert_eq!(&data[at + 28..at + 32], &[0xFF, 0xD8, 0xFF, 0xC3]);
        if kind == HostileKind::FragmentPastEnd {
            assert!(declared > present, "{declared} <= {present}");
        } else {
            assert_eq!(declared, present);
        }
        assert!(!data.ends_with(&SEQ_DELIMITER), "{kind}");
    }
}

#[test]
fn deflate_bomb_inflates_past_a_gigabyte_from_about_a_megabyte() {
    let bomb = make(HostileKind::DeflateBomb);
    assert_eq!(bomb.transfer_syntax_uid, "1.2.840.10008.1.2.1.99");
    assert!(
        bomb.dataset.len() < 4 * 1024 * 1024,
        "{}",
        bomb.dataset.len()
    );
    let mut inflater = flate2::read::DeflateDecoder::new(bomb.dataset.as_slice());
    let inflated = std::io::copy(&mut inflater, &mut std::io::sink()).expect("inflates");
    assert!(inflated > 1 << 30, "{inflated}");
    assert!(inflated >= DEFAULT_BOMB_INFLATED_BYTES);
}

#[test]
fn a_small_bomb_inflates_to_a_valid_data_set_of_private_zeros() {
    let bomb = deflate_bomb(600 * 1024 * 1024 / 100, SEED).unwrap();
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(bomb.dataset.as_slice())
        .read_to_end(&mut inflated)
        .expect("inflates");
    let obj = parse(&inflated, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    assert_eq!(text(&obj, tags::SOP_INSTANCE_UID), bomb.sop_instance_uid);
    assert_eq!(text(&obj, Tag(0x0009, 0x0010)), "SYNTHETIC BOMB");
    let zeros = obj
        .element(Tag(0x0009, 0x1000))
        .unwrap()
        .to_bytes()
        .unwrap();
    assert_eq!(zeros.len(), 600 * 1024 * 1024 / 100);
    assert!(zeros.iter().all(|b| *b == 0));
    assert_eq!(
        obj.element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .len(),
        64 * 64 * 2
    );
    // Several elements when the size asks for more than one.
    let two = deflate_bomb(BOMB_ELEMENT_BYTES + 2, SEED).unwrap();
    let mut head = vec![0u8; 4096];
    let mut inflater = flate2::read::DeflateDecoder::new(two.dataset.as_slice());
    inflater.read_exact(&mut head).unwrap();
    let first = find(&head, &[0x09, 0x00, 0x00, 0x10, b'O', b'B']).expect("(0009,1000)");
    assert_eq!(u32_at(&head, first + 8) as u64, BOMB_ELEMENT_BYTES);
}

#[test]
fn file_meta_group_opens_the_data_set_and_names_another_syntax() {
    let obj = make(HostileKind::FileMetaInDataSet);
    assert!(
        obj.dataset
            .starts_with(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0])
    );
    // Well-formed otherwise: a lenient parser reads it, group 0002 and all.
    let parsed = parse(&obj.dataset, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    assert_eq!(
        text(&parsed, tags::TRANSFER_SYNTAX_UID),
        "1.2.840.10008.1.2.4.70"
    );
    assert_eq!(text(&parsed, tags::SOP_INSTANCE_UID), obj.sop_instance_uid);
    let group_end = 12 + u32_at(&obj.dataset, 8) as usize;
    assert_eq!(
        &obj.dataset[group_end..group_end + 4],
        &[0x08, 0x00, 0x05, 0x00]
    );
}

#[test]
fn structure_kinds_break_one_rule_each_and_are_honest_without_it() {
    let sq = [0x40, 0x00, 0x75, 0x02, b'S', b'Q', 0, 0];
    let ts = uids::EXPLICIT_VR_LITTLE_ENDIAN;
    let lying = make(HostileKind::ItemLongerThanSequence);
    let at = find(&lying.dataset, &sq).unwrap();
    assert_honest_prefix(&lying, &lying.dataset[..at], ts);
    let (sq_len, item_len) = (
        u32_at(&lying.dataset, at + 8),
        u32_at(&lying.dataset, at + 16),
    );
    assert_eq!(item_len, sq_len - 8 + 64);

    let lying = make(HostileKind::ElementLongerThanItem);
    let at = find(&lying.dataset, &sq).unwrap();
    let item_len = u32_at(&lying.dataset, at + 16) as usize;
    assert_eq!(
        &lying.dataset[at + 20..at + 26],
        &[0x40, 0x00, 0x07, 0x00, b'L', b'O']
    );
    assert!(u16_at(&lying.dataset, at + 26) as usize > item_len - 8);

    let open = make(HostileKind::ItemWithoutDelimiter);
    let at = find(&open.dataset, &sq).unwrap();
    assert_eq!(u32_at(&open.dataset, at + 8), u32::MAX);
    assert_eq!(u32_at(&open.dataset, at + 16), u32::MAX);
    assert!(find(&open.dataset, &ITEM_DELIMITER).is_none());
    assert!(find(&open.dataset, &SEQ_DELIMITER).is_some());

    // The stray delimiters and the undefined-length text are the only
    // thing wrong: without them the data set parses.
    for (kind, hostile_bytes) in [
        (
            HostileKind::SequenceDelimiterOutsideSequence,
            SEQ_DELIMITER.to_vec(),
        ),
        (
            HostileKind::ItemDelimiterOutsideItem,
            ITEM_DELIMITER.to_vec(),
        ),
    ] {
        let obj = make(kind);
        let at = find(&obj.dataset, &hostile_bytes).expect("the stray delimiter");
        assert_eq!(at + 8, pixel_header(&obj.dataset), "{kind}");
        let mut honest = obj.dataset.clone();
        honest.drain(at..at + 8);
        assert_honest_prefix(&obj, &honest, ts);
    }
    let text_obj = make(HostileKind::UndefinedLengthText);
    let header = [
        0x40, 0x00, 0x60, 0xA1, b'U', b'T', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ];
    let at = find(&text_obj.dataset, &header).expect("UT of undefined length");
    assert_honest_prefix(&text_obj, &text_obj.dataset[..at], ts);
    let end = find(&text_obj.dataset, &SEQ_DELIMITER).unwrap();
    assert_eq!(end + 8, pixel_header(&text_obj.dataset));
}

#[test]
fn garbage_kinds_are_what_they_say() {
    let garbage = make(HostileKind::Garbage);
    assert_eq!(garbage.dataset.len(), 4096);
    assert!(garbage.dataset.iter().filter(|b| **b == 0).count() < 256);
    assert!(make(HostileKind::Empty).dataset.is_empty());
    assert_eq!(make(HostileKind::FewBytes).dataset.len(), 5);
}
