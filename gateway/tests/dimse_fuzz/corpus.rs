//! Seed corpus: valid command sets and PDU streams built with the encoders
//! the gateway itself uses (dicom-object for command sets, our `Response`,
//! dicom-ul's PDU writer), and hostile ones built byte by byte.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_gateway::dimse::command::{Response, command_field};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::Pdu;
use dicom_ul::pdu::{PDataValue, PDataValueType};

const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const DATA_SET_PRESENT: u16 = 0x0000;
const DATA_SET_ABSENT: u16 = 0x0101;
const UNDEFINED_LENGTH: u32 = 0xFFFF_FFFF;

fn encode_command(elements: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let mut out = Vec::new();
    let ts = TransferSyntaxRegistry
        .get(IMPLICIT_VR_LE)
        .expect("built in");
    obj.write_dataset_with_ts(&mut out, ts).expect("encode");
    out
}

fn us(tag: Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

fn ui(tag: Tag, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(value))
}

pub fn c_echo_rq() -> Vec<u8> {
    encode_command(vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, uids::VERIFICATION),
        us(tags::COMMAND_FIELD, command_field::C_ECHO_RQ),
        us(tags::MESSAGE_ID, 1),
        us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_ABSENT),
    ])
}

pub fn c_store_rq() -> Vec<u8> {
    encode_command(vec![
        ui(tags::AFFECTED_SOP_CLASS_UID, CT_IMAGE_STORAGE),
        us(tags::COMMAND_FIELD, command_field::C_STORE_RQ),
        us(tags::MESSAGE_ID, 7),
        us(tags::PRIORITY, 0),
        us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
        ui(tags::AFFECTED_SOP_INSTANCE_UID, "2.25.1234567890"),
    ])
}

/// A well-formed command set that is a response, not a request.
pub fn c_store_rsp() -> Vec<u8> {
    Response {
        command_field: command_field::C_STORE_RSP,
        message_id: 7,
        sop_class_uid: Some(CT_IMAGE_STORAGE),
        sop_instance_uid: Some("2.25.1234567890"),
        status: 0xA700,
        error_comment: Some("out of resources"),
    }
    .encode()
}

/// Valid command sets.
pub fn commands() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("c_echo_rq", c_echo_rq()),
        ("c_store_rq", c_store_rq()),
        ("c_store_rsp", c_store_rsp()),
    ]
}

/// An implicit VR LE element header.
fn header(group: u16, element: u16, length: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    out.extend(group.to_le_bytes());
    out.extend(element.to_le_bytes());
    out.extend(length.to_le_bytes());
    out
}

/// Offset of the first element with `tag` in an implicit VR LE command set.
fn offset_of(bytes: &[u8], tag: Tag) -> usize {
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let group = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let element = u16::from_le_bytes([bytes[at + 2], bytes[at + 3]]);
        if Tag(group, element) == tag {
            return at;
        }
        let length =
            u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        at += 8 + length as usize;
    }
    panic!("{tag} not in the seed")
}

fn with_length(mut bytes: Vec<u8>, tag: Tag, length: u32) -> Vec<u8> {
    let at = offset_of(&bytes, tag) + 4;
    bytes[at..at + 4].copy_from_slice(&length.to_le_bytes());
    bytes
}

/// Command sets that must be refused, each for a different lie.
pub fn hostile_commands() -> Vec<(&'static str, Vec<u8>)> {
    let store = c_store_rq();
    let mut nested = Vec::new();
    // A command set whose one "element" is a sequence nested thousands of
    // levels deep (undefined lengths, so each level costs 16 bytes): a
    // recursive parser would run out of stack.
    for _ in 0..4_000 {
        nested.extend(header(0x0008, 0x1115, UNDEFINED_LENGTH)); // an SQ
        nested.extend(header(0xFFFE, 0xE000, UNDEFINED_LENGTH)); // its item
    }
    // A two-byte Command Group Length (UL): a parser that reads whole
    // values would take the next header two bytes early, and with it a
    // length of 2 MiB that no walk has checked.
    let mut misaligned = header(0x0000, 0x0000, 2);
    misaligned.extend([0, 0]);
    misaligned.extend(header(0x0000, 0x0000, 36));
    misaligned.extend([0x5F; 36]);
    let mut trailing_garbage = c_echo_rq();
    trailing_garbage.extend([0x00, 0x00, 0x00]);
    vec![
        (
            "uid_length_of_4_gib",
            with_length(store.clone(), tags::AFFECTED_SOP_INSTANCE_UID, 0xFFFF_FFF0),
        ),
        (
            "uid_length_of_16_mib",
            with_length(store.clone(), tags::AFFECTED_SOP_INSTANCE_UID, 16 << 20),
        ),
        (
            "group_length_lies",
            with_length(store.clone(), tags::COMMAND_GROUP_LENGTH, 0x7FFF_FFFF),
        ),
        (
            "command_field_length_past_the_end",
            with_length(store.clone(), tags::COMMAND_FIELD, store.len() as u32),
        ),
        (
            "undefined_length_uid",
            with_length(
                store.clone(),
                tags::AFFECTED_SOP_CLASS_UID,
                UNDEFINED_LENGTH,
            ),
        ),
        ("deeply_nested_sequences", nested),
        ("group_length_of_two_bytes", misaligned),
        (
            "message_id_of_three_bytes",
            with_length(c_echo_rq(), tags::MESSAGE_ID, 3),
        ),
        (
            "truncated_inside_a_header",
            store[..store.len() - 5].to_vec(),
        ),
        ("cut_inside_a_tag", trailing_garbage),
        ("empty", Vec::new()),
    ]
}

