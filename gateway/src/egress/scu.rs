//! The C-STORE SCU that forwards result objects to a destination, on
//! dicom-ul's async client association.
//!
//! Each file is proposed in its own transfer syntax and its data set is
//! streamed from disk as stored: egress never decodes or transcodes.

use std::io::SeekFrom;
use std::path::Path;
use std::time::Duration;

use dicom_ul::Pdu;
use dicom_ul::association::ClientAssociationOptions;
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValueType, PresentationContextResultReason};
use tokio::io::AsyncSeekExt;
use tokio::net::TcpStream;

use dimse_message::command::{self, MAX_COMMAND_LEN, command_field::C_STORE_RSP};
use dimse_message::status;

use super::{Destination, ForwardError, PreparedInstance, pdata};

/// Sends one file to `dest` in its own association and returns the
/// destination's status when it stored the instance (Success or Warning).
pub async fn send_instance(
    dest: &Destination,
    calling_ae: &str,
    file: &Path,
) -> Result<u16, ForwardError> {
    let instance = PreparedInstance::open(file).await?;
    let mut association = ForwardAssociation::establish(dest, calling_ae, &[&instance]).await?;
    let result = association.store(&instance).await;
    association.close().await;
    result
}

/// An open association to a destination, for one or more C-STOREs.
pub struct ForwardAssociation {
    association: AsyncClientAssociation<TcpStream>,
    dimse_timeout: Duration,
    next_message_id: u16,
    /// Set while a message is half-sent or its response half-read.
    unusable: bool,
}

impl ForwardAssociation {
    /// Connects and negotiates one presentation context per distinct
    /// (SOP class, transfer syntax) among `instances`.
    pub async fn establish(
        dest: &Destination,
        calling_ae: &str,
        instances: &[&PreparedInstance],
    ) -> Result<Self, ForwardError> {
        let mut contexts: Vec<(&str, &str)> = Vec::new();
        for inst in instances {
            let pair = (
                inst.sop_class_uid.as_str(),
                inst.transfer_syntax_uid.as_str(),
            );
            if !contexts.contains(&pair) {
                contexts.push(pair);
            }
        }
        // Presentation context ids are odd numbers 1..=255: 128 at most.
        if contexts.is_empty() || contexts.len() > 128 {
            return Err(ForwardError::InvalidOption(format!(
                "{} presentation contexts (1 to 128 allowed)",
                contexts.len()
            )));
        }
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(calling_ae.to_string())
            .called_ae_title(dest.ae_title.clone())
            .max_pdu_length(dest.max_pdu_length)
            .connection_timeout(dest.connect_timeout);
        for (class, ts) in contexts {
            options = options.with_presentation_context(class.to_string(), vec![ts.to_string()]);
        }
        let timeout = dest.connect_timeout;
        let operation = "establish association";
        let establish = options.establish_async((dest.host.as_str(), dest.port));
        let association = match tokio::time::timeout(timeout, establish).await {
            Ok(result) => {
                result.map_err(|e| ForwardError::from_upper_layer(operation, timeout, e))?
            }
            Err(_) => {
                return Err(ForwardError::Timeout {
                    operation,
                    after: timeout,
                });
            }
        };
        let mut forward = ForwardAssociation {
            association,
            dimse_timeout: dest.dimse_timeout,
            next_message_id: 1,
            unusable: false,
        };
        // Without this each DIMSE exchange can stall ~40 ms on delayed ACKs.
        if let Err(source) = forward.association.inner_stream().set_nodelay(true) {
            forward.close().await;
            return Err(ForwardError::Io {
                operation: "set TCP_NODELAY",
                source,
            });
        }
        Ok(forward)
    }

    /// False once a failure has left the association out of step; the
    /// caller must then close it and open a new one.
    pub fn is_usable(&self) -> bool {
        !self.unusable
    }

