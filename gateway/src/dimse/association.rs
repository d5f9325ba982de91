//! One established association: read requests, answer them, until the peer
//! releases or aborts. Generic over the byte stream, so DICOM TLS reuses it.

use std::collections::HashMap;

use bytes::BytesMut;
use dicom_ul::Pdu;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::DimseContext;
use super::command::{DimseCommand, Response, command_field};
use super::negotiation::AcceptedContext as Context;
use super::status::{self, store_error_status};
use super::wire::{Incoming, PdvHeader, Wire, WireError};
use crate::store::uid::validate_uid;
use crate::store::{self, Announced, Provenance, StagingFile, StoreError};

/// Largest command set we accept; real ones are a few hundred bytes.
const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// How an association ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssociationEnd {
    Released,
    PeerAborted,
    /// We aborted: protocol violation, oversized PDU, timeout.
    Aborted(&'static str),
    Closed,
}

impl AssociationEnd {
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::PeerAborted => "peer_aborted",
            Self::Aborted(why) => why,
            Self::Closed => "closed",
        }
    }
}

/// Serves one association to the end. `leftover` holds bytes read past
/// the A-ASSOCIATE-RQ; `contexts` are the accepted presentation contexts.
pub async fn serve<S>(
    stream: &mut S,
    leftover: BytesMut,
    contexts: HashMap<u8, Context>,
    ctx: &DimseContext,
    site: &str,
    calling_ae: &str,
) -> AssociationEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let max_pdu = ctx.config.max_pdu_length;
    let mut wire = Wire::new(
        stream,
        leftover,
        max_pdu,
        Instant::now() + ctx.config.idle_timeout,
    );
    let mut session = Session {
        ctx,
        site,
        calling_ae,
        contexts,
    };

    let end = loop {
        wire.set_deadline(Instant::now() + ctx.config.idle_timeout);
        let first = match wire.next().await {
            Ok(Incoming::Pdv(header)) => header,
            Ok(Incoming::ReleaseRequested) => {
                let _ = wire.send(&Pdu::ReleaseRP).await;
                break AssociationEnd::Released;
            }
            Ok(Incoming::Aborted) => break AssociationEnd::PeerAborted,
            Err(e) => break fail(&mut wire, e).await,
        };
        wire.set_deadline(Instant::now() + ctx.config.message_timeout);
        if let Err(e) = session.handle_message(&mut wire, first).await {
            break fail(&mut wire, e).await;
        }
    };
    drop(wire);
    end
}

/// Ends the association after a wire error, sending A-ABORT where one is due.
async fn fail<S>(wire: &mut Wire<'_, S>, error: WireError) -> AssociationEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if matches!(error, WireError::Closed) {
        return AssociationEnd::Closed;
    }
    tracing::warn!(error = %error, "aborting association");
    if let Some(abort) = error.abort_pdu() {
        // Give the abort a moment to leave even if the deadline has passed.
        wire.set_deadline(Instant::now() + std::time::Duration::from_secs(2));
        let _ = wire.send(&abort).await;
    }
    AssociationEnd::Aborted(error.as_label())
}

/// State shared by the messages of one association.
struct Session<'c> {
    ctx: &'c DimseContext,
    site: &'c str,
    calling_ae: &'c str,
    contexts: HashMap<u8, Context>,
}

