//! Our own C-STORE / C-ECHO SCU, built on dicom-ul's async association.
//!
//! It plays the modality that sends to the gateway. Written here rather than
//! shelling out to dcmtk so the load test can run many associations in one
//! process, measure each acknowledgement, and deliberately send malformed
//! requests (see [`StoreClient::store_raw`]).

mod error;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dicom_dictionary_std::uids;
use dicom_ul::Pdu;
use dicom_ul::association::ClientAssociationOptions;
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::PDataValueType;
use tokio::net::TcpStream;

use crate::synth::SynthInstance;
use dimse_message::command::{self, DimseResponse, MAX_COMMAND_LEN, command_field};
use dimse_message::pdata::{self, Fragment};

pub use dicom_ul::pdu::{
    AssociationRJResult, AssociationRJServiceProviderASCEReason,
    AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason,
    AssociationRJSource,
};
pub use error::ScuError;

/// Default limit for connecting and for each DIMSE exchange; generous
/// because a gateway that fsyncs under load can take a while to answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Maximum PDU length we advertise by default (dicom-ul's default).
pub const DEFAULT_MAX_PDU: u32 = dicom_ul::pdu::DEFAULT_MAX_PDU;

/// How to request associations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScuOptions {
    pub calling_ae: String,
    pub called_ae: String,
    /// The maximum PDU length we are willing to receive.
    pub max_pdu: u32,
    /// Preferred transfer syntax for data sets (default implicit VR LE).
    pub transfer_syntax: String,
}

impl Default for ScuOptions {
    fn default() -> Self {
        ScuOptions {
            calling_ae: "DICOM-LOADTEST".to_string(),
            called_ae: "ANY-SCP".to_string(),
            max_pdu: DEFAULT_MAX_PDU,
            transfer_syntax: uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string(),
        }
    }
}

impl ScuOptions {
    /// Check what can be checked before connecting: AE titles are 1-16
    /// printable ASCII characters without backslash.
    pub fn validate(&self) -> Result<(), ScuError> {
        validate_ae_title("calling", &self.calling_ae)?;
        validate_ae_title("called", &self.called_ae)
    }
}

/// The peer's answer to one C-STORE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAck {
    /// Status (0000,0900) of the C-STORE-RSP.
    pub status: u16,
    /// From the first byte of the request to the parsed response:
    /// transfer plus the peer's processing, as a modality experiences it.
    pub latency: Duration,
    /// Error Comment (0000,0902), when the peer gave one.
    pub error_comment: Option<String>,
}

impl StoreAck {
    /// Success (0x0000).
    pub fn is_success(&self) -> bool {
        self.status == 0x0000
    }

    /// Warning statuses (0xB000, 0xB006, 0xB007): stored, with a caveat.
    pub fn is_warning(&self) -> bool {
        self.status & 0xF000 == 0xB000
    }

    /// Anything that is neither success nor warning means "not stored".
    pub fn is_failure(&self) -> bool {
        !self.is_success() && !self.is_warning()
    }
}

/// An established association that sends C-STOREs (and C-ECHOs).
///
/// One request is in flight at a time (no asynchronous operations window),
/// as with most modalities; run several clients for parallelism.
#[derive(Debug)]
pub struct StoreClient {
    association: AsyncClientAssociation<TcpStream>,
    preferred_transfer_syntax: String,
    next_message_id: u16,
    timeout: Duration,
    /// Reused buffer for framing outgoing PDUs.
    write_buffer: Vec<u8>,
    /// Set when a failure may have left a half-sent or half-read message.
    unusable: bool,
}

impl StoreClient {
    /// Request an association proposing, for each SOP class, one context
    /// with the preferred transfer syntax and one with explicit and
    /// implicit VR LE as fallback, plus Verification.
    ///
    /// Separate contexts (rather than one listing all syntaxes) make the
    /// peer's support for the preferred syntax visible: an SCP that picks
    /// its own favourite from a list would otherwise hide it.
    pub async fn connect(
        addr: SocketAddr,
        opts: &ScuOptions,
        sop_classes: &[&str],
    ) -> Result<Self, ScuError> {
        Self::connect_with_timeout(addr, opts, sop_classes, DEFAULT_TIMEOUT).await
    }

