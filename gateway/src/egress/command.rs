//! The DIMSE command sets egress speaks (C-STORE-RQ out, C-STORE-RSP in),
//! always implicit VR little endian as PS3.7 requires.

use std::sync::LazyLock;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR, dicom_value};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntax;
use dicom_object::InMemDicomObject;

use super::ForwardError;

/// Command Field (0000,0100) values, PS3.7 E.1.
pub(crate) const C_STORE_RQ: u16 = 0x0001;
pub(crate) const C_STORE_RSP: u16 = 0x8001;
/// Command Data Set Type (0000,0800): this value means no data set follows.
pub(crate) const NO_DATA_SET: u16 = 0x0101;
/// Command Data Set Type we send when a data set follows.
const DATA_SET_PRESENT: u16 = 0x0000;
/// Priority (0000,0700): medium.
const PRIORITY_MEDIUM: u16 = 0x0000;
/// A real response command is a few hundred bytes; refuse to buffer more.
pub(crate) const MAX_COMMAND_LEN: usize = 64 * 1024;

/// The fields of a C-STORE-RSP egress checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreResponse {
    pub command_field: u16,
    pub message_id_being_responded_to: u16,
    pub status: u16,
    pub has_data_set: bool,
    pub error_comment: Option<String>,
}

static IMPLICIT_VR_LE: LazyLock<TransferSyntax> =
    LazyLock::new(|| dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased());

/// Encoded C-STORE-RQ command set.
pub(crate) fn c_store_rq(
    message_id: u16,
    sop_class_uid: &str,
    sop_instance_uid: &str,
) -> Result<Vec<u8>, ForwardError> {
    let command = InMemDicomObject::command_from_element_iter([
        ui(tags::AFFECTED_SOP_CLASS_UID, sop_class_uid),
        us(tags::COMMAND_FIELD, C_STORE_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::PRIORITY, PRIORITY_MEDIUM),
        us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
        ui(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance_uid),
    ]);
    let mut out = Vec::with_capacity(256);
    command
        .write_dataset_with_ts(&mut out, &IMPLICIT_VR_LE)
        .map_err(|e| ForwardError::EncodeCommand(e.to_string()))?;
    Ok(out)
}

/// Parses a response command set received from the destination.
pub(crate) fn parse_response(bytes: &[u8]) -> Result<StoreResponse, ForwardError> {
    let command = InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LE).map_err(|e| {
        ForwardError::Protocol {
            detail: format!("undecodable response command: {e}"),
        }
    })?;
    let required = |tag, name: &str| -> Result<u16, ForwardError> {
        command
            .get(tag)
            .and_then(|element| element.to_int::<u16>().ok())
            .ok_or_else(|| ForwardError::Protocol {
                detail: format!("response command lacks a valid {name}"),
            })
    };
    let error_comment = command
        .get(tags::ERROR_COMMENT)
        .and_then(|element| element.to_str().ok())
        .map(|text| text.trim_end_matches(['\0', ' ']).to_string())
        .filter(|text| !text.is_empty());
    Ok(StoreResponse {
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

fn ui(tag: dicom_core::Tag, uid: &str) -> dicom_object::mem::InMemElement {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(uid))
}

fn us(tag: dicom_core::Tag, value: u16) -> dicom_object::mem::InMemElement {
    DataElement::new(tag, VR::US, dicom_value!(U16, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_request_round_trips_and_a_request_is_not_a_response() {
        let bytes = c_store_rq(7, "1.2.840.10008.5.1.4.1.1.7", "2.25.1").expect("encodes");
        // (0000,0000) UL in implicit VR: tag, length 4, then the group length.
        assert_eq!(&bytes[..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
        assert!(matches!(
            parse_response(&bytes),
            Err(ForwardError::Protocol { .. })
        ));
        assert!(matches!(
            parse_response(&[1, 2, 3]),
            Err(ForwardError::Protocol { .. })
        ));
    }
}