impl Session<'_> {
    async fn handle_message<S>(
        &mut self,
        wire: &mut Wire<'_, S>,
        first: PdvHeader,
    ) -> Result<(), WireError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if !first.is_command {
            return Err(WireError::Malformed(
                "data set fragment where a command was expected",
            ));
        }
        let pc_id = first.presentation_context_id;
        let Some(context) = self.contexts.get(&pc_id).cloned() else {
            return Err(WireError::Malformed(
                "PDV on a presentation context that was not accepted",
            ));
        };
        let command_bytes = read_command(wire, first).await?;
        let command = DimseCommand::decode(&command_bytes).map_err(|e| {
            tracing::warn!(error = %e, "undecodable command set");
            WireError::Malformed("undecodable command set")
        })?;

        let (response_field, sop_class, sop_instance, status, comment) = match &command {
            DimseCommand::Echo { sop_class_uid, .. } => (
                command_field::C_ECHO_RSP,
                sop_class_uid.clone(),
                None,
                status::SUCCESS,
                None,
            ),
            DimseCommand::Store {
                sop_class_uid,
                sop_instance_uid,
                has_data_set,
                ..
            } => {
                let (status, comment) = if *has_data_set {
                    self.store(wire, pc_id, &context, sop_class_uid, sop_instance_uid)
                        .await?
                } else {
                    (
                        status::ERROR_CANNOT_UNDERSTAND,
                        Some("C-STORE-RQ without a data set".to_string()),
                    )
                };
                (
                    command_field::C_STORE_RSP,
                    sop_class_uid.clone(),
                    Some(sop_instance_uid.clone()),
                    status,
                    comment,
                )
            }
            DimseCommand::Unsupported {
                command_field,
                has_data_set,
                ..
            } => {
                if *has_data_set {
                    discard_data_set(wire, pc_id).await?;
                }
                (
                    command_field | command_field::RESPONSE_BIT,
                    context.abstract_syntax.clone(),
                    None,
                    status::UNRECOGNIZED_OPERATION,
                    Some("only C-ECHO and C-STORE are supported".to_string()),
                )
            }
        };

        self.ctx
            .metrics
            .dimse_messages
            .with_label_values(&[self.site, command.as_label(), status::status_class(status)])
            .inc();
        let response = Response {
            command_field: response_field,
            message_id: command.message_id(),
            sop_class_uid: Some(&sop_class),
            sop_instance_uid: sop_instance.as_deref(),
            status,
            error_comment: comment.as_deref(),
        }
        .encode();
        wire.send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: response,
            }],
        })
        .await
    }

    /// Receives one C-STORE data set and stores it. Returns the status for
    /// the response; `Err` only for failures that end the association.
    async fn store<S>(
        &mut self,
        wire: &mut Wire<'_, S>,
        pc_id: u8,
        context: &Context,
        sop_class_uid: &str,
        sop_instance_uid: &str,
    ) -> Result<(u16, Option<String>), WireError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let refuse = |status: u16, comment: String| (status, Some(comment));
        let precheck = if sop_class_uid != context.abstract_syntax {
            Err(refuse(
                status::SOP_CLASS_NOT_SUPPORTED,
                "SOP class differs from the presentation context".into(),
            ))
        } else if let Err(e) = validate_uid(sop_instance_uid) {
            Err(refuse(
                status::INVALID_OBJECT_INSTANCE,
                format!("affected SOP instance {e}"),
            ))
        } else {
            Ok(())
        };
        let staging = match precheck {
            Err(answer) => {
                discard_data_set(wire, pc_id).await?;
                return Ok(self.refused(answer, "precheck"));
            }
            Ok(()) => {
                let begun = match store::file_meta(
                    sop_class_uid,
                    sop_instance_uid,
                    &context.transfer_syntax,
                ) {
                    Ok(meta) => {
                        self.ctx
                            .store
                            .begin(&meta, self.ctx.config.max_instance_size)
                            .await
                    }
                    Err(e) => Err(e),
                };
                match begun {
                    Ok(staging) => staging,
                    Err(e) => {
                        discard_data_set(wire, pc_id).await?;
                        return Ok(self.store_failed(&e));
                    }
                }
            }
        };

        let staging = match receive_data_set(wire, pc_id, staging).await? {
            Ok(staging) => staging,
            Err(e) => return Ok(self.store_failed(&e)),
        };
        let announced = Announced {
            sop_class_uid: sop_class_uid.to_string(),
            sop_instance_uid: sop_instance_uid.to_string(),
            study_instance_uid: None,
            source: "command",
        };
        let provenance = Provenance {
            site: self.site.to_string(),
            calling_ae: self.calling_ae.to_string(),
            protocol: "dimse",
            transfer_syntax_uid: context.transfer_syntax.clone(),
        };
        match self.ctx.store.accept(staging, &announced, provenance).await {
            Ok(_) => Ok((status::SUCCESS, None)),
            Err(e) => Ok(self.answer_failure(&e)),
        }
    }

    /// A failure before [`Store::accept`](crate::store::Store::accept): counted here, since accept never saw it.
    fn store_failed(&self, error: &StoreError) -> (u16, Option<String>) {
        self.refused(
            (store_error_status(error), Some(error.to_string())),
            error.as_label(),
        )
    }

    /// A failure from [`Store::accept`](crate::store::Store::accept), which has counted it already.
    fn answer_failure(&self, error: &StoreError) -> (u16, Option<String>) {
        let answer = (store_error_status(error), Some(error.to_string()));
        log_refusal(&answer, error.as_label());
        answer
    }

    fn refused(
        &self,
        answer: (u16, Option<String>),
        reason: &'static str,
    ) -> (u16, Option<String>) {
        self.ctx.store.count_refusal(self.site, reason);
        log_refusal(&answer, reason);
        answer
    }
}

