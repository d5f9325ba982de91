//! Association negotiation: what we accept (Verification, every standard
//! storage SOP class, the transfer syntaxes we store as received) and our
//! answer to an A-ASSOCIATE-RQ.
//!
//! We decide on the request ourselves rather than through dicom-ul's
//! `ServerAssociationOptions::establish_async`: that call reads the request
//! and writes its answer in one step, and its access-control hook can only
//! refuse permanently (service user). Admission needs a step in between:
//! only a request that everything here accepts takes an association slot,
//! and with none free the peer must get the transient "local limit exceeded"
//! rejection (2,3,2), so that it retries. dicom-ul still parses and encodes
//! the PDUs; `mod.rs` reads the request under the establish deadline.

use std::collections::HashMap;
use std::net::IpAddr;

use bytes::BytesMut;
use tokio::io::AsyncRead;

use dicom_dictionary_std::uids;
use dicom_ul::Pdu;
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationAC, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason,
    AssociationRJSource, PresentationContextProposed, PresentationContextResult,
    PresentationContextResultReason, UserVariableItem,
};

use super::storage_classes::STORAGE_SOP_CLASSES;
use crate::sites::{SiteRegistry, SiteRejection};
use crate::store::uid::trim_uid;
use crate::store::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

/// Transfer syntaxes we accept, in our order of preference. Data sets are
/// stored exactly as received (no transcoding), so every one of these only
/// needs its header to be parseable. Deflated needs the `deflate` feature of
/// dicom-transfer-syntax-registry, which the workspace enables.
pub const TRANSFER_SYNTAXES: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2.1", "Explicit VR Little Endian"),
    ("1.2.840.10008.1.2", "Implicit VR Little Endian"),
    (
        "1.2.840.10008.1.2.1.99",
        "Deflated Explicit VR Little Endian",
    ),
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian (retired)"),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)"),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)"),
    (
        "1.2.840.10008.1.2.4.57",
        "JPEG Lossless, Non-Hierarchical (Process 14)",
    ),
    (
        "1.2.840.10008.1.2.4.70",
        "JPEG Lossless, First-Order Prediction (Process 14, SV1)",
    ),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 (Lossless Only)"),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
    (
        "1.2.840.10008.1.2.4.201",
        "High-Throughput JPEG 2000 (Lossless Only)",
    ),
    (
        "1.2.840.10008.1.2.4.202",
        "High-Throughput JPEG 2000 with RPCL (Lossless Only)",
    ),
    ("1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000"),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
];

pub fn is_storage_sop_class(uid: &str) -> bool {
    STORAGE_SOP_CLASSES.iter().any(|(u, _)| *u == uid)
}

/// Our answer to the first PDU of a connection.
#[derive(Debug)]
pub enum Negotiated {
    /// Send `answer` (A-ASSOCIATE-AC) once an association slot is held.
    Accepted(Acceptance),
    /// Send `answer` (A-ASSOCIATE-RJ, A-ABORT or A-RELEASE-RP) and close.
    Refused { answer: Pdu, outcome: &'static str },
}

/// An association request we accept.
#[derive(Debug)]
pub struct Acceptance {
    pub site: String,
    pub calling_ae: String,
    /// Accepted presentation contexts by ID; the rejected ones are only in `answer`.
    pub contexts: HashMap<u8, AcceptedContext>,
    pub answer: Pdu,
}

/// A presentation context the association may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedContext {
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

/// Who we are, for negotiation: our AE title is checked by `sites`.
pub struct Acceptor<'a> {
    pub sites: &'a SiteRegistry,
    pub max_pdu_length: u32,
}

