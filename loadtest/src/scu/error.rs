//! What can go wrong talking to a storage SCP, sorted by whose fault it is
//! so a load run can tell a refused association from a dropped connection.

use std::time::Duration;

use dicom_ul::association::Error as UlError;
use dicom_ul::pdu::{AssociationRJResult, AssociationRJSource};
use dimse_message::MessageError;
use dimse_message::association::{
    UpperLayerFailure, rejection_result_text as result_text, rejection_source_text as source_text,
};

use crate::synth::SynthError;

/// Errors of [`StoreClient`](super::StoreClient).
#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    /// The peer answered A-ASSOCIATE-RQ with A-ASSOCIATE-RJ.
    #[error("association rejected ({}) by {}: {reason}", result_text(.result), source_text(.reason))]
    Rejected {
        /// Permanent or transient.
        result: AssociationRJResult,
        /// Who rejected it (service user, ACSE or presentation provider) and why.
        reason: AssociationRJSource,
    },
    /// The peer accepted the association but none of the proposed contexts.
    #[error("peer accepted no presentation context")]
    NoAcceptedPresentationContexts,
    /// A store or echo was attempted for an abstract syntax the peer did
    /// not accept.
    #[error("no accepted presentation context for SOP class {sop_class_uid}")]
    NoPresentationContext { sop_class_uid: String },
    /// The peer sent A-ABORT (or closed the association mid-exchange).
    #[error("association aborted: {detail}")]
    Aborted { detail: String },
    #[error("i/o error while trying to {operation}")]
    Io {
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {after:?} while trying to {operation}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    /// The peer broke the DIMSE or upper-layer protocol.
    #[error("protocol violation by peer: {detail}")]
    Protocol { detail: String },
    /// Any other upper-layer failure reported by dicom-ul.
    #[error("upper layer failure while trying to {operation}")]
    UpperLayer {
        operation: &'static str,
        #[source]
        source: Box<UlError>,
    },
    /// Our own options were unusable (for example an AE title over 16 characters).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The instance could not be encoded in the negotiated transfer syntax.
    #[error("could not encode instance")]
    Encode(#[from] SynthError),
    /// A command set could not be encoded (a bug on our side, not the peer's).
    #[error("could not encode command set")]
    EncodeCommand(#[source] Box<dicom_object::WriteError>),
    /// An earlier failure left the association in an unknown state.
    #[error("association unusable after an earlier failure")]
    Unusable,
}

impl ScuError {
    /// Whether trying again (on a new association) may succeed: true for
    /// transient conditions, false for configuration mistakes on either side.
    pub fn is_retryable(&self) -> bool {
        match self {
            ScuError::Rejected { result, .. } => *result == AssociationRJResult::Transient,
            ScuError::Aborted { .. }
            | ScuError::Io { .. }
            | ScuError::Timeout { .. }
            | ScuError::Unusable => true,
            ScuError::NoAcceptedPresentationContexts
            | ScuError::NoPresentationContext { .. }
            | ScuError::Protocol { .. }
            | ScuError::UpperLayer { .. }
            | ScuError::InvalidOption(_)
            | ScuError::Encode(_)
            | ScuError::EncodeCommand(_) => false,
        }
    }

    /// A short, bounded label for grouping failures in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            ScuError::Rejected { .. } => "rejected",
            ScuError::NoAcceptedPresentationContexts | ScuError::NoPresentationContext { .. } => {
                "no presentation context"
            }
            ScuError::Aborted { .. } => "aborted",
            ScuError::Io { .. } => "i/o",
            ScuError::Timeout { .. } => "timeout",
            ScuError::Protocol { .. } => "protocol",
            ScuError::UpperLayer { .. } => "upper layer",
            ScuError::InvalidOption(_) => "invalid option",
            ScuError::Encode(_) | ScuError::EncodeCommand(_) => "encode",
            ScuError::Unusable => "unusable association",
        }
    }

    /// Translate a dicom-ul error into the cases callers act on; `timeout`
    /// is the limit the operation ran under.
    pub(crate) fn from_upper_layer(
        operation: &'static str,
        timeout: Duration,
        error: UlError,
    ) -> Self {
        match UpperLayerFailure::classify(operation, "peer", error) {
            UpperLayerFailure::Rejected { result, reason } => ScuError::Rejected { result, reason },
            UpperLayerFailure::Aborted { detail } => ScuError::Aborted { detail },
            UpperLayerFailure::Protocol { detail } => ScuError::Protocol { detail },
            UpperLayerFailure::Timeout => ScuError::Timeout {
                operation,
                after: timeout,
            },
            UpperLayerFailure::Connect(source) | UpperLayerFailure::Io(source) => {
                ScuError::Io { operation, source }
            }
            UpperLayerFailure::NoAcceptedPresentationContexts => {
                ScuError::NoAcceptedPresentationContexts
            }
            UpperLayerFailure::Other(source) => ScuError::UpperLayer { operation, source },
        }
    }
}

impl From<MessageError> for ScuError {
    fn from(error: MessageError) -> Self {
        match error {
            MessageError::EncodeCommand(source) => ScuError::EncodeCommand(source),
            MessageError::Protocol { detail } => ScuError::Protocol { detail },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::AssociationRJServiceUserReason;

    #[test]
    fn rejection_names_result_source_and_reason() {
        let error = ScuError::Rejected {
            result: AssociationRJResult::Permanent,
            reason: AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CalledAETitleNotRecognized,
            ),
        };
        assert_eq!(
            error.to_string(),
            "association rejected (permanent) by service user: called AE title not recognized"
        );
        assert!(!error.is_retryable());
    }

    #[test]
    fn malformed_responses_are_protocol_errors() {
        let parse_response =
            |bytes: &[u8]| dimse_message::parse_response(bytes).map_err(ScuError::from);
        assert!(matches!(
            parse_response(&[1, 2, 3]),
            Err(ScuError::Protocol { .. })
        ));
        let echo = dimse_message::command::c_echo_rq(1).expect("encodes");
        // A request has no Status: not a response.
        assert!(matches!(
            parse_response(&echo),
            Err(ScuError::Protocol { .. })
        ));
    }
}
