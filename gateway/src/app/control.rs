//! The operator's handle on the running pipeline, behind the admin API:
//! route state actions (checked, persisted, audited), live views of routes,
//! circuits and models, and reload (in `reload`). Everything here takes
//! effect without a restart; nothing here talks HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::audit::{self, AuditEntry};
use crate::config::GatewayConfig;
use crate::egress::EgressHandle;
use crate::infer::{CircuitRegistry, CircuitSnapshot, CircuitState};
use crate::jobs::{LoadedSummary, ModelCache, ModelHealth};
use crate::models::{ModelId, ModelRepository};
use crate::route::{
    Deployment, OperatorRequest, RouteCommand, RouteState, RouteStateStore, RoutesHandle,
    StateError, effective_model,
};
use crate::sites::SharedSites;
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
    /// The configuration the process started with: what every setting a
    /// reload cannot apply still comes from.
    pub config: GatewayConfig,
    /// The sites DIMSE negotiation checks; a reload replaces them.
    pub sites: SharedSites,
    /// The forwarding queue; a reload changes its destinations.
    pub egress: EgressHandle,
    /// What reload compares a new configuration with; held for a whole
    /// reload, so two cannot interleave.
    pub in_force: tokio::sync::Mutex<super::reload::InForce>,
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
