//! The generators behind [`super::hostile`]: each takes an honest CT
//! ([`BaseCt`]) and makes its one hostile change where that structure sits
//! in a real object.

use dicom_core::Tag;
use dicom_dictionary_std::uids;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::base::{BaseCt, PIXEL_DATA, part10};
use super::wire::{
    DeflateWriter, ElementWriter, ITEM, ITEM_DELIMITER, SEQUENCE_DELIMITER, UNDEFINED_LENGTH,
};
use super::{BOMB_ELEMENT_BYTES, HUGE_DECLARED_PIXEL_LENGTH, HostileError, HostileKind};
use super::{HostileObject, SynthError};

/// Rows and columns of the small CT most kinds are built on.
const SMALL: (u16, u16) = (64, 64);
/// A real head CT slice, for the Pixel Data kinds.
const FULL: (u16, u16) = (512, 512);
/// (0040,A730) Content Sequence: the sequence that nests in real SRs.
const CONTENT_SEQUENCE: (u16, u16) = (0x0040, 0xA730);
/// (0040,A040) Value Type.
const VALUE_TYPE: (u16, u16) = (0x0040, 0xA040);
/// (0040,A160) Text Value.
const TEXT_VALUE: (u16, u16) = (0x0040, 0xA160);
/// (0040,0275) Request Attributes Sequence, as a worklist-driven CT has.
const REQUEST_ATTRIBUTES_SEQUENCE: (u16, u16) = (0x0040, 0x0275);
/// JPEG Lossless, First-Order Prediction: encapsulated, 16 bits allowed.
const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";
/// Deflated Explicit VR Little Endian.
const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
/// Private creator of the bomb's elements, block 0x10 of group 0009.
const BOMB_CREATOR: (u16, u16) = (0x0009, 0x0010);
/// First private element of the bomb: (0009,1000), in the creator's block.
const BOMB_FIRST_ELEMENT: u16 = 0x1000;
/// Elements one private block holds.
const MAX_BOMB_ELEMENTS: u64 = 256;
/// Declared length of [`HostileKind::FragmentPastEnd`]'s fragment.
const FRAGMENT_CLAIMED: u32 = 1024 * 1024;
/// Bytes of a JPEG fragment (SOI, SOF3, filler, EOI).
const FRAGMENT_BYTES: usize = 2048;
/// Bytes of [`HostileKind::Garbage`].
const GARBAGE_BYTES: usize = 4096;

fn tag((group, element): (u16, u16)) -> Tag {
    Tag(group, element)
}

fn object(
    base: &BaseCt,
    kind: HostileKind,
    ts: &str,
    dataset: Vec<u8>,
) -> Result<HostileObject, SynthError> {
    let inst = &base.instance;
    let part10 = part10(inst, ts, &dataset)?;
    Ok(HostileObject {
        kind,
        sop_class_uid: inst.sop_class_uid.clone(),
        sop_instance_uid: inst.sop_instance_uid.clone(),
        study_instance_uid: inst.study_instance_uid.clone(),
        transfer_syntax_uid: ts.to_string(),
        dataset,
        part10,
    })
}

fn native_ts(explicit_vr: bool) -> &'static str {
    if explicit_vr {
        uids::EXPLICIT_VR_LITTLE_ENDIAN
    } else {
        uids::IMPLICIT_VR_LITTLE_ENDIAN
    }
}

pub(super) fn deep_nesting(
    kind: HostileKind,
    depth: usize,
    explicit_vr: bool,
    defined_lengths: bool,
    seed: u64,
) -> Result<HostileObject, SynthError> {
    let base = BaseCt::new(seed, SMALL, explicit_vr, tag(CONTENT_SEQUENCE))?;
    let mut w = base.writer();
    // The innermost content item: a TEXT node, as an SR would have.
    let mut inner = ElementWriter::new(explicit_vr, Vec::new());
    inner.element(VALUE_TYPE, b"CS", b"TEXT");
    inner.element(TEXT_VALUE, b"UT", b"innermost");
    let inner = inner.out;
    // Each level adds a sequence header and an item header around the next.
    let per_level = w.header_len(b"SQ") + 8;
    for level in (0..depth).rev() {
        if defined_lengths {
            let item_len = (inner.len() + level * per_level) as u32;
            w.header(CONTENT_SEQUENCE, b"SQ", item_len + 8);
            w.item_header(ITEM, item_len);
        } else {
            w.header(CONTENT_SEQUENCE, b"SQ", UNDEFINED_LENGTH);
            w.item_header(ITEM, UNDEFINED_LENGTH);
        }
    }
    w.out.extend_from_slice(&inner);
    if !defined_lengths {
        for _ in 0..depth {
            w.item_header(ITEM_DELIMITER, 0);
            w.item_header(SEQUENCE_DELIMITER, 0);
        }
    }
    let dataset = base.finish(w);
    object(&base, kind, native_ts(explicit_vr), dataset)
}

