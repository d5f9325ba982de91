//! DIMSE command sets (PS3.7 E.1): the constants every peer shares, the
//! request command sets the SCUs send, and the response fields they check.
//! Command sets are always implicit VR little endian (PS3.7 6.3.1).

use std::sync::LazyLock;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntax;
use dicom_object::InMemDicomObject;

/// Command Field (0000,0100) values, PS3.7 E.1.
pub mod command_field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_STORE_RSP: u16 = 0x8001;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
    /// Set on every response Command Field.
    pub const RESPONSE_BIT: u16 = 0x8000;
}

/// Command Data Set Type (0000,0800): any value but this one means a data
/// set follows the command.
pub const NO_DATA_SET: u16 = 0x0101;
/// Command Data Set Type we send when a data set follows.
pub const DATA_SET_PRESENT: u16 = 0x0000;
/// Priority (0000,0700): medium.
pub const PRIORITY_MEDIUM: u16 = 0x0000;
/// Implicit VR Little Endian, the transfer syntax of every command set.
pub const IMPLICIT_VR_LE_UID: &str = "1.2.840.10008.1.2";

/// Responses larger than this are refused rather than buffered: a real
/// response command is a few hundred bytes.
pub const MAX_COMMAND_LEN: usize = 64 * 1024;

/// What can go wrong building or reading a command set. Callers fold it
/// into their own error type (a bad response is the peer's fault, a failed
/// encode is ours).
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// A command set could not be encoded (a bug on our side, not the peer's).
    #[error("could not encode command set")]
    EncodeCommand(#[source] Box<dicom_object::WriteError>),
    /// The peer's response is not a usable response command set.
    #[error("protocol violation by peer: {detail}")]
    Protocol { detail: String },
}

/// The fields of a response command an SCU checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimseResponse {
    pub command_field: u16,
    pub message_id_being_responded_to: u16,
    pub status: u16,
    pub has_data_set: bool,
    pub error_comment: Option<String>,
}

/// Command sets are always implicit VR little endian; built once from the
/// registry's entry rather than looked up (and possibly missed) each time.
static IMPLICIT_VR_LE: LazyLock<TransferSyntax> =
    LazyLock::new(|| dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased());

/// The transfer syntax of every command set.
pub fn implicit_vr_le() -> &'static TransferSyntax {
    &IMPLICIT_VR_LE
}

/// Encoded C-STORE-RQ command set (priority medium, a data set follows).
pub fn c_store_rq(
    message_id: u16,
    sop_class_uid: &str,
    sop_instance_uid: &str,
) -> Result<Vec<u8>, MessageError> {
    encode(InMemDicomObject::command_from_element_iter([
        ui(tags::AFFECTED_SOP_CLASS_UID, sop_class_uid),
        us(tags::COMMAND_FIELD, command_field::C_STORE_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::PRIORITY, PRIORITY_MEDIUM),
        us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
        ui(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance_uid),
    ]))
}

/// Encoded C-ECHO-RQ command set.
pub fn c_echo_rq(message_id: u16) -> Result<Vec<u8>, MessageError> {
    encode(InMemDicomObject::command_from_element_iter([
        ui(tags::AFFECTED_SOP_CLASS_UID, uids::VERIFICATION),
        us(tags::COMMAND_FIELD, command_field::C_ECHO_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
    ]))
}

/// Parses a response command set received from the peer. The SCUs read
/// responses of at most [`MAX_COMMAND_LEN`] bytes.
pub fn parse_response(bytes: &[u8]) -> Result<DimseResponse, MessageError> {
    let command = InMemDicomObject::read_dataset_with_ts(bytes, implicit_vr_le()).map_err(|e| {
        MessageError::Protocol {
            detail: format!("undecodable response command: {e}"),
        }
    })?;
    let required = |tag, name: &str| -> Result<u16, MessageError> {
        command
            .get(tag)
            .and_then(|element| element.to_int::<u16>().ok())
            .ok_or_else(|| MessageError::Protocol {
                detail: format!("response command lacks a valid {name}"),
            })
    };
    let error_comment = command
        .get(tags::ERROR_COMMENT)
        .and_then(|element| element.to_str().ok())
        .map(|text| text.trim_end_matches(['\0', ' ']).to_string())
        .filter(|text| !text.is_empty());
    Ok(DimseResponse {
        command_field: required(tags::COMMAND_FIELD, "CommandField")?,
        message_id_being_responded_to: required(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            "MessageIDBeingRespondedTo",
        )?,
        status: required(tags::STATUS, "Status")?,
        has_data_set: required(tags::COMMAND_DATA_SET_TYPE, "CommandDataSetType")? != NO_DATA_SET,
        error_comment,
    })
}

/// Encodes a command set (with its group length) in implicit VR LE.
pub fn encode(command: InMemDicomObject) -> Result<Vec<u8>, MessageError> {
    let mut out = Vec::with_capacity(256);
    command
        .write_dataset_with_ts(&mut out, implicit_vr_le())
        .map_err(|e| MessageError::EncodeCommand(Box::new(e)))?;
    Ok(out)
}

/// A UI element of a command set.
pub fn ui(tag: dicom_core::Tag, uid: &str) -> dicom_object::mem::InMemElement {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(uid))
}

/// A US element of a command set.
pub fn us(tag: dicom_core::Tag, value: u16) -> dicom_object::mem::InMemElement {
    DataElement::new(tag, VR::US, dicom_value!(U16, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, responding_to: u16) -> Vec<u8> {
        let encoded = encode(InMemDicomObject::command_from_element_iter([
            ui(tags::AFFECTED_SOP_CLASS_UID, uids::CT_IMAGE_STORAGE),
            us(tags::COMMAND_FIELD, command_field::C_STORE_RSP),
            us(tags::MESSAGE_ID_BEING_RESPONDED_TO, responding_to),
            us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
            us(tags::STATUS, status),
            DataElement::new(tags::ERROR_COMMENT, VR::LO, PrimitiveValue::from("bad ")),
        ]));
        encoded.expect("encodes")
    }

    #[test]
    fn store_request_starts_with_group_length() {
        let bytes = c_store_rq(7, uids::CT_IMAGE_STORAGE, "2.25.1").expect("encodes");
        // (0000,0000) UL, implicit VR: tag, 4-byte length 4, value.
        assert_eq!(&bytes[..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
        let group_length = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        assert_eq!(group_length as usize, bytes.len() - 12);
    }

    #[test]
    fn responses_parse() {
        let parsed = parse_response(&response(0xA700, 9)).expect("parses");
        assert_eq!(parsed.command_field, command_field::C_STORE_RSP);
        assert_eq!(parsed.message_id_being_responded_to, 9);
        assert_eq!(parsed.status, 0xA700);
        assert!(!parsed.has_data_set);
        assert_eq!(parsed.error_comment.as_deref(), Some("bad"));
    }
}