    /// C-STOREs one instance; `Ok(status)` when the destination stored it
    /// (Success or Warning), [`ForwardError::Status`] when it refused.
    pub async fn store(&mut self, instance: &PreparedInstance) -> Result<u16, ForwardError> {
        if self.unusable {
            return Err(ForwardError::Aborted {
                detail: "association unusable after an earlier failure".into(),
            });
        }
        let context_id = self.context_for(instance)?;
        let message_id = self.next_message_id;
        self.next_message_id = self.next_message_id.checked_add(1).unwrap_or(1);
        let rq = command::c_store_rq(
            message_id,
            &instance.sop_class_uid,
            &instance.sop_instance_uid,
        )?;
        // Open the file before sending anything, so a missing file leaves
        // the association usable for the next instance.
        let file_error = |source| ForwardError::File {
            path: instance.path.clone(),
            source,
        };
        let mut file = tokio::fs::File::open(&instance.path)
            .await
            .map_err(file_error)?;
        file.seek(SeekFrom::Start(instance.dataset_offset))
            .await
            .map_err(file_error)?;

        self.unusable = true;
        let peer_max_pdu = self.association.acceptor_max_pdu_length();
        let timeout = self.dimse_timeout;
        let stream = self.association.inner_stream();
        pdata::send_command(stream, context_id, &rq, peer_max_pdu, timeout).await?;
        let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, file);
        pdata::send_dataset(
            stream,
            &mut reader,
            &instance.path,
            instance.dataset_len,
            context_id,
            peer_max_pdu,
            timeout,
        )
        .await?;
        let response =
            command::parse_response(&self.receive_message(PDataValueType::Command).await?)?;
        if response.has_data_set {
            // No C-STORE-RSP carries one; read and drop it to stay in step.
            self.receive_message(PDataValueType::Data).await?;
        }
        if response.command_field != C_STORE_RSP
            || response.message_id_being_responded_to != message_id
        {
            return Err(ForwardError::Protocol {
                detail: format!(
                    "expected C-STORE-RSP to message {message_id}, got command {:#06x} to message {}",
                    response.command_field, response.message_id_being_responded_to
                ),
            });
        }
        self.unusable = false;
        if status::is_stored(response.status) {
            Ok(response.status)
        } else {
            Err(ForwardError::Status {
                status: response.status,
                comment: response.error_comment,
            })
        }
    }

    /// Releases the association (A-RELEASE), or aborts it when a failure
    /// left it out of step. Failures here change nothing for deliveries
    /// already answered, so they are only logged.
    pub async fn close(self) {
        let timeout = self.dimse_timeout;
        let result = if self.unusable {
            tokio::time::timeout(timeout, self.association.abort()).await
        } else {
            tokio::time::timeout(timeout, self.association.release()).await
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "closing egress association failed"),
            Err(_) => tracing::debug!("closing egress association timed out"),
        }
    }

    fn context_for(&self, instance: &PreparedInstance) -> Result<u8, ForwardError> {
        let trim = |uid: &str| uid.trim_end_matches(['\0', ' ']).to_string();
        self.association
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.reason == PresentationContextResultReason::Acceptance
                    && trim(&pc.abstract_syntax) == instance.sop_class_uid
                    && trim(&pc.transfer_syntax) == instance.transfer_syntax_uid
            })
            .map(|pc| pc.id)
            .ok_or_else(|| ForwardError::NoPresentationContext {
                sop_class_uid: instance.sop_class_uid.clone(),
                transfer_syntax_uid: instance.transfer_syntax_uid.clone(),
            })
    }

    /// Collects the fragments of one incoming message of the given kind,
    /// each PDU under the per-message timeout.
    async fn receive_message(&mut self, expected: PDataValueType) -> Result<Vec<u8>, ForwardError> {
        let timeout = self.dimse_timeout;
        let operation = "receive C-STORE response";
        let mut message = Vec::new();
        loop {
            let pdu = match tokio::time::timeout(timeout, self.association.receive()).await {
                Ok(result) => {
                    result.map_err(|e| ForwardError::from_upper_layer(operation, timeout, e))?
                }
                Err(_) => {
                    return Err(ForwardError::Timeout {
                        operation,
                        after: timeout,
                    });
                }
            };
            let values = match pdu {
                Pdu::PData { data } => data,
                Pdu::AbortRQ { source } => {
                    return Err(ForwardError::Aborted {
                        detail: format!("destination sent A-ABORT ({source:?})"),
                    });
                }
                other => {
                    return Err(ForwardError::Protocol {
                        detail: format!("expected P-DATA, got {}", other.short_description()),
                    });
                }
            };
            for value in values {
                if value.value_type != expected {
                    return Err(ForwardError::Protocol {
                        detail: format!(
                            "expected a {expected:?} fragment, got {:?}",
                            value.value_type
                        ),
                    });
                }
                if message.len() + value.data.len() > MAX_COMMAND_LEN {
                    return Err(ForwardError::Protocol {
                        detail: format!("response message longer than {MAX_COMMAND_LEN} bytes"),
                    });
                }
                message.extend_from_slice(&value.data);
                if value.is_last {
                    return Ok(message);
                }
            }
        }
    }
}
