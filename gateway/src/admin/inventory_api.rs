//! What is deployed and how it is doing: models (`GET /v1/models`),
//! engines and their circuits (`GET /v1/engines`), health
//! (`GET /v1/health`) and the caller's own identity (`GET /v1/whoami`).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AdminState;
use super::auth::Authenticated;
use super::problem::AdminError;
use super::roles::Operation;
use crate::infer::CircuitState;
use crate::models::FileStatus;

pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.route("/whoami", web::get().to(whoami))
        .route("/health", web::get().to(health))
        .route("/models", web::get().to(models))
        .route("/engines", web::get().to(engines));
}

async fn whoami(caller: Authenticated) -> HttpResponse {
    let operator = caller.0;
    HttpResponse::Ok().json(json!({
        "name": operator.name,
        "role": operator.role,
        "token_id": operator.token_id,
    }))
}

/// Every version in the repository: manifest, whether its file matches
/// its SHA-256 now, whether an engine has it loaded, which routes name it;
/// and the version folders that could not be read, with why.
async fn models(
    state: web::Data<AdminState>,
    caller: Authenticated,
) -> Result<HttpResponse, AdminError> {
    caller
        .require(&state, Operation::ReadModels, || json!({}))
        .await?;
    let control = state.control()?;
    let repository = control.models.repository();
    let loaded = control.models.loaded().await;
    let table = control.routes.current();
    // Checking a file hashes it: off the async threads.
    let models = tokio::task::spawn_blocking(move || {
        let entries: Vec<serde_json::Value> = repository
            .entries()
            .iter()
            .map(|entry| {
                let id = entry.id();
                let manifest = entry.manifest();
                let status = entry.check_file();
                let engine = loaded
                    .iter()
                    .find(|l| l.model == id.name && l.version == id.version.to_string())
                    .map(|l| l.engine);
                let routes: Vec<&str> = table
                    .routes()
                    .iter()
                    .filter(|r| r.model == id || r.fallback.contains(&id))
                    .map(|r| r.name.as_str())
                    .collect();
                json!({
                    "model": id.to_string(),
                    "name": id.name,
                    "version": id.version.to_string(),
                    "sha256": manifest.sha256,
                    "file": status.as_str(),
                    "file_detail": match &status {
                        FileStatus::Mismatch { actual } => Some(format!("file SHA-256 is {actual}")),
                        FileStatus::Unreadable(why) => Some(why.clone()),
                        _ => None,
                    },
                    "loaded": engine.is_some(),
                    "engine": engine,
                    "task": manifest.task.as_str(),
                    "demo": manifest.demo,
                    "description": manifest.description,
                    "routes": routes,
                })
            })
            .collect();
        let invalid: Vec<serde_json::Value> = repository
            .invalid()
            .iter()
            .map(|m| json!({ "dir": m.dir.display().to_string(), "problems": m.problems }))
            .collect();
        json!({ "models": entries, "invalid": invalid })
    })
    .await
    .map_err(AdminError::internal)?;
    Ok(HttpResponse::Ok().json(models))
}

/// The engine configuration models are built with (kind and limits only:
/// no addresses or credentials) and every circuit breaker's state.
async fn engines(
    state: web::Data<AdminState>,
    caller: Authenticated,
) -> Result<HttpResponse, AdminError> {
    caller
        .require(&state, Operation::ReadEngines, || json!({}))
        .await?;
    let control = state.control()?;
    let settings = control.models.engine_settings();
    let engine = &settings.engine;
    let limits = engine.limits();
    let policy = control.circuits.policy();
    let circuits: Vec<serde_json::Value> = control
        .circuits
        .snapshots()
        .into_iter()
        .map(|(key, snapshot)| {
            let mut value = json!({
                "engine": key.engine,
                "model": format!("{}@{}", key.model, key.version),
            });
            if let (Some(object), Ok(serde_json::Value::Object(detail))) =
                (value.as_object_mut(), serde_json::to_value(&snapshot))
            {
                object.extend(detail);
            }
            value
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "engine": {
            "kind": engine.kind(),
            "max_concurrent": limits.max_concurrent.get(),
            "max_queued": limits.max_queued,
        },
        // Whether models may be served by Triton (never its address).
        "triton_configured": settings.triton.is_some(),
        "circuit_policy": {
            "consecutive_failures": policy.consecutive_failures.get(),
            "error_rate": policy.error_rate,
            "window_s": policy.window.as_secs_f64(),
            "window_calls": policy.window_calls.get(),
            "min_calls": policy.min_calls.get(),
            "open_for_s": policy.open_for.as_secs_f64(),
            "half_open_probes": policy.half_open_probes.get(),
        },
        "circuits": circuits,
    })))
}

/// `ok`, or `degraded` while a circuit is not closed or a route's model
/// file fails its check; 503 when the index database does not answer.
async fn health(
    state: web::Data<AdminState>,
    caller: Authenticated,
) -> Result<HttpResponse, AdminError> {
    caller
        .require(&state, Operation::ReadHealth, || json!({}))
        .await?;
    let index = state
        .index
        .run(|conn| conn.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get::<_, i64>(0)))
        .await;
    let uptime_s = state.started.elapsed().as_secs();
    let mut body = json!({
        "pipeline": state.control.is_some(),
        "uptime_s": uptime_s,
        "index": match &index {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        },
        "audit_entries": index.as_ref().ok(),
    });
    let mut degraded = Vec::new();
    if let Some(control) = &state.control {
        let views = control.route_views().await;
        for view in &views {
            for step in &view.chain {
                if step.circuit != CircuitState::Closed {
                    degraded.push(format!(
                        "route {}: circuit of {} is {}",
                        view.name,
                        step.model,
                        step.circuit.as_str()
                    ));
                }
                if step.file != "ok" {
                    degraded.push(format!(
                        "route {}: model file of {} is {}",
                        view.name, step.model, step.file
                    ));
                }
            }
        }
        body["routes"] = json!(views.len());
        body["models_loaded"] = json!(control.models.loaded().await.len());
    }
    body["problems"] = json!(degraded);
    if index.is_err() {
        body["status"] = json!("unavailable");
        return Ok(HttpResponse::ServiceUnavailable().json(body));
    }
    body["status"] = json!(if degraded.is_empty() {
        "ok"
    } else {
        "degraded"
    });
    Ok(HttpResponse::Ok().json(body))
}
