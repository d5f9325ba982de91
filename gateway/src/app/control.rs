//! The operator's handle on the running pipeline, behind the admin API:
//! route state actions (checked, persisted, audited), live views of routes,
//! circuits and models, and reload. Everything here takes effect without a
//! restart; nothing here talks HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::audit::{self, AuditEntry};
use crate::config::GatewayConfig;
use crate::infer::{CircuitRegistry, CircuitSnapshot, CircuitState};
use crate::jobs::{LoadedSummary, ModelCache, ModelHealth};
use crate::models::{ModelId, ModelRepository};
use crate::route::{
    Deployment, OperatorRequest, RouteCommand, RouteState, RouteStateStore, RouteTable,
    RoutesHandle, StateError, effective_model,
};
use crate::telemetry::Metrics;

pub use super::route_health::route_health;

/// The pipeline's live parts an operator acts on. Share it in an `Arc`.
pub struct Control {
    pub routes: RoutesHandle,
    pub states: Arc<RouteStateStore>,
    pub models: Arc<ModelCache>,
    pub circuits: Arc<CircuitRegistry>,
    pub metrics: Metrics,
    /// The index database (audit trail).
    pub index_path: PathBuf,
    /// The configuration in force, for reload to compare against.
    pub config: GatewayConfig,
}

/// One route as an operator sees it: configuration, state, what serves now.
#[derive(Debug, Clone, Serialize)]
pub struct RouteView {
    pub name: String,
    pub level: &'static str,
    /// Enabled in the routes file.
    pub enabled: bool,
    /// The configured primary.
    pub model: String,
    /// The version serving new series now (pin, promotion or config; a
    /// canary takes its share on top).
    pub serving: String,
    pub serving_source: &'static str,
    pub fallback: Vec<String>,
    pub terminal: &'static str,
    pub timeout_ms: u64,
    pub rollback_to: Option<String>,
    pub destinations: Vec<String>,
    /// `active`, `forced_fallback`, `draining`, `disabled`.
    pub status: &'static str,
    /// Whether the step that would run first can serve: `ready`,
    /// `degraded` (a fallback model would serve) or `down` (only the
    /// terminal step is left). See [`route_health`].
    pub health: &'static str,
    pub state: RouteState,
    /// Each model of the chain (serving version first): file and circuit.
    pub chain: Vec<ChainStepView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainStepView {
    pub model: String,
    /// `ok`, `missing`, `mismatch`, `unreadable`, or `not_in_repository`.
    pub file: String,
    /// Loaded by an engine now.
    pub loaded: bool,
    /// `closed` when no call has been made yet.
    pub circuit: CircuitState,
    pub circuit_detail: Option<CircuitSnapshot>,
    /// Its last load failure or health probe.
    pub health: ModelHealth,
}

/// What a reload changed.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    pub routes: usize,
    pub models: usize,
    pub unloaded: Vec<String>,
    /// Settings that differ from the running ones but only apply at the
    /// next start (listeners, data directory, …).
    pub restart_required: Vec<String>,
}

/// A reload refused: nothing changed.
#[derive(Debug, thiserror::Error)]
#[error("reload refused ({} problem{}): {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("; "))]
pub struct ReloadRefused(pub Vec<String>);