    /// [`connect`](Self::connect) with a limit other than [`DEFAULT_TIMEOUT`]
    /// for establishing the association and for each later exchange.
    pub async fn connect_with_timeout(
        addr: SocketAddr,
        opts: &ScuOptions,
        sop_classes: &[&str],
        timeout: Duration,
    ) -> Result<Self, ScuError> {
        opts.validate()?;
        let preferred = trim_uid(&opts.transfer_syntax).to_string();
        let fallback: Vec<String> = [
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
        ]
        .into_iter()
        .filter(|ts| *ts != preferred)
        .map(String::from)
        .collect();

        let mut classes: Vec<&str> = Vec::new();
        for class in sop_classes.iter().map(|c| trim_uid(c)) {
            if class != uids::VERIFICATION && !classes.contains(&class) {
                classes.push(class);
            }
        }
        // Two contexts per class plus Verification; PS3.8 allows 128.
        if classes.len() * 2 + 1 > 128 {
            return Err(ScuError::InvalidOption(format!(
                "{} SOP classes need more than 128 presentation contexts",
                classes.len()
            )));
        }

        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(opts.calling_ae.clone())
            .called_ae_title(opts.called_ae.clone())
            .max_pdu_length(opts.max_pdu)
            // No per-read or per-write socket timeouts: every operation
            // below runs under one deadline of its own instead.
            .connection_timeout(timeout)
            .with_presentation_context(
                uids::VERIFICATION.to_string(),
                vec![
                    uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string(),
                    uids::EXPLICIT_VR_LITTLE_ENDIAN.to_string(),
                ],
            );
        for class in classes {
            options = options
                .with_presentation_context(class.to_string(), vec![preferred.clone()])
                .with_presentation_context(class.to_string(), fallback.clone());
        }

        let operation = "establish association";
        let association = match tokio::time::timeout(timeout, options.establish_async(addr)).await {
            Ok(result) => result.map_err(|e| ScuError::from_upper_layer(operation, timeout, e))?,
            Err(_) => {
                return Err(ScuError::Timeout {
                    operation,
                    after: timeout,
                });
            }
        };
        let mut client = StoreClient {
            association,
            preferred_transfer_syntax: preferred,
            next_message_id: 1,
            timeout,
            write_buffer: Vec::new(),
            unusable: false,
        };
        // Without this each DIMSE exchange can stall ~40 ms on delayed ACKs.
        client
            .association
            .inner_stream()
            .set_nodelay(true)
            .map_err(|source| ScuError::Io {
                operation: "set TCP_NODELAY",
                source,
            })?;
        Ok(client)
    }

    /// Change the limit for each later echo, store or release.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The transfer syntax the peer accepted for `sop_class_uid`, preferring
    /// the one asked for in [`ScuOptions`]. Data sets sent with
    /// [`store_raw`](Self::store_raw) must be encoded in this syntax.
    pub fn transfer_syntax_for(&self, sop_class_uid: &str) -> Option<&str> {
        self.context_for(sop_class_uid).map(|(_, ts)| trim_uid(ts))
    }

    /// The peer's maximum PDU length (what our P-DATA fragments respect).
    pub fn peer_max_pdu(&self) -> u32 {
        self.association.acceptor_max_pdu_length()
    }

    /// Send a C-ECHO and return the response status.
    pub async fn echo(&mut self) -> Result<u16, ScuError> {
        let (context_id, _) = self.context_for(uids::VERIFICATION).ok_or_else(|| {
            ScuError::NoPresentationContext {
                sop_class_uid: uids::VERIFICATION.to_string(),
            }
        })?;
        let message_id = self.take_message_id();
        let command = command::c_echo_rq(message_id)?;
        let expected = Expected {
            command_field: command_field::C_ECHO_RSP,
            message_id,
        };
        let response = self
            .exchange("send C-ECHO", context_id, &command, None, expected)
            .await?;
        Ok(response.status)
    }

