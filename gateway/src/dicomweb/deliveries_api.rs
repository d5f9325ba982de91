//! `GET /api/v1/deliveries` and `POST /api/v1/deliveries/{id}/retry`: the
//! forwarding queue as a PACS administrator sees it, dead letters included.
//!
//! Deliveries span sites, so only a token that reads every site (`*`) may
//! list them, and requeueing a dead letter also needs the write scope; the
//! requeue is audited with the token's identity.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::DicomwebState;
use super::auth::Authenticated;
use super::error::DicomWebError;
use crate::auth::{Principal, ReadSites, Scope};
use crate::egress::{DeliveryFilter, DeliveryState, QueueError};

pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/deliveries", web::get().to(list_deliveries))
        .route(
            "/api/v1/deliveries/{id}/retry",
            web::post().to(retry_delivery),
        );
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    destination: Option<String>,
    limit: Option<u32>,
}

fn require_all_sites(principal: &Principal) -> Result<(), DicomWebError> {
    match principal.read_sites {
        ReadSites::All => Ok(()),
        ReadSites::Only(_) => Err(DicomWebError::Forbidden("read of all sites")),
    }
}

fn queue_error(e: QueueError) -> DicomWebError {
    if e.is_caller_error() {
        DicomWebError::BadRequest(e.to_string())
    } else {
        DicomWebError::internal(e)
    }
}

async fn list_deliveries(
    auth: Authenticated,
    query: web::Query<ListQuery>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    require_all_sites(auth.require(Scope::Read)?)?;
    let egress = state
        .egress
        .as_ref()
        .ok_or_else(|| DicomWebError::NotFound("forwarding is not running".into()))?;
    let wanted = match query.state.as_deref() {
        None => None,
        Some("pending") => Some(DeliveryState::Pending),
        Some("delivered") => Some(DeliveryState::Delivered),
        Some("dead") => Some(DeliveryState::Dead),
        Some(other) => {
            return Err(DicomWebError::BadRequest(format!(
                "state `{other}` is not one of pending, delivered, dead"
            )));
        }
    };
    let records = egress
        .list(DeliveryFilter {
            state: wanted,
            destination: query.destination.clone(),
            limit: query.limit.unwrap_or(100).min(1000),
        })
        .await
        .map_err(queue_error)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deliveries": records })))
}

async fn retry_delivery(
    auth: Authenticated,
    path: web::Path<i64>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Write)?;
    require_all_sites(principal)?;
    let egress = state
        .egress
        .as_ref()
        .ok_or_else(|| DicomWebError::NotFound("forwarding is not running".into()))?;
    let actor = format!("token:{}", principal.token_id);
    let record = egress
        .retry_dead(path.into_inner(), &actor)
        .await
        .map_err(queue_error)?;
    Ok(HttpResponse::Ok().json(record))
}
