//! DIMSE listener: C-ECHO and C-STORE SCP.
//!
//! Accept loop → per-connection task: negotiate with dicom-ul (sites decide
//! who may associate), then [`association::serve`] reads requests with our
//! own PDU reader ([`wire`]) and stores data sets through `store`.

pub mod association;
pub mod command;
pub mod negotiation;
pub mod status;
pub mod storage_classes;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJSource, Pdu,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::config::DimseConfig;
use crate::sites::SharedSites;
use crate::store::Store;
use crate::telemetry::Metrics;
use negotiation::{SiteAccess, server_options};

/// Connections we will still read an A-ASSOCIATE-RQ from just to say "busy".
const MAX_BUSY_REJECTIONS: usize = 16;
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
    let associations = Arc::new(Semaphore::new(ctx.config.max_associations));
    let busy = Arc::new(Semaphore::new(MAX_BUSY_REJECTIONS));
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
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        match associations.clone().try_acquire_owned() {
            Ok(permit) => {
                let ctx = ctx.clone();
                let span = tracing::info_span!("association", %peer, calling_ae = tracing::field::Empty, site = tracing::field::Empty);
                tokio::spawn(handle_connection(socket, peer, ctx, permit).instrument(span));
            }
            Err(_) => match busy.clone().try_acquire_owned() {
                Ok(permit) => {
                    let ctx = ctx.clone();
                    tokio::spawn(reject_busy(socket, ctx, permit));
                }
                Err(_) => drop(socket),
            },
        }
    }
    drop(listener);
    tracing::info!("DIMSE listener stopped accepting; draining open associations");
    let max = ctx.config.max_associations as u32;
    match tokio::time::timeout(drain_deadline, associations.acquire_many(max)).await {
        Ok(_) => tracing::info!("all associations finished"),
        Err(_) => tracing::warn!("drain deadline passed with associations still open"),
    }
}

async fn handle_connection(
    socket: TcpStream,
    peer: SocketAddr,
    ctx: Arc<DimseContext>,
    permit: OwnedSemaphorePermit,
) {
    let verdict = Arc::new(Mutex::new(None));
    let access = SiteAccess {
        sites: ctx.sites.current(),
        peer: peer.ip(),
        verdict: verdict.clone(),
    };
    let options = server_options(&ctx.ae_title, ctx.config.max_pdu_length, access);
    let established = tokio::time::timeout(
        ctx.config.establish_timeout,
        options.establish_async(socket),
    )
    .await;
    let decided = verdict.lock().ok().and_then(|mut v| v.take());
    let count = |site: &str, outcome: &str| {
        ctx.metrics
            .dimse_associations
            .with_label_values(&[site, outcome])
            .inc();
    };
    let association = match (established, decided) {
        (Ok(Ok(association)), Some(Ok(site))) => (association, site),
        (Ok(Ok(_)), _) => {
            // Cannot happen: dicom-ul only accepts after our access check said yes.
            count(UNKNOWN_SITE, "failed_negotiation");
            return;
        }
        (Ok(Err(_)), Some(Err(rejection))) => {
            count(UNKNOWN_SITE, rejection.as_label());
            tracing::warn!(outcome = rejection.as_label(), "association rejected");
            return;
        }
        (Ok(Err(e)), _) => {
            count(UNKNOWN_SITE, "failed_negotiation");
            tracing::warn!(error = %e, "association negotiation failed");
            return;
        }
        (Err(_), _) => {
            count(UNKNOWN_SITE, "establish_timeout");
            tracing::warn!("peer did not complete association negotiation in time");
            return;
        }
    };
    let (association, site) = association;
    let calling_ae = dicom_ul::association::Association::peer_ae_title(&association)
        .trim()
        .to_string();
    let span = tracing::Span::current();
    span.record("calling_ae", calling_ae.as_str());
    span.record("site", site.as_str());
    count(&site, "accepted");
    ctx.metrics.dimse_active_associations.inc();
    tracing::info!("association accepted");
    let end = association::serve(association, &ctx, &site, &calling_ae).await;
    ctx.metrics.dimse_active_associations.dec();
    count(&site, end.as_label());
    tracing::info!(end = end.as_label(), "association ended");
    drop(permit);
}

/// Over the association limit: read the request, answer A-ASSOCIATE-RJ
/// (transient, service provider presentation, local limit exceeded: 2,3,2).
async fn reject_busy(mut socket: TcpStream, ctx: Arc<DimseContext>, _permit: OwnedSemaphorePermit) {
    ctx.metrics
        .dimse_associations
        .with_label_values(&[UNKNOWN_SITE, "rejected_limit"])
        .inc();
    tracing::warn!("association limit reached; rejecting");
    let mut buffer = bytes::BytesMut::new();
    let read = dicom_ul::association::read_pdu_from_wire_async(
        &mut socket,
        &mut buffer,
        ctx.config.max_pdu_length,
        true,
    );
    if !matches!(
        tokio::time::timeout(ctx.config.establish_timeout, read).await,
        Ok(Ok(Pdu::AssociationRQ(_)))
    ) {
        return;
    }
    let rj = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    let mut out = Vec::new();
    if dicom_ul::write_pdu(&mut out, &rj).is_ok() {
        let _ = socket.write_all(&out).await;
        let _ = socket.shutdown().await;
    }
}
