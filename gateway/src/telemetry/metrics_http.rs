//! `GET /metrics` (Prometheus text format) and a liveness probe, on their own
//! small listener so scraping never competes with DICOM traffic.

use std::net::SocketAddr;

use actix_web::{App, HttpResponse, HttpServer, web};

use super::Metrics;

async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// Binds `addr` and returns the bound address and the running server. The
/// server stops when its handle is told to or when the returned future is
/// dropped.
pub fn serve_metrics(
    addr: SocketAddr,
    registry: Metrics,
) -> std::io::Result<(SocketAddr, actix_web::dev::Server)> {
    let data = web::Data::new(registry);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/health/live", web::get().to(live))
    })
    .workers(1)
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(addr)?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    Ok((bound, server.run()))
}