impl Control {
    /// Applies one operator action: checked against the routes and models
    /// in force (a version put into service must be deployed, match its
    /// SHA-256 and load healthy first), then persisted with its audit entry.
    pub async fn execute(
        self: &Arc<Self>,
        actor: &str,
        route: &str,
        reason: &str,
        command: RouteCommand,
    ) -> Result<RouteState, StateError> {
        let control = Arc::clone(self);
        let (actor, route, reason) = (actor.to_string(), route.to_string(), reason.to_string());
        let runtime = tokio::runtime::Handle::current();
        let result = tokio::task::spawn_blocking(move || {
            let table = control.routes.current();
            let repository = control.models.repository();
            let models = Arc::clone(&control.models);
            control.states.execute(
                Deployment {
                    routes: &table,
                    models: &repository,
                },
                OperatorRequest {
                    route: &route,
                    actor: &actor,
                    reason: &reason,
                },
                command,
                // Load and health-check before traffic moves: no gap.
                |model: &ModelId| {
                    runtime
                        .block_on(models.get(model))
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                },
            )
        })
        .await
        .map_err(|e| StateError::Database(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        self.refresh_state_metrics();
        result
    }

    /// Every route with its state, serving version and chain health.
    pub async fn route_views(&self) -> Vec<RouteView> {
        let table = self.routes.current();
        let states = self.states.snapshot();
        let repository = self.models.repository();
        let loaded = self.models.loaded().await;
        let now_ms = crate::time::unix_millis();
        table
            .routes()
            .iter()
            .map(|route| {
                let state = states.get(&route.name).cloned().unwrap_or_default();
                // No study: the canary share is shown in `state`, not here.
                let step = effective_model(route, &without_canary(&state), "", now_ms);
                let mut models = vec![step.model.clone()];
                models.extend(route.fallback.iter().cloned());
                let chain: Vec<ChainStepView> = models
                    .iter()
                    .map(|model| self.chain_step(&repository, &loaded, model))
                    .collect();
                let status = status_of(route.enabled, &state, now_ms);
                RouteView {
                    name: route.name.clone(),
                    level: route.level.as_str(),
                    enabled: route.enabled,
                    model: route.model.to_string(),
                    serving: step.model.to_string(),
                    serving_source: step.source.as_str(),
                    fallback: route.fallback.iter().map(ToString::to_string).collect(),
                    terminal: route.terminal.as_str(),
                    timeout_ms: route
                        .timeout
                        .unwrap_or(self.config.pipeline.attempt_timeout)
                        .as_millis() as u64,
                    rollback_to: route.rollback_to.map(|v| v.to_string()),
                    destinations: route.destinations.clone(),
                    status,
                    health: route_health(status == "forced_fallback", &chain),
                    state,
                    chain,
                }
            })
            .collect()
    }

    fn chain_step(
        &self,
        repository: &ModelRepository,
        loaded: &[LoadedSummary],
        model: &ModelId,
    ) -> ChainStepView {
        let file = match repository.get(&model.name, model.version) {
            Some(entry) => entry.check_file().as_str().to_string(),
            None => "not_in_repository".to_string(),
        };
        let version = model.version.to_string();
        let circuit = self.circuits.find(model).map(|(_, snapshot)| snapshot);
        ChainStepView {
            model: model.to_string(),
            file,
            loaded: loaded
                .iter()
                .any(|l| l.model == model.name && l.version == version),
            circuit: circuit.as_ref().map_or(CircuitState::Closed, |c| c.state),
            circuit_detail: circuit,
            health: self.models.health(model),
        }
    }

    /// Re-reads the configuration file and validates all of it, rescans
    /// the model repository and checks the routes file against it; only if
    /// everything passes do the new models and routes go into force. A
    /// refused reload changes nothing and says why. Both outcomes are
    /// audited under `actor`.
    pub async fn reload(self: &Arc<Self>, actor: &str) -> Result<ReloadReport, ReloadRefused> {
        let outcome = self.try_reload().await;
        let detail = match &outcome {
            Ok(report) => serde_json::json!({ "outcome": "reloaded", "report": report }),
            Err(refused) => serde_json::json!({ "outcome": "refused", "problems": refused.0 }),
        };
        let action = if outcome.is_ok() {
            "config.reload"
        } else {
            "config.reload_refused"
        };
        if let Err(e) = self.audit(actor, action, detail).await {
            tracing::error!(error = %e, "cannot audit a reload");
        }
        match &outcome {
            Ok(report) => tracing::info!(actor, ?report, "configuration reloaded"),
            Err(refused) => {
                tracing::warn!(actor, problems = ?refused.0, "configuration reload refused; the running configuration stays")
            }
        }
        outcome
    }

    async fn try_reload(&self) -> Result<ReloadReport, ReloadRefused> {
        let running = &self.config;
        let source = running.source.clone();
        let cli = running.cli.clone();
        let fresh =
            tokio::task::spawn_blocking(move || crate::config::load(source.as_deref(), &cli))
                .await
                .map_err(|e| ReloadRefused(vec![format!("reload task: {e}")]))?
                .map_err(|e| ReloadRefused(e.0))?;
        let restart_required = restart_required(running, &fresh);

        let models_dir = running.pipeline.models_dir.clone();
        let repository = tokio::task::spawn_blocking(move || ModelRepository::open(&models_dir))
            .await
            .map_err(|e| ReloadRefused(vec![format!("reload task: {e}")]))?
            .map_err(|e| ReloadRefused(vec![format!("model repository: {e}")]))?;
        let mut problems: Vec<String> = repository
            .invalid()
            .iter()
            .map(|m| format!("model {}: {}", m.dir.display(), m.problems.join("; ")))
            .collect();
        // The routes file as it is now, checked against the new models.
        let table = match &running.pipeline.routes_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| vec![format!("cannot read routes file {}: {e}", path.display())])
                .and_then(|text| RouteTable::from_toml(&text).map_err(|e| e.problems())),
            None => Ok(RouteTable::embedded_default()),
        };
        let destinations: Vec<String> = running
            .destinations
            .iter()
            .map(|d| d.name.clone())
            .collect();
        match table {
            Ok(table) => {
                if let Err(e) = table.check(
                    &|id| repository.get(&id.name, id.version).is_some(),
                    &destinations,
                ) {
                    problems.extend(e.problems());
                }
            }
            Err(p) => problems.extend(p),
        }
        if !problems.is_empty() {
            return Err(ReloadRefused(problems));
        }
        let models = repository.entries().len();
        let unloaded = self.models.replace_repository(Arc::new(repository)).await;
        let routes = match self.routes.reload_now() {
            Ok(_) => self.routes.current().routes().len(),
            // Only if the file changed between the check and now.
            Err(e) => return Err(ReloadRefused(e.problems())),
        };
        Ok(ReloadReport {
            routes,
            models,
            unloaded: unloaded.iter().map(ToString::to_string).collect(),
            restart_required,
        })
    }

