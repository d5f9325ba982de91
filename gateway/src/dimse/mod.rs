//! DIMSE listener: C-ECHO and C-STORE SCP.
//!
//! Accept loop → [`admission`] (a negotiating permit, or closed at once) →
//! per-connection task: read the A-ASSOCIATE-RQ under the establish
//! deadline, decide on it ([`negotiation`]: sites decide who may associate),
//! take an association slot (or answer "busy"), then [`association::serve`]
//! reads requests with our own PDU reader ([`wire`]) and stores data sets
//! through `store`.

pub mod admission;
pub mod association;
pub mod command;
pub mod negotiation;
pub mod status;
pub mod storage_classes;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use dicom_ul::Pdu;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::DimseConfig;
use crate::sites::SharedSites;
use crate::store::Store;
use crate::telemetry::Metrics;
use admission::{Admission, AdmissionLimits, Negotiating, Refusal};
use negotiation::{Acceptor, Negotiated, busy_rejection};

/// Site label for peers not (yet) resolved to a site.
const UNKNOWN_SITE: &str = "unknown";

/// What every association needs.
pub struct DimseContext {
    pub ae_title: String,
    pub config: DimseConfig,
    /// The sites in force; a reload replaces them for new associations.
    pub sites: SharedSites,
    pub store: Store,
    pub metrics: Metrics,
}

/// Accepts associations until `shutdown` resolves, then waits up to
/// `drain_deadline` for the open ones to finish.
pub async fn run_listener(
    listener: TcpListener,
    ctx: Arc<DimseContext>,
    shutdown: impl Future<Output = ()>,
    drain_deadline: std::time::Duration,
) {
    let admission = Arc::new(Admission::new(AdmissionLimits {
        max_negotiating: ctx.config.max_negotiating,
        max_negotiating_per_peer: ctx.config.max_negotiating_per_peer,
        max_associations: ctx.config.max_associations,
    }));
    for refusal in Refusal::ALL {
        // Present at zero from the start, so a dashboard can tell "none" from "not exported".
        ctx.metrics
            .dimse_connections_refused
            .with_label_values(&[refusal.as_label()]);
    }
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match admission.admit(peer.ip()) {
            Ok(negotiating) => {
                if let Err(e) = socket.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
                let ctx = ctx.clone();
                let span = tracing::info_span!("association", %peer, calling_ae = tracing::field::Empty, site = tracing::field::Empty);
                tokio::spawn(handle_connection(socket, peer, ctx, negotiating).instrument(span));
            }
            Err(refusal) => refuse_at_once(socket, peer, &ctx, refusal),
        }
    }
    drop(listener);
    tracing::info!(
        open = admission.associations_open(),
        "DIMSE listener stopped accepting; draining open associations"
    );
    if admission.drain(drain_deadline).await {
        tracing::info!("all associations finished");
    } else {
        tracing::warn!("drain deadline passed with associations still open");
    }
}

/// Over the negotiating budget or the per-peer cap: nothing is read. The
/// "busy" rejection is written only if the socket takes it at once (a fresh
/// socket always does), so a real modality that happens to be turned away
/// learns to retry; then the connection is closed.
fn refuse_at_once(socket: TcpStream, peer: SocketAddr, ctx: &DimseContext, refusal: Refusal) {
    count_refusal(ctx, refusal);
    tracing::debug!(%peer, reason = refusal.as_label(), "connection refused");
    let mut rejection = Vec::new();
    if dicom_ul::write_pdu(&mut rejection, &busy_rejection()).is_ok() {
        let _ = socket.try_write(&rejection);
    }
    drop(socket);
}

fn count_refusal(ctx: &DimseContext, refusal: Refusal) {
    ctx.metrics
        .dimse_connections_refused
        .with_label_values(&[refusal.as_label()])
        .inc();
}

async fn handle_connection(
    mut socket: TcpStream,
    peer: SocketAddr,
    ctx: Arc<DimseContext>,
    negotiating: Negotiating,
) {
    let count = |site: &str, outcome: &str| {
        ctx.metrics
            .dimse_associations
            .with_label_values(&[site, outcome])
            .inc();
    };
    let deadline = Instant::now() + ctx.config.establish_timeout;
    let read = negotiation::read_request(&mut socket, ctx.config.max_pdu_length);
    let (first, buffer) = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            count(UNKNOWN_SITE, "failed_negotiation");
            tracing::warn!(error = %e, "association negotiation failed");
            return;
        }
        Err(_) => {
            count(UNKNOWN_SITE, "establish_timeout");
            tracing::warn!("peer did not complete association negotiation in time");
            return;
        }
    };
    // The sites in force when this request arrived: a reload in between
    // applies to the next one.
    let sites = ctx.sites.current();
    let acceptor = Acceptor {
        sites: &sites,
        max_pdu_length: ctx.config.max_pdu_length,
    };
    let accepted = match acceptor.negotiate(first, peer.ip()) {
        Negotiated::Accepted(accepted) => accepted,
        Negotiated::Refused { answer, outcome } => {
            count(UNKNOWN_SITE, outcome);
            tracing::warn!(outcome, "association rejected");
            send_and_close(&mut socket, &answer, deadline).await;
            return;
        }
    };
    let slot = match negotiating.associate() {
        Ok(slot) => slot,
        Err(_still_negotiating) => {
            count_refusal(&ctx, Refusal::AssociationLimit);
            count(UNKNOWN_SITE, "rejected_limit");
            tracing::warn!("association limit reached; rejecting");
            send_and_close(&mut socket, &busy_rejection(), deadline).await;
            return;
        }
    };
    if let Err(e) = send(&mut socket, &accepted.answer, deadline).await {
        count(UNKNOWN_SITE, "failed_negotiation");
        tracing::warn!(error = %e, "cannot send A-ASSOCIATE-AC");
        return;
    }
    let span = tracing::Span::current();
    span.record("calling_ae", accepted.calling_ae.as_str());
    span.record("site", accepted.site.as_str());
    count(&accepted.site, "accepted");
    ctx.metrics.dimse_active_associations.inc();
    tracing::info!("association accepted");
    let end = association::serve(
        &mut socket,
        buffer,
        accepted.contexts,
        &ctx,
        &accepted.site,
        &accepted.calling_ae,
    )
    .await;
    ctx.metrics.dimse_active_associations.dec();
    count(&accepted.site, end.as_label());
    tracing::info!(end = end.as_label(), "association ended");
    drop(slot);
}

/// Writes one PDU before `deadline`.
async fn send(socket: &mut TcpStream, pdu: &Pdu, deadline: Instant) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(512);
    dicom_ul::write_pdu(&mut bytes, pdu).map_err(|e| std::io::Error::other(e.to_string()))?;
    tokio::time::timeout_at(deadline, socket.write_all(&bytes))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Answers a refused request and closes; the peer may already be gone.
async fn send_and_close(socket: &mut TcpStream, pdu: &Pdu, deadline: Instant) {
    if send(socket, pdu, deadline).await.is_ok() {
        let _ = tokio::time::timeout_at(deadline, socket.shutdown()).await;
    }
}
