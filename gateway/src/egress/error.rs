//! `ForwardError`: what can go wrong sending a result to a destination, and
//! whether the delivery should be tried again or dead-lettered.

use std::path::PathBuf;
use std::time::Duration;

use dicom_ul::association::Error as UlError;
use dicom_ul::pdu::{AssociationRJResult, AssociationRJSource};
use dimse_message::MessageError;
use dimse_message::association::{
    UpperLayerFailure, rejection_result_text as rj_result_text,
    rejection_source_text as rj_source_text,
};
use dimse_message::status;

/// What to do with a delivery after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: try again after the backoff (until attempts run out).
    Retry,
    /// Permanent: trying again cannot help without an operator.
    DeadLetter,
}

/// Whose fault a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The destination or the network to it.
    Destination,
    /// Our side: the file to send, our configuration, a bug.
    Gateway,
}

/// Errors of the C-STORE SCU.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot connect to destination: {source}")]
    Connect {
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {after:?} while trying to {operation}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    #[error("association rejected ({}) by {}: {reason}", rj_result_text(.result), rj_source_text(.reason))]
    Rejected {
        result: AssociationRJResult,
        reason: AssociationRJSource,
    },
    #[error("association aborted: {detail}")]
    Aborted { detail: String },
    #[error("i/o error while trying to {operation}: {source}")]
    Io {
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("protocol violation by destination: {detail}")]
    Protocol { detail: String },
    #[error("upper layer failure while trying to {operation}: {source}")]
    UpperLayer {
        operation: &'static str,
        #[source]
        source: Box<UlError>,
    },
    /// The destination answered the C-STORE with a failure status.
    #[error("destination answered status {status:#06x}{}", comment_text(.comment))]
    Status {
        status: u16,
        comment: Option<String>,
    },
    /// The destination does not take this SOP class in this transfer syntax.
    #[error(
        "destination accepted no presentation context for SOP class {sop_class_uid} in transfer syntax {transfer_syntax_uid}"
    )]
    NoPresentationContext {
        sop_class_uid: String,
        transfer_syntax_uid: String,
    },
    #[error("cannot read `{path}`: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a DICOM file we can send: {detail}")]
    NotDicom { path: PathBuf, detail: String },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("cannot encode command set: {0}")]
    EncodeCommand(String),
}

impl ForwardError {
    /// Retry for what may pass (network, busy or rejecting peer, 0xA7xx);
    /// dead-letter for what will fail the same way again.
    pub fn disposition(&self) -> Disposition {
        match self {
            ForwardError::Connect { .. }
            | ForwardError::Timeout { .. }
            | ForwardError::Rejected { .. }
            | ForwardError::Aborted { .. }
            | ForwardError::Io { .. }
            | ForwardError::Protocol { .. }
            | ForwardError::UpperLayer { .. } => Disposition::Retry,
            ForwardError::Status { status, .. } if status::is_out_of_resources(*status) => {
                Disposition::Retry
            }
            ForwardError::Status { .. }
            | ForwardError::NoPresentationContext { .. }
            | ForwardError::File { .. }
            | ForwardError::NotDicom { .. }
            | ForwardError::InvalidOption(_)
            | ForwardError::EncodeCommand(_) => Disposition::DeadLetter,
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            ForwardError::File { .. }
            | ForwardError::NotDicom { .. }
            | ForwardError::InvalidOption(_)
            | ForwardError::EncodeCommand(_) => Fault::Gateway,
            _ => Fault::Destination,
        }
    }

    /// The DIMSE status the destination answered, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ForwardError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Translate a dicom-ul error; `timeout` is the limit the operation ran under.
    pub(crate) fn from_upper_layer(
        operation: &'static str,
        timeout: Duration,
        error: UlError,
    ) -> Self {
        match UpperLayerFailure::classify(operation, "destination", error) {
            UpperLayerFailure::Rejected { result, reason } => {
                ForwardError::Rejected { result, reason }
            }
            UpperLayerFailure::Aborted { detail } => ForwardError::Aborted { detail },
            UpperLayerFailure::Protocol { detail } => ForwardError::Protocol { detail },
            UpperLayerFailure::Timeout => ForwardError::Timeout {
                operation,
                after: timeout,
            },
            UpperLayerFailure::Connect(source) => ForwardError::Connect { source },
            UpperLayerFailure::Io(source) => ForwardError::Io { operation, source },
            UpperLayerFailure::NoAcceptedPresentationContexts => {
                ForwardError::NoPresentationContext {
                    sop_class_uid: "(all proposed)".into(),
                    transfer_syntax_uid: "(all proposed)".into(),
                }
            }
            UpperLayerFailure::Other(source) => ForwardError::UpperLayer { operation, source },
        }
    }
}

impl From<MessageError> for ForwardError {
    fn from(error: MessageError) -> Self {
        match error {
            MessageError::EncodeCommand(source) => ForwardError::EncodeCommand(source.to_string()),
            MessageError::Protocol { detail } => ForwardError::Protocol { detail },
        }
    }
}

fn comment_text(comment: &Option<String>) -> String {
    comment
        .as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> ForwardError {
        ForwardError::Status {
            status,
            comment: None,
        }
    }

    #[test]
    fn statuses_are_sorted_into_retry_and_dead_letter() {
        assert_eq!(status(0xA700).disposition(), Disposition::Retry);
        assert_eq!(status(0xA7FF).disposition(), Disposition::Retry);
        assert_eq!(status(0xA900).disposition(), Disposition::DeadLetter);
        assert_eq!(status(0xC000).disposition(), Disposition::DeadLetter);
        assert_eq!(status(0x0110).disposition(), Disposition::DeadLetter);
        assert_eq!(status(0xC000).status(), Some(0xC000));
    }

    #[test]
    fn network_failures_retry_and_file_failures_do_not() {
        let refused = ForwardError::Connect {
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert_eq!(refused.disposition(), Disposition::Retry);
        assert_eq!(refused.fault(), Fault::Destination);
        let missing = ForwardError::File {
            path: "x.dcm".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(missing.disposition(), Disposition::DeadLetter);
        assert_eq!(missing.fault(), Fault::Gateway);
        let rejected = ForwardError::Rejected {
            result: AssociationRJResult::Permanent,
            reason: AssociationRJSource::ServiceUser(
                dicom_ul::pdu::AssociationRJServiceUserReason::CalledAETitleNotRecognized,
            ),
        };
        assert_eq!(rejected.disposition(), Disposition::Retry);
        assert!(rejected.to_string().contains("called AE title"));
    }

    fn c_store_rq(
        message_id: u16,
        sop_class_uid: &str,
        sop_instance_uid: &str,
    ) -> Result<Vec<u8>, ForwardError> {
        Ok(dimse_message::command::c_store_rq(
            message_id,
            sop_class_uid,
            sop_instance_uid,
        )?)
    }

    fn parse_response(bytes: &[u8]) -> Result<dimse_message::DimseResponse, ForwardError> {
        Ok(dimse_message::parse_response(bytes)?)
    }

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