pub(super) fn deflate_bomb(inflated_bytes: u64, seed: u64) -> Result<HostileObject, HostileError> {
    if inflated_bytes > MAX_BOMB_ELEMENTS * BOMB_ELEMENT_BYTES {
        return Err(HostileError::BombTooLarge(inflated_bytes));
    }
    let base = BaseCt::new(seed, SMALL, true, Tag(0x0009, 0x0000))?;
    let mut w = base.writer();
    w.element(BOMB_CREATOR, b"LO", b"SYNTHETIC BOMB");
    let mut deflate = DeflateWriter::new()?;
    let mut left = inflated_bytes;
    let mut element = BOMB_FIRST_ELEMENT;
    while left > 0 {
        // Even lengths, each under the per-element cap.
        let length = left.min(BOMB_ELEMENT_BYTES).next_multiple_of(2);
        w.header((0x0009, element), b"OB", length as u32);
        deflate.bytes(&std::mem::take(&mut w.out))?;
        deflate.zeros(length)?;
        left = left.saturating_sub(length);
        element += 1;
    }
    // What is left of the head (all of it when nothing was asked to
    // inflate), the rest of the data set and honest pixels.
    w.out.extend_from_slice(&base.after);
    w.header(PIXEL_DATA, b"OW", base.pixels.len() as u32);
    w.out.extend_from_slice(&base.pixels);
    let dataset = deflate.finish(&w.out)?;
    Ok(object(
        &base,
        HostileKind::DeflateBomb,
        DEFLATED_EXPLICIT_VR_LE,
        dataset,
    )?)
}

/// Every kind but deep nesting and the bomb (which take parameters).
pub(super) fn other(kind: HostileKind, seed: u64) -> Result<HostileObject, SynthError> {
    use HostileKind as K;
    match kind {
        K::PixelDataTruncated | K::PixelDataHugeDeclared => pixel_data(kind, seed),
        K::FragmentPastEnd | K::FragmentsWithoutDelimiter => encapsulated(kind, seed),
        K::FileMetaInDataSet => file_meta_in_data_set(seed),
        K::Garbage | K::Empty | K::FewBytes => garbage(kind, seed),
        _ => structure(kind, seed),
    }
}

fn pixel_data(kind: HostileKind, seed: u64) -> Result<HostileObject, SynthError> {
    let base = BaseCt::new(seed, FULL, true, tag(PIXEL_DATA))?;
    let mut w = base.writer();
    let (declared, present) = if kind == HostileKind::PixelDataTruncated {
        (base.pixels.len() as u32, base.pixels.len() / 4)
    } else {
        (HUGE_DECLARED_PIXEL_LENGTH, 64)
    };
    w.header(PIXEL_DATA, b"OW", declared);
    w.out.extend_from_slice(&base.pixels[..present]);
    let dataset = w.out;
    object(&base, kind, uids::EXPLICIT_VR_LITTLE_ENDIAN, dataset)
}

fn encapsulated(kind: HostileKind, seed: u64) -> Result<HostileObject, SynthError> {
    let base = BaseCt::new(seed, SMALL, true, tag(PIXEL_DATA))?;
    let mut w = base.writer();
    let fragment = jpeg_lossless_fragment(SMALL);
    w.header(PIXEL_DATA, b"OB", UNDEFINED_LENGTH);
    w.item_header(ITEM, 0); // empty Basic Offset Table
    let declared = if kind == HostileKind::FragmentPastEnd {
        FRAGMENT_CLAIMED
    } else {
        fragment.len() as u32
    };
    w.item_header(ITEM, declared);
    w.out.extend_from_slice(&fragment);
    // Either way the file ends here: no Sequence Delimitation Item.
    let dataset = w.out;
    object(&base, kind, JPEG_LOSSLESS_SV1, dataset)
}

/// SOI, a lossless (SOF3) frame header matching the image, filler, EOI:
/// enough that a reader looking at the fragment sees a JPEG.
fn jpeg_lossless_fragment((rows, columns): (u16, u16)) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xC3, 0x00, 0x0B, 16];
    out.extend_from_slice(&rows.to_be_bytes());
    out.extend_from_slice(&columns.to_be_bytes());
    out.extend_from_slice(&[1, 1, 0x11, 0]);
    out.resize(FRAGMENT_BYTES - 2, 0);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