    /// Store one instance, encoding it in the negotiated transfer syntax.
    pub async fn store(&mut self, inst: &SynthInstance) -> Result<StoreAck, ScuError> {
        let ts = self
            .transfer_syntax_for(&inst.sop_class_uid)
            .ok_or_else(|| ScuError::NoPresentationContext {
                sop_class_uid: inst.sop_class_uid.clone(),
            })?
            .to_string();
        let bytes = inst.encode_dataset(&ts)?;
        self.store_raw(&inst.sop_class_uid, &inst.sop_instance_uid, &bytes)
            .await
    }

    /// Send a C-STORE whose command names `sop_class_uid` and
    /// `sop_instance_uid`, followed by `dataset_bytes` as they are.
    ///
    /// Nothing checks that the data set agrees with the command, which is
    /// the point: tests use it to provoke a mismatch. The bytes must be in
    /// the syntax [`transfer_syntax_for`](Self::transfer_syntax_for) reports.
    pub async fn store_raw(
        &mut self,
        sop_class_uid: &str,
        sop_instance_uid: &str,
        dataset_bytes: &[u8],
    ) -> Result<StoreAck, ScuError> {
        let (context_id, _) =
            self.context_for(sop_class_uid)
                .ok_or_else(|| ScuError::NoPresentationContext {
                    sop_class_uid: sop_class_uid.to_string(),
                })?;
        let message_id = self.take_message_id();
        let command = command::c_store_rq(message_id, sop_class_uid, sop_instance_uid)?;
        let started = Instant::now();
        let expected = Expected {
            command_field: command_field::C_STORE_RSP,
            message_id,
        };
        let response = self
            .exchange(
                "send C-STORE",
                context_id,
                &command,
                Some(dataset_bytes),
                expected,
            )
            .await?;
        let latency = started.elapsed();
        Ok(StoreAck {
            status: response.status,
            latency,
            error_comment: response.error_comment,
        })
    }

    /// Release the association gracefully (A-RELEASE), or abort it if an
    /// earlier failure left it in an unknown state.
    pub async fn release(self) -> Result<(), ScuError> {
        let timeout = self.timeout;
        if self.unusable {
            let operation = "abort association";
            return match tokio::time::timeout(timeout, self.association.abort()).await {
                Ok(result) => result.map_err(|e| ScuError::from_upper_layer(operation, timeout, e)),
                Err(_) => Err(ScuError::Timeout {
                    operation,
                    after: timeout,
                }),
            };
        }
        match tokio::time::timeout(timeout, self.association.release()).await {
            Ok(result) => {
                result.map_err(|e| ScuError::from_upper_layer("release association", timeout, e))
            }
            Err(_) => Err(ScuError::Timeout {
                operation: "release association",
                after: timeout,
            }),
        }
    }

    /// Send one request (command, then the data set if any) and read the
    /// response command, all within the configured timeout. A response that
    /// does not answer the request leaves the association unusable, since
    /// the peer is evidently out of step.
    async fn exchange(
        &mut self,
        operation: &'static str,
        context_id: u8,
        command: &[u8],
        dataset: Option<&[u8]>,
        expected: Expected,
    ) -> Result<DimseResponse, ScuError> {
        if self.unusable {
            return Err(ScuError::Unusable);
        }
        // Assume the worst until the exchange completes: a timeout or error
        // in the middle leaves the peer mid-message.
        self.unusable = true;
        let timeout = self.timeout;
        let response = match tokio::time::timeout(
            timeout,
            self.exchange_inner(operation, context_id, command, dataset),
        )
        .await
        {
            Ok(result) => result?,
            Err(_) => {
                return Err(ScuError::Timeout {
                    operation,
                    after: timeout,
                });
            }
        };
        expected.check(&response)?;
        self.unusable = false;
        Ok(response)
    }

    async fn exchange_inner(
        &mut self,
        operation: &'static str,
        context_id: u8,
        command: &[u8],
        dataset: Option<&[u8]>,
    ) -> Result<DimseResponse, ScuError> {
        let peer_max_pdu = self.association.acceptor_max_pdu_length();
        let io_error = |source| ScuError::Io { operation, source };
        let stream = self.association.inner_stream();
        pdata::send_message(
            stream,
            &mut self.write_buffer,
            context_id,
            Fragment::Command,
            command,
            peer_max_pdu,
        )
        .await
        .map_err(io_error)?;
        if let Some(dataset) = dataset {
            pdata::send_message(
                stream,
                &mut self.write_buffer,
                context_id,
                Fragment::DataSet,
                dataset,
                peer_max_pdu,
            )
            .await
            .map_err(io_error)?;
        }
        let response_bytes = self.receive_message(Fragment::Command).await?;
        let response = command::parse_response(&response_bytes)?;
        if response.has_data_set {
            // No C-STORE or C-ECHO response carries one; read and drop it
            // so the association stays in step.
            self.receive_message(Fragment::DataSet).await?;
        }
        Ok(response)
    }

