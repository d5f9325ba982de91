//! Routes: live views (`GET /v1/routes`, `GET /v1/routes/{route}`) and
//! operator actions (`POST /v1/routes/{route}/{action}` with a JSON body
//! carrying the mandatory `reason`).

use std::time::SystemTime;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::action::{self, ActionBody};
use super::auth::Authenticated;
use super::problem::AdminError;
use super::roles::Operation;
use super::server::json_body;
use super::{AdminState, Outcome};

pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.route("/routes", web::get().to(list))
        .route("/routes/{route}", web::get().to(show))
        .route("/routes/{route}/{action}", web::post().to(act));
}

async fn list(
    state: web::Data<AdminState>,
    caller: Authenticated,
) -> Result<HttpResponse, AdminError> {
    caller
        .require(&state, Operation::ReadRoutes, || json!({}))
        .await?;
    let control = state.control()?;
    Ok(HttpResponse::Ok().json(json!({ "routes": control.route_views().await })))
}

async fn show(
    state: web::Data<AdminState>,
    caller: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let route = path.into_inner();
    caller
        .require(&state, Operation::ReadRoutes, || json!({ "route": route }))
        .await?;
    let view = state
        .control()?
        .route_views()
        .await
        .into_iter()
        .find(|v| v.name == route)
        .ok_or_else(|| AdminError::NotFound(format!("route `{route}` is not configured")))?;
    Ok(HttpResponse::Ok().json(view))
}

/// One operator action. In order: the caller's token (401), the action's
/// name (404), the caller's role (403, audited), the body (400/413/415,
/// audited), then the route state's own checks (audited when refused;
/// `Control::execute` audits success with before and after).
async fn act(
    req: HttpRequest,
    state: web::Data<AdminState>,
    caller: Authenticated,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, AdminError> {
    let received = SystemTime::now();
    let (route, action_name) = path.into_inner();
    let operation = Operation::route_action(&action_name).ok_or_else(|| {
        AdminError::NotFound(format!(
            "no route action `{action_name}` (flip, unflip, pin, unpin, promote, rollback, drain, undrain, disable, enable, canary, clear-canary, shadow, clear-shadow)"
        ))
    })?;
    let body = json_body::<ActionBody>(&req, payload, &state).await;
    // What the caller asked for, for the audit entry of a refusal.
    let given: Option<ActionBody> = body.as_ref().ok().cloned().flatten();
    let attempt = |error: Option<&AdminError>| {
        let mut detail = json!({
            "route": route,
            "reason": given.as_ref().and_then(ActionBody::reason),
            "request": given,
        });
        if let Some(error) = error {
            detail["error"] = json!(error.to_string());
            detail["problem"] = json!(error.slug());
        }
        detail
    };
    let operator = caller
        .require(&state, operation, || attempt(None))
        .await?
        .clone();

    let outcome = match body {
        Ok(body) => {
            let body = body.unwrap_or_default();
            match action::command(operation, &body, received) {
                Ok(command) => match state.control() {
                    Ok(control) => {
                        let reason = body.reason().unwrap_or_default();
                        control
                            .execute(&operator.name, &route, reason, command)
                            .await
                            .map_err(AdminError::from)
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(after) => {
            state.count(operation, Outcome::Ok);
            let view = match state.control() {
                Ok(control) => control
                    .route_views()
                    .await
                    .into_iter()
                    .find(|v| v.name == route),
                Err(_) => None,
            };
            Ok(HttpResponse::Ok().json(json!({
                "route": route,
                "action": operation.action(),
                "actor": operator.name,
                "state": after,
                "view": view,
            })))
        }
        Err(error) => {
            state
                .record_attempt(
                    &operator,
                    operation,
                    Outcome::Refused,
                    attempt(Some(&error)),
                )
                .await;
            Err(error)
        }
    }
}
