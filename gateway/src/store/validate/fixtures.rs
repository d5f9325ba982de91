//! Test data sets for the validator: realistic ones written by dicom-object
//! (a CT with nested and private sequences, an encapsulated JPEG with an
//! icon), and hand-built bytes for the shapes dicom-object never writes.

use std::io::Write;

use dicom_core::value::{DataSetSequence, PixelFragmentSequence};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::Encoding;

pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const ITEM: Tag = Tag(0xFFFE, 0xE000);
pub const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
pub const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
pub const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Native CT pixels: 4 × 4 × 16 bits.
pub const CT_PIXEL_BYTES: u64 = 32;

fn text(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn us(tag: Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn code(value: &str, meaning: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        text(tags::CODE_VALUE, VR::SH, value),
        text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "DCM"),
        text(tags::CODE_MEANING, VR::LO, meaning),
    ])
}

/// The attributes every fixture image shares.
fn image_header(sop_class: &str, bits: u16) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        text(tags::SOP_CLASS_UID, VR::UI, sop_class),
        text(tags::SOP_INSTANCE_UID, VR::UI, "1.2.826.0.1.3680043.10.1.1"),
        text(tags::MODALITY, VR::CS, "CT"),
        text(tags::PATIENT_NAME, VR::PN, "Doe^Jane"),
        text(tags::PATIENT_ID, VR::LO, "PAT-0001"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.826.0.1.3680043.10.1"),
        text(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.10.1.2",
        ),
        text(tags::INSTANCE_NUMBER, VR::IS, "1"),
        us(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us(tags::ROWS, 4),
        us(tags::COLUMNS, 4),
        us(tags::BITS_ALLOCATED, bits),
        us(tags::BITS_STORED, bits),
        us(tags::HIGH_BIT, bits - 1),
        us(tags::PIXEL_REPRESENTATION, 0),
    ])
}

/// A CT with sequences two levels deep, two referenced images, a private
/// block (creator, OB value, private sequence) and native Pixel Data.
pub fn ct() -> InMemDicomObject {
    let mut obj = image_header(CT_IMAGE_STORAGE, 16);
    obj.put(text(tags::SLICE_THICKNESS, VR::DS, "1.25"));
    obj.put(text(tags::IMAGE_POSITION_PATIENT, VR::DS, "-125\\-125\\0"));
    obj.put(sequence(
        tags::PROCEDURE_CODE_SEQUENCE,
        vec![code("CTHEAD", "CT head")],
    ));
    let reference = |n: &str| {
        InMemDicomObject::from_element_iter([
            text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, CT_IMAGE_STORAGE),
            text(
                tags::REFERENCED_SOP_INSTANCE_UID,
                VR::UI,
                &format!("1.2.826.0.1.3680043.10.1.{n}"),
            ),
        ])
    };
    obj.put(sequence(
        tags::REFERENCED_IMAGE_SEQUENCE,
        vec![reference("7"), reference("8")],
    ));
    let inner = InMemDicomObject::from_element_iter([
        text(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS"),
        text(tags::VALUE_TYPE, VR::CS, "TEXT"),
        text(tags::TEXT_VALUE, VR::UT, "no acute finding"),
    ]);
    let outer = InMemDicomObject::from_element_iter([
        text(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS"),
        text(tags::VALUE_TYPE, VR::CS, "CONTAINER"),
        sequence(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![code("121070", "Findings")],
        ),
        sequence(tags::CONTENT_SEQUENCE, vec![inner]),
    ]);
    obj.put(sequence(tags::CONTENT_SEQUENCE, vec![outer]));
    obj.put(text(Tag(0x0009, 0x0010), VR::LO, "ACME 1.0"));
    obj.put(DataElement::new(
        Tag(0x0009, 0x1001),
        VR::OB,
        PrimitiveValue::from(vec![1u8, 2, 3, 4]),
    ));
    obj.put(sequence(Tag(0x0009, 0x1002), vec![code("X", "private")]));
    let pixels: Vec<u16> = (0..16).collect();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    obj
}

/// An 8-bit JPEG Baseline image: offset table of two frames, two
/// fragments, and an icon whose own Pixel Data is encapsulated too.
pub fn jpeg() -> InMemDicomObject {
    let mut obj = image_header(CT_IMAGE_STORAGE, 8);
    let icon = {
        let mut icon = image_header(CT_IMAGE_STORAGE, 8);
        for tag in [
            tags::SOP_CLASS_UID,
            tags::SOP_INSTANCE_UID,
            tags::MODALITY,
            tags::PATIENT_NAME,
            tags::PATIENT_ID,
            tags::STUDY_INSTANCE_UID,
            tags::SERIES_INSTANCE_UID,
            tags::INSTANCE_NUMBER,
        ] {
            icon.remove_element(tag);
        }
        icon.put(fragments(vec![], vec![jpeg_fragment(6)]));
        icon
    };
    obj.put(sequence(tags::ICON_IMAGE_SEQUENCE, vec![icon]));
    obj.put(text(tags::NUMBER_OF_FRAMES, VR::IS, "2"));
    obj.put(fragments(
        vec![0, 18],
        vec![jpeg_fragment(10), jpeg_fragment(8)],
    ));
    obj
}

fn jpeg_fragment(len: usize) -> Vec<u8> {
    let mut bytes = vec![0x55; len];
    bytes[..2].copy_from_slice(&[0xFF, 0xD8]);
    bytes[len - 2..].copy_from_slice(&[0xFF, 0xD9]);
    bytes
}

fn fragments(offsets: Vec<u32>, fragments: Vec<Vec<u8>>) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::new(offsets, fragments),
    )
}

