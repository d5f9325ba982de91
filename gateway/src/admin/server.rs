//! The admin listener: actix-web on its own address (loopback by default),
//! TLS by rustls with the DICOMweb certificate unless `[admin]` names
//! another, small JSON bodies only, and one span per request that names
//! the operator once the token is known.

use std::net::SocketAddr;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::problem::AdminError;
use super::{AdminState, audit_api, inventory_api, routes_api};

/// Path prefix of every authenticated endpoint.
pub const API_PREFIX: &str = "/v1";

/// Binds the admin listener; returns the bound address and the server.
pub fn serve_admin(state: AdminState) -> anyhow::Result<(SocketAddr, actix_web::dev::Server)> {
    // The token table must exist before the first lookup (read-only
    // connections cannot create it).
    let conn = crate::store::index::open(&state.index_path)?;
    super::tokens::create_schema(&conn)?;
    drop(conn);
    let listen = state.config.listen;
    let tls = match &state.config.tls {
        Some(files) => Some(crate::dicomweb::tls::server_config(files)?),
        None => None,
    };
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                AdminError::BadRequest(format!("bad query parameters: {e}")).into()
            }))
            .wrap(from_fn(observe))
            .route("/health/live", web::get().to(live))
            .service(
                web::scope(API_PREFIX)
                    .configure(inventory_api::register)
                    .configure(routes_api::register)
                    .configure(audit_api::register),
            )
            .default_service(web::to(no_such_endpoint))
    })
    .disable_signals()
    // Operator traffic is a request now and then: two workers are plenty.
    .workers(2)
    .tcp_nodelay(true)
    .shutdown_timeout(5)
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

async fn no_such_endpoint(req: HttpRequest) -> Result<HttpResponse, AdminError> {
    Err(AdminError::NotFound(format!(
        "no admin endpoint {} {}",
        req.method(),
        req.path()
    )))
}

/// Reads a JSON body of at most `admin.max_body_size` bytes. An empty
/// body is `None`; anything else must say `Content-Type: application/json`.
pub async fn json_body<T: DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &AdminState,
) -> Result<Option<T>, AdminError> {
    let limit = state.config.max_body_size;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(AdminError::PayloadTooLarge { limit });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| AdminError::BadRequest(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(AdminError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(AdminError::UnsupportedMediaType(format!(
            "the body must be application/json, not `{content_type}`"
        )));
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| AdminError::BadRequest(format!("bad JSON body: {e}")))
}

/// One span per request (method, route pattern, status, and the actor
/// once authenticated) and the shared HTTP metrics, labelled by pattern.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let metrics = req
        .app_data::<web::Data<AdminState>>()
        .map(|s| s.metrics.clone());
    let span = tracing::info_span!(
        "admin_request",
        %method,
        %route,
        actor = tracing::field::Empty,
        status = tracing::field::Empty
    );
    let started = Instant::now();
    let response = next.call(req).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    span.record("status", status);
    span.in_scope(|| {
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "admin request"
        )
    });
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
