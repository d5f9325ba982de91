//! DIMSE command sets: decoding requests into [`DimseCommand`] and building
//! responses. Command sets are always implicit VR little endian (PS3.7 6.3.1).
//! The constants come from the shared message layer (`dimse-message`); the
//! decode of a peer's bytes stays here because it runs our bounded validator
//! before dicom-rs parses anything.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::store::uid::trim_uid;
use crate::store::validate;

use dimse_message::command::{IMPLICIT_VR_LE_UID, NO_DATA_SET};

/// Command Field values (PS3.7 E.1), from the shared message layer.
pub use dimse_message::command::command_field;

/// Longest Error Comment (LO) we send.
const ERROR_COMMENT_MAX: usize = 64;

/// A decoded DIMSE request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DimseCommand {
    Echo {
        message_id: u16,
        sop_class_uid: String,
    },
    Store {
        message_id: u16,
        sop_class_uid: String,
        sop_instance_uid: String,
        has_data_set: bool,
    },
    /// A command we do not perform; answered with 0x0211.
    Unsupported {
        command_field: u16,
        message_id: u16,
        has_data_set: bool,
    },
}

/// Why a command set could not be decoded. The association is aborted: we
/// cannot even tell which message to answer.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("command set does not parse: {0}")]
    Unparseable(String),
    #[error("command set lacks {0}")]
    Missing(&'static str),
    #[error("command set has a response command field {0:#06x} where a request was expected")]
    NotARequest(u16),
}

impl DimseCommand {
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let ts =
            TransferSyntaxRegistry
                .get(IMPLICIT_VR_LE_UID)
                .ok_or(CommandError::Unparseable(
                    "implicit VR little endian unavailable".into(),
                ))?;
        // The bounded walk comes first: the parser allocates a declared
        // length before reading it and recurses into sequences.
        validate::validate_command_set(bytes)
            .map_err(|violation| CommandError::Unparseable(violation.to_string()))?;
        let obj = InMemDicomObject::read_dataset_with_ts(bytes, ts)
            .map_err(|e| CommandError::Unparseable(e.to_string()))?;
        Self::from_command(&obj)
    }

    pub fn from_command(obj: &InMemDicomObject) -> Result<Self, CommandError> {
        let u16_of = |tag: Tag| obj.get(tag).and_then(|e| e.to_int::<u16>().ok());
        let uid_of = |tag: Tag| {
            obj.get(tag)
                .and_then(|e| e.to_str().ok())
                .map(|s| trim_uid(&s).to_string())
        };
        let command_field =
            u16_of(tags::COMMAND_FIELD).ok_or(CommandError::Missing("Command Field"))?;
        if command_field & command_field::RESPONSE_BIT != 0 {
            return Err(CommandError::NotARequest(command_field));
        }
        let message_id = u16_of(tags::MESSAGE_ID).ok_or(CommandError::Missing("Message ID"))?;
        let has_data_set = u16_of(tags::COMMAND_DATA_SET_TYPE)
            .ok_or(CommandError::Missing("Command Data Set Type"))?
            != NO_DATA_SET;
        Ok(match command_field {
            command_field::C_ECHO_RQ => DimseCommand::Echo {
                message_id,
                sop_class_uid: uid_of(tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default(),
            },
            command_field::C_STORE_RQ => DimseCommand::Store {
                message_id,
                sop_class_uid: uid_of(tags::AFFECTED_SOP_CLASS_UID)
                    .ok_or(CommandError::Missing("Affected SOP Class UID"))?,
                sop_instance_uid: uid_of(tags::AFFECTED_SOP_INSTANCE_UID)
                    .ok_or(CommandError::Missing("Affected SOP Instance UID"))?,
                has_data_set,
            },
            other => DimseCommand::Unsupported {
                command_field: other,
                message_id,
                has_data_set,
            },
        })
    }

    pub fn message_id(&self) -> u16 {
        match self {
            Self::Echo { message_id, .. }
            | Self::Store { message_id, .. }
            | Self::Unsupported { message_id, .. } => *message_id,
        }
    }

    pub fn has_data_set(&self) -> bool {
        match self {
            Self::Echo { .. } => false,
            Self::Store { has_data_set, .. } | Self::Unsupported { has_data_set, .. } => {
                *has_data_set
            }
        }
    }

    /// A bounded label for metrics.
    pub fn as_label(&self) -> &'static str {
        match self {
            Self::Echo { .. } => "c_echo",
            Self::Store { .. } => "c_store",
            Self::Unsupported { .. } => "unsupported",
        }
    }
}

/// A response command set, ready to encode.
pub struct Response<'a> {
    pub command_field: u16,
    pub message_id: u16,
    pub sop_class_uid: Option<&'a str>,
    pub sop_instance_uid: Option<&'a str>,
    pub status: u16,
    pub error_comment: Option<&'a str>,
}