    /// Appends one entry to the audit trail.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> rusqlite::Result<i64> {
        let path = self.index_path.clone();
        let entry = AuditEntry {
            actor: actor.to_string(),
            action: action.to_string(),
            detail,
        };
        tokio::task::spawn_blocking(move || audit::append_to(&path, &entry))
            .await
            .unwrap_or_else(|e| Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
    }

    /// Sets `gateway_route_operator_state{route,state}`: 1 for the state
    /// each route is in, 0 for the others.
    pub fn refresh_state_metrics(&self) {
        let table = self.routes.current();
        let states = self.states.snapshot();
        let now_ms = crate::time::unix_millis();
        let gauge = &self.metrics.pipeline.route_state;
        for route in table.routes() {
            let state = states.get(&route.name).cloned().unwrap_or_default();
            let status = status_of(route.enabled, &state, now_ms);
            for candidate in ROUTE_STATUSES {
                gauge
                    .with_label_values(&[route.name.as_str(), candidate])
                    .set(i64::from(candidate == status));
            }
            let pinned = i64::from(state.pinned.is_some());
            gauge
                .with_label_values(&[route.name.as_str(), "pinned"])
                .set(pinned);
        }
    }
}

/// The statuses `gateway_route_operator_state` reports (plus `pinned`).
pub const ROUTE_STATUSES: [&str; 4] = ["active", "forced_fallback", "draining", "disabled"];

fn status_of(enabled: bool, state: &RouteState, now_ms: i64) -> &'static str {
    if !enabled || state.disabled {
        "disabled"
    } else if state.draining {
        "draining"
    } else if state
        .forced_fallback
        .as_ref()
        .is_some_and(|f| f.until_ms.is_none_or(|until| now_ms < until))
    {
        "forced_fallback"
    } else {
        "active"
    }
}

fn without_canary(state: &RouteState) -> RouteState {
    RouteState {
        canary: None,
        ..state.clone()
    }
}

/// Settings a reload cannot apply to a running process.
fn restart_required(running: &GatewayConfig, fresh: &GatewayConfig) -> Vec<String> {
    let mut keys = Vec::new();
    let mut differs = |key: &str, changed: bool| {
        if changed {
            keys.push(key.to_string());
        }
    };
    let (a, b) = (&running.effective, &fresh.effective);
    differs("gateway", toml_of(&a.gateway) != toml_of(&b.gateway));
    differs("dimse", toml_of(&a.dimse) != toml_of(&b.dimse));
    differs("dicomweb", toml_of(&a.dicomweb) != toml_of(&b.dicomweb));
    differs("metrics", toml_of(&a.metrics) != toml_of(&b.metrics));
    differs("pipeline", toml_of(&a.pipeline) != toml_of(&b.pipeline));
    differs("admin", toml_of(&a.admin) != toml_of(&b.admin));
    differs("audit", toml_of(&a.audit) != toml_of(&b.audit));
    keys
}

fn toml_of<T: Serialize>(value: &T) -> String {
    toml::to_string(value).unwrap_or_default()
}