fn log_refusal(answer: &(u16, Option<String>), reason: &str) {
    tracing::warn!(
        status = format!("{:#06x}", answer.0),
        reason,
        comment = answer.1.as_deref().unwrap_or(""),
        "C-STORE refused"
    );
}
/// Reads the rest of a command set (it may span several PDVs).
async fn read_command<S>(wire: &mut Wire<'_, S>, first: PdvHeader) -> Result<BytesMut, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut bytes = BytesMut::new();
    let mut header = first;
    loop {
        if bytes.len() + header.length as usize > MAX_COMMAND_BYTES {
            return Err(WireError::Malformed("command set larger than 64 KiB"));
        }
        while wire.pdv_remaining() > 0 {
            bytes.extend_from_slice(&wire.read_chunk().await?);
        }
        if header.is_last {
            return Ok(bytes);
        }
        header = expect_fragment(wire, first.presentation_context_id, true).await?;
    }
}

/// Streams a data set into `staging`. The outer `Result` ends the
/// association; the inner one is a store failure to answer with a status
/// (the data set is then read to its end and dropped).
async fn receive_data_set<S>(
    wire: &mut Wire<'_, S>,
    pc_id: u8,
    staging: StagingFile,
) -> Result<Result<StagingFile, StoreError>, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut staging = Some(staging);
    let mut failure = None;
    loop {
        let header = expect_fragment(wire, pc_id, false).await?;
        while wire.pdv_remaining() > 0 {
            let chunk = wire.read_chunk().await?;
            if let Some(file) = staging.as_mut()
                && let Err(e) = file.write_dataset(&chunk).await
            {
                failure = Some(e);
                if let Some(file) = staging.take() {
                    file.discard().await;
                }
            }
        }
        if header.is_last {
            break;
        }
    }
    Ok(match (staging, failure) {
        (Some(file), None) => Ok(file),
        (_, Some(e)) => Err(e),
        (None, None) => Err(StoreError::Commit("staging file lost".into())),
    })
}

async fn discard_data_set<S>(wire: &mut Wire<'_, S>, pc_id: u8) -> Result<(), WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let header = expect_fragment(wire, pc_id, false).await?;
        while wire.pdv_remaining() > 0 {
            wire.read_chunk().await?;
        }
        if header.is_last {
            return Ok(());
        }
    }
}

/// The next PDV must continue the current message on the same context.
async fn expect_fragment<S>(
    wire: &mut Wire<'_, S>,
    pc_id: u8,
    command: bool,
) -> Result<PdvHeader, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match wire.next().await? {
        Incoming::Pdv(h) if h.presentation_context_id == pc_id && h.is_command == command => Ok(h),
        Incoming::Pdv(_) => Err(WireError::Malformed("PDV out of sequence within a message")),
        Incoming::ReleaseRequested => Err(WireError::Malformed(
            "release requested in the middle of a message",
        )),
        Incoming::Aborted => Err(WireError::Closed),
    }
}