impl Acceptor<'_> {
    /// Decides on the first PDU a peer at `peer` sent (PS3.8 9.3.2). Pure:
    /// the caller reads the PDU, holds the slots and writes the answer, so
    /// the association limit can answer "busy" with its own transient
    /// A-ASSOCIATE-RJ after everything here said yes.
    pub fn negotiate(&self, first: Pdu, peer: IpAddr) -> Negotiated {
        let rq = match first {
            Pdu::AssociationRQ(rq) => rq,
            // What dicom-ul's acceptor answers too: a release before any
            // association is released, anything else aborted.
            Pdu::ReleaseRQ => return refused(Pdu::ReleaseRP, FAILED_NEGOTIATION),
            Pdu::Unknown { .. } => {
                return refused(abort(AbortReason::UnrecognizedPdu), FAILED_NEGOTIATION);
            }
            _ => return refused(abort(AbortReason::UnexpectedPdu), FAILED_NEGOTIATION),
        };
        if rq.protocol_version & PROTOCOL_VERSION_1 == 0 {
            return refused(
                permanent_rejection(AssociationRJServiceUserReason::NoReasonGiven),
                FAILED_NEGOTIATION,
            );
        }
        if trim_uid(&rq.application_context_name) != DICOM_APPLICATION_CONTEXT {
            return refused(
                permanent_rejection(
                    AssociationRJServiceUserReason::ApplicationContextNameNotSupported,
                ),
                FAILED_NEGOTIATION,
            );
        }
        let site = match self
            .sites
            .resolve(&rq.calling_ae_title, &rq.called_ae_title, peer)
        {
            Ok(site) => site,
            Err(rejection) => {
                let reason = match rejection {
                    SiteRejection::WrongCalledAe => {
                        AssociationRJServiceUserReason::CalledAETitleNotRecognized
                    }
                    // A known AE from a disallowed address is answered like
                    // an unknown AE, so a prober learns nothing about which
                    // titles exist.
                    SiteRejection::UnknownCallingAe | SiteRejection::AddressNotAllowed => {
                        AssociationRJServiceUserReason::CallingAETitleNotRecognized
                    }
                };
                return refused(permanent_rejection(reason), rejection.as_label());
            }
        };
        let mut contexts = HashMap::new();
        let results = rq
            .presentation_contexts
            .iter()
            .map(|pc| {
                let (reason, transfer_syntax) = choose(pc);
                if reason == PresentationContextResultReason::Acceptance {
                    contexts.insert(
                        pc.id,
                        AcceptedContext {
                            abstract_syntax: trim_uid(&pc.abstract_syntax).to_string(),
                            transfer_syntax: transfer_syntax.to_string(),
                        },
                    );
                }
                PresentationContextResult {
                    id: pc.id,
                    reason,
                    transfer_syntax: transfer_syntax.to_string(),
                }
            })
            .collect();
        // Role selection, extended negotiation and asynchronous operations
        // are not offered: leaving their items out of the answer declines them.
        let answer = Pdu::AssociationAC(AssociationAC {
            protocol_version: PROTOCOL_VERSION_1,
            calling_ae_title: rq.calling_ae_title.clone(),
            called_ae_title: rq.called_ae_title,
            application_context_name: rq.application_context_name,
            presentation_contexts: results,
            user_variables: vec![
                UserVariableItem::MaxLength(self.max_pdu_length),
                UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.into()),
                UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION_NAME.into()),
            ],
        });
        Negotiated::Accepted(Acceptance {
            site,
            calling_ae: rq.calling_ae_title.trim().to_string(),
            contexts,
            answer,
        })
    }
}

/// First allocation for reading an A-ASSOCIATE-RQ; it grows to at most
/// `max_pdu_length` as the request arrives (real ones are a few KiB).
const REQUEST_BUFFER: usize = 16 * 1024;

/// Reads the first PDU of a connection with dicom-ul's strict reader: a PDU
/// announcing more than `max_pdu_length` is refused on its header, before
/// its body is buffered. Returns the PDU and any bytes read past it.
pub async fn read_request<S>(
    stream: &mut S,
    max_pdu_length: u32,
) -> Result<(Pdu, BytesMut), dicom_ul::association::Error>
where
    S: AsyncRead + Unpin,
{
    let mut buffer = BytesMut::with_capacity(REQUEST_BUFFER);
    let pdu =
        dicom_ul::association::read_pdu_from_wire_async(stream, &mut buffer, max_pdu_length, true)
            .await?;
    Ok((pdu, buffer))
}

/// A-ASSOCIATE-RJ transient, service provider (presentation), local limit
/// exceeded (2,3,2): the association limit is reached, try again later.
pub fn busy_rejection() -> Pdu {
    Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    })
}

/// Protocol version 1 is bit 0; a receiver tests only that bit (PS3.8 9.3.2).
const PROTOCOL_VERSION_1: u16 = 0x0001;
/// The DICOM Application Context Name (PS3.7 A.2.1).
const DICOM_APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";
/// The transfer syntax named in a rejected presentation context's result
/// (its value is not significant there; PS3.8 9.3.3.2).
const REJECTED_CONTEXT_TRANSFER_SYNTAX: &str = "1.2.840.10008.1.2";
/// Outcome label for requests refused on protocol grounds.
const FAILED_NEGOTIATION: &str = "failed_negotiation";

type AbortReason = AbortRQServiceProviderReason;

/// Our result for one proposed presentation context: the first transfer
/// syntax the peer proposed that we store as received.
fn choose(pc: &PresentationContextProposed) -> (PresentationContextResultReason, &str) {
    let abstract_syntax = trim_uid(&pc.abstract_syntax);
    if abstract_syntax != uids::VERIFICATION && !is_storage_sop_class(abstract_syntax) {
        return (
            PresentationContextResultReason::AbstractSyntaxNotSupported,
            REJECTED_CONTEXT_TRANSFER_SYNTAX,
        );
    }
    pc.transfer_syntaxes
        .iter()
        .map(|ts| trim_uid(ts))
        .find(|ts| TRANSFER_SYNTAXES.iter().any(|(ours, _)| ours == ts))
        .map(|ts| (PresentationContextResultReason::Acceptance, ts))
        .unwrap_or((
            PresentationContextResultReason::TransferSyntaxesNotSupported,
            REJECTED_CONTEXT_TRANSFER_SYNTAX,
        ))
}

fn refused(answer: Pdu, outcome: &'static str) -> Negotiated {
    Negotiated::Refused { answer, outcome }
}

fn permanent_rejection(reason: AssociationRJServiceUserReason) -> Pdu {
    Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Permanent,
        source: AssociationRJSource::ServiceUser(reason),
    })
}

fn abort(reason: AbortReason) -> Pdu {
    Pdu::AbortRQ {
        source: AbortRQSource::ServiceProvider(reason),
    }
}

#[cfg(test)]
mod tests;