/// The data set of `obj` encoded as `ts` (not deflated: see [`deflate`]).
pub fn encode(obj: &InMemDicomObject, ts: &str) -> Vec<u8> {
    let ts = TransferSyntaxRegistry.get(ts).expect("registered syntax");
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts).expect("encodes");
    out
}

/// Raw deflate (RFC 1951), as Deflated Explicit VR Little Endian uses it.
pub fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("in memory");
    encoder.finish().expect("in memory")
}

/// Every element of `obj`, nested ones included (as the walk counts them).
pub fn count_elements(obj: &InMemDicomObject) -> u64 {
    obj.iter()
        .map(|element| {
            1 + element
                .value()
                .items()
                .map_or(0, |items| items.iter().map(count_elements).sum())
        })
        .sum()
}

/// Byte builder for hand-made data sets in one encoding.
pub struct Bytes {
    pub encoding: Encoding,
    pub out: Vec<u8>,
}

impl Bytes {
    pub fn new(encoding: Encoding) -> Self {
        Self {
            encoding,
            out: Vec::new(),
        }
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        let b = if self.encoding.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend(b);
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        let b = if self.encoding.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend(b);
        self
    }

    pub fn tag(&mut self, tag: Tag) -> &mut Self {
        self.u16(tag.group()).u16(tag.element())
    }

    /// An element header; in explicit VR the length form follows the VR.
    pub fn header(&mut self, tag: Tag, vr: VR, length: u32) -> &mut Self {
        self.tag(tag);
        if !self.encoding.explicit_vr {
            return self.u32(length);
        }
        self.out.extend(vr.to_string().as_bytes());
        let short = [
            VR::AE,
            VR::AS,
            VR::AT,
            VR::CS,
            VR::DA,
            VR::DS,
            VR::DT,
            VR::FL,
            VR::FD,
            VR::IS,
            VR::LO,
            VR::LT,
            VR::PN,
            VR::SH,
            VR::SL,
            VR::SS,
            VR::ST,
            VR::TM,
            VR::UI,
            VR::UL,
            VR::US,
        ];
        if short.contains(&vr) {
            self.u16(length as u16)
        } else {
            self.u16(0).u32(length)
        }
    }

    /// A whole element with its value.
    pub fn element(&mut self, tag: Tag, vr: VR, value: &[u8]) -> &mut Self {
        self.header(tag, vr, value.len() as u32);
        self.out.extend(value);
        self
    }

    /// An item, item delimiter or sequence delimiter header.
    pub fn item(&mut self, tag: Tag, length: u32) -> &mut Self {
        self.tag(tag).u32(length)
    }

    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend(bytes);
        self
    }

    pub fn len(&self) -> u32 {
        self.out.len() as u32
    }
}

/// `levels` Content Sequences (0040,A730) nested inside each other, each
/// of undefined length with one undefined-length item; closed properly
/// when `closed`, otherwise cut off at the innermost item.
pub fn nested(encoding: Encoding, levels: usize, closed: bool) -> Vec<u8> {
    let mut b = Bytes::new(encoding);
    for _ in 0..levels {
        b.header(tags::CONTENT_SEQUENCE, VR::SQ, UNDEFINED)
            .item(ITEM, UNDEFINED);
    }
    if closed {
        b.element(tags::TEXT_VALUE, VR::UT, b"leaf");
        for _ in 0..levels {
            b.item(ITEM_DELIMITER, 0).item(SEQUENCE_DELIMITER, 0);
        }
    }
    b.out
}

/// One valid data set the mutation fuzzer starts from.
pub struct Seed {
    pub encoding: Encoding,
    /// Whether the data set travels deflated (`bytes` are the plain ones).
    pub deflated: bool,
    pub transfer_syntax: &'static str,
    pub bytes: Vec<u8>,
}

/// The seed corpus: the CT in every native encoding and deflated, the
/// encapsulated JPEG, and hand-built nesting.
pub fn corpus() -> Vec<Seed> {
    let ct = ct();
    let seed = |encoding, deflated, transfer_syntax, bytes| Seed {
        encoding,
        deflated,
        transfer_syntax,
        bytes,
    };
    vec![
        seed(
            Encoding::IMPLICIT_LE,
            false,
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            encode(&ct, uids::IMPLICIT_VR_LITTLE_ENDIAN),
        ),
        seed(
            Encoding::EXPLICIT_LE,
            false,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            encode(&ct, uids::EXPLICIT_VR_LITTLE_ENDIAN),
        ),
        seed(
            Encoding::EXPLICIT_BE,
            false,
            super::EXPLICIT_VR_BIG_ENDIAN,
            encode(&ct, super::EXPLICIT_VR_BIG_ENDIAN),
        ),
        seed(
            Encoding::EXPLICIT_LE,
            true,
            uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
            encode(&ct, uids::EXPLICIT_VR_LITTLE_ENDIAN),
        ),
        seed(
            Encoding::EXPLICIT_LE,
            false,
            uids::JPEG_BASELINE8_BIT,
            encode(&jpeg(), uids::JPEG_BASELINE8_BIT),
        ),
        seed(
            Encoding::IMPLICIT_LE,
            false,
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            nested(Encoding::IMPLICIT_LE, 3, true),
        ),
    ]
}