fn file_meta_in_data_set(seed: u64) -> Result<HostileObject, SynthError> {
    let base = BaseCt::new(seed, SMALL, true, Tag(0x0008, 0x0000))?;
    let inst = &base.instance;
    // What a sender's own file meta says: another transfer syntax than the
    // one the data set is in, and its own implementation.
    let mut group = ElementWriter::new(true, Vec::new());
    group.element((0x0002, 0x0001), b"OB", &[0, 1]);
    group.element((0x0002, 0x0002), b"UI", inst.sop_class_uid.as_bytes());
    group.element((0x0002, 0x0003), b"UI", inst.sop_instance_uid.as_bytes());
    group.element((0x0002, 0x0010), b"UI", JPEG_LOSSLESS_SV1.as_bytes());
    group.element((0x0002, 0x0012), b"UI", b"1.2.826.0.1.3680043.2.1143.107");
    group.element((0x0002, 0x0013), b"SH", b"PEER_SCU_1");
    // The group comes first, as group 0002 sorts before everything else.
    let mut w = ElementWriter::new(true, Vec::new());
    let group_len = group.out.len() as u32;
    w.element((0x0002, 0x0000), b"UL", &group_len.to_le_bytes());
    w.out.extend_from_slice(&group.out);
    w.out.extend_from_slice(&base.before);
    let dataset = base.finish(w);
    object(
        &base,
        HostileKind::FileMetaInDataSet,
        uids::EXPLICIT_VR_LITTLE_ENDIAN,
        dataset,
    )
}

fn structure(kind: HostileKind, seed: u64) -> Result<HostileObject, SynthError> {
    let base = BaseCt::new(seed, SMALL, true, tag(REQUEST_ATTRIBUTES_SEQUENCE))?;
    let mut w = base.writer();
    // An honest item: what a worklist-driven CT copies from its request.
    let mut item = ElementWriter::new(true, Vec::new());
    item.element((0x0040, 0x0007), b"LO", b"CT HEAD WO");
    item.element((0x0040, 0x0009), b"SH", b"SPS0001");
    item.element((0x0040, 0x1001), b"SH", b"RP0001");
    let item = item.out;
    let item_len = item.len() as u32;
    use HostileKind as K;
    match kind {
        K::ItemLongerThanSequence => {
            w.header(REQUEST_ATTRIBUTES_SEQUENCE, b"SQ", item_len + 8);
            w.item_header(ITEM, item_len + 64);
            w.out.extend_from_slice(&item);
        }
        K::ElementLongerThanItem => {
            w.header(REQUEST_ATTRIBUTES_SEQUENCE, b"SQ", item_len + 8);
            w.item_header(ITEM, item_len);
            // The first element claims 200 bytes; 10 follow before the next.
            let mut lying = item.clone();
            lying[6..8].copy_from_slice(&200u16.to_le_bytes());
            w.out.extend_from_slice(&lying);
        }
        K::ItemWithoutDelimiter => {
            w.header(REQUEST_ATTRIBUTES_SEQUENCE, b"SQ", UNDEFINED_LENGTH);
            w.item_header(ITEM, UNDEFINED_LENGTH);
            w.out.extend_from_slice(&item);
            w.item_header(SEQUENCE_DELIMITER, 0);
        }
        K::SequenceDelimiterOutsideSequence => w.item_header(SEQUENCE_DELIMITER, 0),
        K::ItemDelimiterOutsideItem => w.item_header(ITEM_DELIMITER, 0),
        _ => {
            w.header(TEXT_VALUE, b"UT", UNDEFINED_LENGTH);
            w.out
                .extend_from_slice(b"free text that never says how long it is ");
            w.item_header(SEQUENCE_DELIMITER, 0);
        }
    }
    let dataset = base.finish(w);
    object(&base, kind, uids::EXPLICIT_VR_LITTLE_ENDIAN, dataset)
}

fn garbage(kind: HostileKind, seed: u64) -> Result<HostileObject, SynthError> {
    let base = BaseCt::new(seed, SMALL, true, tag(PIXEL_DATA))?;
    let dataset = match kind {
        HostileKind::Garbage => {
            let mut bytes = vec![0u8; GARBAGE_BYTES];
            ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
            bytes
        }
        HostileKind::Empty => Vec::new(),
        // (0008,0005) and half of a VR.
        _ => vec![0x08, 0x00, 0x05, 0x00, b'C'],
    };
    object(&base, kind, uids::EXPLICIT_VR_LITTLE_ENDIAN, dataset)
}
