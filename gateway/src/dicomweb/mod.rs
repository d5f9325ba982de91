//! DICOMweb over HTTPS: STOW-RS in, QIDO-RS and WADO-RS out (PS3.18).
//!
//! One actix-web server under `/dicomweb`, TLS by rustls with HTTP/2 by
//! ALPN. Every route but `/health/*` needs a bearer token
//! ([`auth::Authenticated`]); errors become responses only in [`error`].
//! Each service module registers its own routes.

pub mod auth;
pub mod deliveries_api;
pub mod error;
pub mod performance_api;
pub mod qido;
pub mod results_api;
pub mod stow;
pub mod tls;
pub mod wado;

use std::net::SocketAddr;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use tracing::Instrument;

use crate::config::DicomwebConfig;
use crate::store::{IndexReader, Store};
use crate::telemetry::Metrics;

/// Path prefix of every DICOMweb service.
pub const BASE_PATH: &str = "/dicomweb";

/// What every handler can reach (as `web::Data<DicomwebState>`).
pub struct DicomwebState {
    pub config: DicomwebConfig,
    pub store: Store,
    pub index: IndexReader,
    pub metrics: Metrics,
    /// The model repository, for the results API (model intended use and
    /// limitations); `None` when the pipeline is off.
    pub models: Option<std::sync::Arc<crate::models::ModelRepository>>,
    /// The forwarding queue, for the deliveries API; `None` when the
    /// pipeline is off.
    pub egress: Option<crate::egress::EgressHandle>,
}

/// Binds the DICOMweb listener and returns the bound address and server.
pub fn serve_dicomweb(
    state: DicomwebState,
) -> anyhow::Result<(SocketAddr, actix_web::dev::Server)> {
    let listen = state.config.listen;
    let tls = match &state.config.tls {
        Some(files) => Some(tls::server_config(files)?),
        None => None,
    };
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(64 * 1024))
            .wrap(from_fn(observe))
            .route("/health/live", web::get().to(live))
            .route("/health/ready", web::get().to(ready))
            .configure(results_api::register)
            .configure(deliveries_api::register)
            .configure(performance_api::register)
            .service(
                web::scope(BASE_PATH)
                    .configure(stow::register)
                    .configure(qido::register)
                    .configure(wado::register),
            )
    })
    .disable_signals()
    // Without it each HTTP/2 response's last small frame waits for the
    // client's delayed ACK: ~40 ms on every request (measured).
    .tcp_nodelay(true)
    .shutdown_timeout(5)
    // Headers must arrive promptly; body deadlines are per service.
    .client_request_timeout(std::time::Duration::from_secs(10));
    let server = match tls {
        Some(config) => server.bind_rustls_0_23(listen, config)?,
        None => server.bind(listen)?,
    };
    let bound = server.addrs().first().copied().unwrap_or(listen);
    Ok((bound, server.run()))
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Ready when the index answers and the store accepts new instances.
async fn ready(state: web::Data<DicomwebState>) -> HttpResponse {
    let index = state
        .index
        .run(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
        .await;
    let disk = state.store.check_free_space();
    match (index, disk) {
        (Ok(()), Ok(())) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        (Err(e), _) => HttpResponse::ServiceUnavailable().body(format!("index unavailable: {e}")),
        (_, Err(e)) => HttpResponse::ServiceUnavailable().body(e.to_string()),
    }
}

/// One span and one set of metrics per request, labelled by the route
/// pattern (bounded), never by the concrete path (which carries UIDs).
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let metrics = req
        .app_data::<web::Data<DicomwebState>>()
        .map(|s| s.metrics.clone());
    let span = tracing::info_span!("http_request", %method, %route, status = tracing::field::Empty);
    let started = Instant::now();
    let response = next.call(req).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    span.record("status", status);
    if let Some(metrics) = metrics {
        let status_label = status.to_string();
        metrics
            .http_requests
            .with_label_values(&[&method, &route, &status_label])
            .inc();
        metrics
            .http_request_seconds
            .with_label_values(&[&method, &route])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}