// ---- PDUs ----------------------------------------------------------------

pub const P_DATA_TF: u8 = 0x04;
pub const RELEASE_RQ: u8 = 0x05;

fn encode_pdu(pdu: &Pdu) -> Vec<u8> {
    let mut out = Vec::new();
    dicom_ul::write_pdu(&mut out, pdu).expect("encode PDU");
    out
}

pub fn p_data(pc: u8, value_type: PDataValueType, is_last: bool, data: Vec<u8>) -> Vec<u8> {
    encode_pdu(&Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type,
            is_last,
            data,
        }],
    })
}

pub fn release_rq() -> Vec<u8> {
    encode_pdu(&Pdu::ReleaseRQ)
}

pub fn abort() -> Vec<u8> {
    encode_pdu(&Pdu::AbortRQ {
        source: dicom_ul::pdu::AbortRQSource::ServiceUser,
    })
}

/// What a C-STORE looks like on the wire: command, data set in two
/// fragments, then a release; and the same with an abort instead.
pub fn streams() -> Vec<(&'static str, Vec<u8>)> {
    let command = p_data(1, PDataValueType::Command, true, c_store_rq());
    let mut store = command.clone();
    store.extend(p_data(1, PDataValueType::Data, false, vec![0x5A; 300]));
    store.extend(p_data(1, PDataValueType::Data, true, vec![0xA5; 301]));
    store.extend(release_rq());
    let mut echo_then_abort = p_data(3, PDataValueType::Command, true, c_echo_rq());
    echo_then_abort.extend(abort());
    vec![
        ("c_store_then_release", store),
        ("c_echo_then_abort", echo_then_abort),
    ]
}

fn pdu_header(kind: u8, length: u32) -> Vec<u8> {
    let mut out = vec![kind, 0];
    out.extend(length.to_be_bytes());
    out
}

fn pdv_header(length: u32, pc: u8, control: u8) -> Vec<u8> {
    let mut out = length.to_be_bytes().to_vec();
    out.extend([pc, control]);
    out
}

/// How [`Wire`](dicom_gateway::dimse::wire::Wire) must end on a
/// hostile stream (the label of its `WireError`), reading at most the
/// bytes shown.
pub struct HostilePdu {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub error: &'static str,
}

pub fn hostile_pdus(max_pdu: u32) -> Vec<HostilePdu> {
    let mut lying_pdu = pdu_header(P_DATA_TF, max_pdu + 1);
    lying_pdu.extend(pdv_header(max_pdu - 3, 1, 0b10));
    let mut pdv_longer_than_pdu = pdu_header(P_DATA_TF, 10);
    pdv_longer_than_pdu.extend(pdv_header(100, 1, 0b10));
    pdv_longer_than_pdu.extend([0; 4]);
    let mut zero_length_pdv = pdu_header(P_DATA_TF, 6);
    zero_length_pdv.extend(pdv_header(0, 1, 0b11));
    let mut pdu_too_short_for_a_pdv = pdu_header(P_DATA_TF, 5);
    pdu_too_short_for_a_pdv.extend([0; 5]);
    let mut release_with_a_body = pdu_header(RELEASE_RQ, 64);
    release_with_a_body.extend([0; 64]);
    let mut second_pdv_crosses_the_end = pdu_header(P_DATA_TF, 16);
    second_pdv_crosses_the_end.extend(pdv_header(6, 1, 0b00));
    second_pdv_crosses_the_end.extend([0; 4]);
    second_pdv_crosses_the_end.extend(pdv_header(8, 1, 0b10));
    let hostile = |name, bytes, error| HostilePdu { name, bytes, error };
    vec![
        hostile("lying_pdu_length", lying_pdu, "pdu_too_large"),
        hostile(
            "pdu_length_of_4_gib",
            pdu_header(P_DATA_TF, u32::MAX),
            "pdu_too_large",
        ),
        hostile("pdv_longer_than_pdu", pdv_longer_than_pdu, "malformed_pdu"),
        hostile("zero_length_pdv", zero_length_pdv, "malformed_pdu"),
        hostile(
            "pdu_too_short_for_a_pdv",
            pdu_too_short_for_a_pdv,
            "malformed_pdu",
        ),
        hostile(
            "second_pdv_crosses_the_end",
            second_pdv_crosses_the_end,
            "malformed_pdu",
        ),
        hostile("release_with_a_body", release_with_a_body, "malformed_pdu"),
        hostile("unknown_pdu_type", pdu_header(0x09, 4), "unexpected_pdu"),
        hostile(
            "associate_rq_of_4_gib",
            pdu_header(0x01, u32::MAX),
            "unexpected_pdu",
        ),
        hostile("truncated_header", vec![P_DATA_TF, 0, 0], "closed"),
        hostile(
            "truncated_pdv_header",
            {
                let mut b = pdu_header(P_DATA_TF, 100);
                b.extend([0, 0]);
                b
            },
            "closed",
        ),
    ]
}

/// A PDU stream that ends in an empty PDV (item length 2): legal, and read
/// as a zero-length fragment.
pub fn empty_pdv() -> Vec<u8> {
    let mut bytes = pdu_header(P_DATA_TF, 6);
    bytes.extend(pdv_header(2, 1, 0b10));
    bytes.extend(release_rq());
    bytes
}