    /// Collect the fragments of one incoming message of the given kind.
    async fn receive_message(&mut self, expected: Fragment) -> Result<Vec<u8>, ScuError> {
        let timeout = self.timeout;
        let mut message = Vec::new();
        loop {
            let pdu = self
                .association
                .receive()
                .await
                .map_err(|e| ScuError::from_upper_layer("receive response", timeout, e))?;
            let values = match pdu {
                Pdu::PData { data } => data,
                Pdu::AbortRQ { source } => {
                    return Err(ScuError::Aborted {
                        detail: format!("peer sent A-ABORT ({source:?})"),
                    });
                }
                other => {
                    return Err(ScuError::Protocol {
                        detail: format!("expected P-DATA, got {}", other.short_description()),
                    });
                }
            };
            for value in values {
                let kind = match value.value_type {
                    PDataValueType::Command => Fragment::Command,
                    PDataValueType::Data => Fragment::DataSet,
                };
                if kind != expected {
                    return Err(ScuError::Protocol {
                        detail: format!("expected a {expected:?} fragment, got {kind:?}"),
                    });
                }
                if expected == Fragment::Command
                    && message.len() + value.data.len() > MAX_COMMAND_LEN
                {
                    return Err(ScuError::Protocol {
                        detail: format!("response command longer than {MAX_COMMAND_LEN} bytes"),
                    });
                }
                message.extend_from_slice(&value.data);
                if value.is_last {
                    return Ok(message);
                }
            }
        }
    }

    /// The accepted context for an abstract syntax and its transfer syntax,
    /// preferring the one proposed with the preferred transfer syntax.
    fn context_for(&self, sop_class_uid: &str) -> Option<(u8, &str)> {
        let wanted = trim_uid(sop_class_uid);
        let contexts = self.association.presentation_contexts();
        let matching = || {
            contexts
                .iter()
                .filter(move |pc| trim_uid(&pc.abstract_syntax) == wanted)
        };
        matching()
            .find(|pc| trim_uid(&pc.transfer_syntax) == self.preferred_transfer_syntax)
            .or_else(|| matching().next())
            .map(|pc| (pc.id, pc.transfer_syntax.as_str()))
    }

    /// Message IDs count up per request, skipping 0 on wrap-around.
    fn take_message_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.checked_add(1).unwrap_or(1);
        id
    }
}

/// What a response must carry to answer the request we sent.
#[derive(Debug, Clone, Copy)]
struct Expected {
    command_field: u16,
    message_id: u16,
}

impl Expected {
    fn check(self, response: &DimseResponse) -> Result<(), ScuError> {
        if response.command_field != self.command_field {
            return Err(ScuError::Protocol {
                detail: format!(
                    "expected command field {:#06x}, got {:#06x}",
                    self.command_field, response.command_field
                ),
            });
        }
        if response.message_id_being_responded_to != self.message_id {
            return Err(ScuError::Protocol {
                detail: format!(
                    "response answers message {} but message {} was sent",
                    response.message_id_being_responded_to, self.message_id
                ),
            });
        }
        Ok(())
    }
}

/// AE titles are at most 16 characters of the default repertoire, not all spaces.
fn validate_ae_title(role: &str, title: &str) -> Result<(), ScuError> {
    let valid = !title.trim().is_empty()
        && title.len() <= 16
        && title
            .chars()
            .all(|c| c.is_ascii() && !c.is_ascii_control() && c != '\\');
    if valid {
        Ok(())
    } else {
        Err(ScuError::InvalidOption(format!(
            "{role} AE title `{title}` is not 1-16 printable ASCII characters"
        )))
    }
}

/// UIDs on the wire may be padded with NUL or space.
fn trim_uid(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}

#[cfg(test)]
mod tests;