impl Response<'_> {
    /// Encodes the command set (with its group length) in implicit VR LE.
    pub fn encode(&self) -> Vec<u8> {
        let mut elements = Vec::with_capacity(7);
        if let Some(uid) = self.sop_class_uid {
            elements.push(DataElement::new(
                tags::AFFECTED_SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from(uid),
            ));
        }
        elements.push(DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(self.command_field),
        ));
        elements.push(DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            PrimitiveValue::from(self.message_id),
        ));
        elements.push(DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(NO_DATA_SET),
        ));
        elements.push(DataElement::new(
            tags::STATUS,
            VR::US,
            PrimitiveValue::from(self.status),
        ));
        if let Some(uid) = self.sop_instance_uid {
            elements.push(DataElement::new(
                tags::AFFECTED_SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(uid),
            ));
        }
        if let Some(comment) = self.error_comment {
            let comment: String = comment
                .chars()
                .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '\\')
                .take(ERROR_COMMENT_MAX)
                .collect();
            elements.push(DataElement::new(
                tags::ERROR_COMMENT,
                VR::LO,
                PrimitiveValue::from(comment),
            ));
        }
        let obj = InMemDicomObject::command_from_element_iter(elements);
        let mut out = Vec::with_capacity(256);
        let ts = TransferSyntaxRegistry
            .get(IMPLICIT_VR_LE_UID)
            .expect("implicit VR LE is built in");
        obj.write_dataset_with_ts(&mut out, ts)
            .expect("writing to a Vec does not fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(field: u16, extra: Vec<InMemElementAlias>) -> Vec<u8> {
        let mut elements = vec![
            DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(field)),
            DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(7u16)),
            DataElement::new(
                tags::COMMAND_DATA_SET_TYPE,
                VR::US,
                PrimitiveValue::from(0x0000u16),
            ),
        ];
        elements.extend(extra);
        let obj = InMemDicomObject::command_from_element_iter(elements);
        let mut out = Vec::new();
        obj.write_dataset_with_ts(
            &mut out,
            TransferSyntaxRegistry.get(IMPLICIT_VR_LE_UID).unwrap(),
        )
        .unwrap();
        out
    }

    type InMemElementAlias = dicom_object::mem::InMemElement;

    #[test]
    fn decodes_c_store_request() {
        let bytes = request(
            command_field::C_STORE_RQ,
            vec![
                DataElement::new(
                    tags::AFFECTED_SOP_CLASS_UID,
                    VR::UI,
                    PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.2\0"),
                ),
                DataElement::new(
                    tags::AFFECTED_SOP_INSTANCE_UID,
                    VR::UI,
                    PrimitiveValue::from("1.2.3"),
                ),
            ],
        );
        let command = DimseCommand::decode(&bytes).unwrap();
        assert_eq!(
            command,
            DimseCommand::Store {
                message_id: 7,
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                sop_instance_uid: "1.2.3".into(),
                has_data_set: true
            }
        );
    }

    #[test]
    fn store_without_instance_uid_is_an_error() {
        let bytes = request(command_field::C_STORE_RQ, vec![]);
        assert!(matches!(
            DimseCommand::decode(&bytes),
            Err(CommandError::Missing(_))
        ));
    }

    #[test]
    fn unknown_commands_are_unsupported_not_errors() {
        let bytes = request(0x0020, vec![]); // C-FIND-RQ
        assert!(matches!(
            DimseCommand::decode(&bytes).unwrap(),
            DimseCommand::Unsupported {
                command_field: 0x0020,
                message_id: 7,
                has_data_set: true
            }
        ));
        assert!(DimseCommand::decode(b"\x01\x02garbage").is_err());
    }

    #[test]
    fn nested_foreign_or_lying_elements_are_refused_before_parsing() {
        // (0008,1115) sequence, then an item, both of undefined length: 4,000 deep.
        let level = [
            0x08, 0x00, 0x15, 0x11, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF,
            0xFF, 0xFF,
        ];
        let nested = level.repeat(4_000);
        let mut lying = request(command_field::C_ECHO_RQ, vec![]);
        // (0000,1000) Affected SOP Instance UID, declaring 4 GiB.
        lying.extend([0x00, 0x00, 0x00, 0x10, 0xF0, 0xFF, 0xFF, 0xFF]);
        let mut undefined = request(command_field::C_ECHO_RQ, vec![]);
        undefined.extend([0x00, 0x00, 0x00, 0x10, 0xFF, 0xFF, 0xFF, 0xFF]);
        // (0000,0000) Command Group Length (UL) of two bytes: the parser
        // would read the next element's header two bytes early.
        let mut misaligned = vec![0, 0, 0, 0, 2, 0, 0, 0, 0, 0];
        misaligned.extend(request(command_field::C_ECHO_RQ, vec![]));
        for bytes in [nested, lying, undefined, misaligned] {
            assert!(matches!(
                DimseCommand::decode(&bytes),
                Err(CommandError::Unparseable(_))
            ));
        }
    }

    #[test]
    fn response_round_trips() {
        let bytes = Response {
            command_field: command_field::C_ECHO_RSP,
            message_id: 9,
            sop_class_uid: Some("1.2.840.10008.1.1"),
            sop_instance_uid: None,
            status: 0,
            error_comment: Some("fine\\\u{7}"),
        }
        .encode();
        let ts = TransferSyntaxRegistry.get(IMPLICIT_VR_LE_UID).unwrap();
        let obj = InMemDicomObject::read_dataset_with_ts(&bytes[..], ts).unwrap();
        assert_eq!(
            obj.get(tags::MESSAGE_ID_BEING_RESPONDED_TO)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            9
        );
        assert_eq!(
            obj.get(tags::ERROR_COMMENT)
                .unwrap()
                .to_str()
                .unwrap()
                .trim(),
            "fine"
        );
        assert!(obj.get(tags::COMMAND_GROUP_LENGTH).is_some());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary command bytes decode or fail with a typed error.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = DimseCommand::decode(&bytes);
        }
    }
}
