//! Association failures as the SCUs report them: wording for an
//! A-ASSOCIATE-RJ (PS3.8 9.3.4) and dicom-ul's errors sorted into the cases
//! callers act on, so a failure reads the same from egress and the load tool.

use dicom_ul::Pdu;
use dicom_ul::association::Error as UlError;
use dicom_ul::pdu::{AssociationRJResult, AssociationRJSource};

/// "permanent" or "transient".
pub fn rejection_result_text(result: &AssociationRJResult) -> &'static str {
    match result {
        AssociationRJResult::Permanent => "permanent",
        AssociationRJResult::Transient => "transient",
    }
}

/// Who rejected the association.
pub fn rejection_source_text(source: &AssociationRJSource) -> &'static str {
    match source {
        AssociationRJSource::ServiceUser(_) => "service user",
        AssociationRJSource::ServiceProviderASCE(_) => "service provider (ACSE)",
        AssociationRJSource::ServiceProviderPresentation(_) => "service provider (presentation)",
    }
}

/// A dicom-ul association error sorted into the cases an SCU acts on, with
/// the wording both SCUs use; each folds it into its own error type.
#[derive(Debug)]
pub enum UpperLayerFailure {
    /// A-ASSOCIATE-RJ.
    Rejected {
        result: AssociationRJResult,
        reason: AssociationRJSource,
    },
    /// The peer aborted, or sent A-ABORT where another PDU was expected.
    Aborted { detail: String },
    /// The peer sent a PDU the exchange does not allow.
    Protocol { detail: String },
    /// dicom-ul's own deadline passed.
    Timeout,
    /// The TCP connection could not be made.
    Connect(std::io::Error),
    /// Reading or writing the connection failed, or the peer closed it.
    Io(std::io::Error),
    /// The peer accepted the association but none of the proposed contexts.
    NoAcceptedPresentationContexts,
    /// Anything else dicom-ul reports.
    Other(Box<UlError>),
}

impl UpperLayerFailure {
    /// Sorts `error`, raised while trying to `operation`; `peer` names the
    /// other side in messages ("destination", "peer").
    pub fn classify(operation: &str, peer: &str, error: UlError) -> Self {
        match error {
            UlError::Rejected { association_rj, .. } => UpperLayerFailure::Rejected {
                result: association_rj.result,
                reason: association_rj.source,
            },
            UlError::Aborted { .. } => UpperLayerFailure::Aborted {
                detail: format!("{peer} aborted while trying to {operation}"),
            },
            UlError::UnexpectedPdu { pdu, .. } => match *pdu {
                Pdu::AbortRQ { source } => UpperLayerFailure::Aborted {
                    detail: format!("A-ABORT ({source:?}) while trying to {operation}"),
                },
                other => UpperLayerFailure::Protocol {
                    detail: format!(
                        "unexpected {} while trying to {operation}",
                        other.short_description()
                    ),
                },
            },
            UlError::Timeout { .. } => UpperLayerFailure::Timeout,
            UlError::Connect { source, .. } => UpperLayerFailure::Connect(source),
            UlError::WireSend { source, .. } | UlError::WireRead { source, .. } => {
                UpperLayerFailure::Io(source)
            }
            UlError::ConnectionClosed { .. } => UpperLayerFailure::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("connection closed by {peer}"),
            )),
            UlError::NoAcceptedPresentationContexts { .. } => {
                UpperLayerFailure::NoAcceptedPresentationContexts
            }
            other => UpperLayerFailure::Other(Box::new(other)),
        }
    }
}
