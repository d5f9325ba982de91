//! The operator side of the gateway: an HTTPS admin API on its own
//! listener (bound to loopback by default) and the CLI that talks to it.
//!
//! Operators authenticate with bearer tokens ([`tokens`]) whose name is
//! their identity and whose [`roles::Role`] decides what they may do. Route
//! actions go through [`crate::app::Control`], which checks, persists and
//! audits them; this module adds what happens at the door: every forbidden
//! or refused attempt is audited under the caller's identity and counted in
//! `gateway_admin_operator_actions_total`. Errors become responses only in
//! [`problem`].
//!
//! - `server.rs`: listener, TLS, request span, body limits.
//! - `auth.rs`: token → [`tokens::Operator`], role checks.
//! - `routes_api.rs`, `inventory_api.rs`, `audit_api.rs`: the endpoints.
//! - `action.rs`: a route action's JSON body → `RouteCommand`.
//! - `client.rs`, `cli.rs`, `render.rs`: `dicom-gateway routes …`, `audit …`.

mod action;
mod audit_api;
mod auth;
pub mod cli;
pub mod client;
mod inventory_api;
pub mod problem;
mod render;
pub mod roles;
mod routes_api;
mod server;
pub mod tokens;

pub use action::ActionBody;
pub use problem::AdminError;
pub use roles::{Operation, Role};
pub use server::serve_admin;
pub use tokens::{AdminTokenError, AdminTokenRecord, AdminTokenStore, Operator};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::app::Control;
use crate::audit::AuditEntry;
use crate::config::AdminConfig;
use crate::store::IndexReader;
use crate::telemetry::Metrics;

/// What every admin handler can reach (as `web::Data<AdminState>`).
pub struct AdminState {
    pub config: AdminConfig,
    /// The running pipeline's controls; `None` when the pipeline is off
    /// (route, model and reload requests are then answered 409).
    pub control: Option<Arc<Control>>,
    /// Read-only connections: token lookups, audit listing and verify.
    pub index: IndexReader,
    /// The index database, for audit entries written here.
    pub index_path: PathBuf,
    pub metrics: Metrics,
    pub started: Instant,
}

/// How an attempt ended, as the metric's `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused,
    Forbidden,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Forbidden => "forbidden",
        }
    }
}

impl AdminState {
    /// The pipeline's controls, or the problem that says it is off.
    pub fn control(&self) -> Result<&Arc<Control>, AdminError> {
        self.control.as_ref().ok_or(AdminError::PipelineDisabled)
    }

    /// Counts one attempt in `gateway_admin_operator_actions_total`.
    pub fn count(&self, operation: Operation, outcome: Outcome) {
        self.metrics
            .pipeline
            .operator_actions
            .with_label_values(&[operation.action(), outcome.as_str()])
            .inc();
    }

    /// Records a forbidden or refused attempt in the audit trail (action
    /// `<operation>.forbidden` / `.refused`) and counts it. A failure to
    /// write is logged; the caller's answer does not change.
    pub async fn record_attempt(
        &self,
        operator: &Operator,
        operation: Operation,
        outcome: Outcome,
        detail: serde_json::Value,
    ) {
        self.count(operation, outcome);
        let entry = AuditEntry {
            actor: operator.name.clone(),
            action: format!("{}.{}", operation.action(), outcome.as_str()),
            detail,
        };
        let path = self.index_path.clone();
        let written =
            tokio::task::spawn_blocking(move || crate::audit::append_to(&path, &entry)).await;
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot audit a refused admin request"),
            Err(e) => tracing::error!(error = %e, "cannot audit a refused admin request"),
        }
        tracing::warn!(
            actor = %operator.name,
            action = operation.action(),
            outcome = outcome.as_str(),
            "admin request not carried out"
        );
    }
}
