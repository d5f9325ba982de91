//! The audit trail (`GET /v1/audit`, `GET /v1/audit/verify`) and
//! configuration reload (`POST /v1/reload`).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::auth::Authenticated;
use super::problem::AdminError;
use super::roles::Operation;
use super::server::json_body;
use super::{AdminState, Outcome};
use crate::audit::query::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::audit::{AuditQuery, list, verify_report};

pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit", web::get().to(audit_list))
        .route("/audit/verify", web::get().to(audit_verify))
        .route("/reload", web::post().to(reload));
}

/// `GET /v1/audit` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    since: Option<i64>,
    action: Option<String>,
    actor: Option<String>,
    limit: Option<usize>,
}

/// Entries oldest first. Without `since`: the newest `limit`; with it, the
/// `limit` entries after that sequence number. `next_since` continues.
async fn audit_list(
    state: web::Data<AdminState>,
    caller: Authenticated,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, AdminError> {
    let params = params.into_inner();
    caller
        .require(&state, Operation::ReadAudit, || json!({}))
        .await?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(AdminError::BadRequest(format!(
            "`limit` must be within 1-{MAX_LIMIT}"
        )));
    }
    let query = AuditQuery {
        since: params.since,
        action: params.action.filter(|a| !a.is_empty()),
        actor: params.actor.filter(|a| !a.is_empty()),
        limit,
    };
    let entries = state.index.run(move |conn| list(conn, &query)).await?;
    let next_since = entries.last().map(|e| e.seq).or(params.since);
    Ok(HttpResponse::Ok().json(json!({ "entries": entries, "next_since": next_since })))
}

/// 200 `{ok: true, entries, head_seq, head_hash}` when the whole chain
/// verifies; 409 problem+json naming the first entry that does not (so a
/// monitoring probe fails without reading the body).
async fn audit_verify(
    state: web::Data<AdminState>,
    caller: Authenticated,
) -> Result<HttpResponse, AdminError> {
    caller
        .require(&state, Operation::VerifyAudit, || json!({}))
        .await?;
    let report = state.index.run(verify_report).await?;
    match report.broken {
        Some(chain_break) => {
            tracing::error!(seq = chain_break.seq, reason = %chain_break.reason, "audit trail does not verify");
            Err(AdminError::ChainBroken(chain_break, report.verified))
        }
        None => Ok(HttpResponse::Ok().json(json!({
            "ok": true,
            "entries": report.verified,
            "head_seq": report.head_seq,
            "head_hash": report.head_hash,
        }))),
    }
}

/// Body of `POST /v1/reload`: none, or `{}`. (`Control::reload` records
/// the actor and the outcome, not a reason, so none is asked for.)
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadBody {}

/// Re-reads and validates the whole configuration; 200 with what changed,
/// or 422 with every problem while the running configuration stays.
/// `Control::reload` audits both outcomes under the caller's identity.
async fn reload(
    req: HttpRequest,
    state: web::Data<AdminState>,
    caller: Authenticated,
    payload: web::Payload,
) -> Result<HttpResponse, AdminError> {
    let body = json_body::<ReloadBody>(&req, payload, &state).await;
    let operator = caller
        .require(&state, Operation::Reload, || json!({}))
        .await?
        .clone();
    let refused = |error: AdminError| async {
        state
            .record_attempt(
                &operator,
                Operation::Reload,
                Outcome::Refused,
                json!({ "error": error.to_string(), "problem": error.slug() }),
            )
            .await;
        error
    };
    if let Err(e) = body {
        return Err(refused(e).await);
    }
    let control = match state.control() {
        Ok(control) => control,
        Err(e) => return Err(refused(e).await),
    };
    match control.reload(&operator.name).await {
        Ok(report) => {
            state.count(Operation::Reload, Outcome::Ok);
            Ok(HttpResponse::Ok().json(json!({ "reloaded": true, "report": report })))
        }
        Err(refusal) => {
            // Audited by Control::reload (`config.reload_refused`).
            state.count(Operation::Reload, Outcome::Refused);
            Err(AdminError::ReloadRefused(refusal.0))
        }
    }
}
