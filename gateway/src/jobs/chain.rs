//! A route's steps for one job: the planned model, then its fallback
//! models, each through its engine's circuit breaker under the attempt
//! timeout; when all of them have been given up, the route's terminal step
//! (`store-only` or `forward-unprocessed`) is the caller's to run.

use std::time::Duration;

use super::queue::{Job, JobPurpose};
use crate::infer::{AttemptError, CircuitBreaker, Classification, Failure, LoadedModel};
use crate::models::ModelId;
use crate::route::{RouteState, RouteTable, Terminal};
use crate::telemetry::drift::{AcquisitionParams, InputStats};

/// What a job will try, in order.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub models: Vec<ModelId>,
    /// An operator forced the fallback: the first model is skipped.
    pub forced: Option<String>,
    /// What ends the chain; `None` for shadow jobs, which have no
    /// fallback: a failed shadow run is simply recorded.
    pub terminal: Option<Terminal>,
    pub timeout: Duration,
}

impl Plan {
    /// The plan for `job` under the routes and operator state in force now,
    /// so a flip applies to work already queued. A route removed since
    /// dispatch leaves the planned model and `store-only`.
    pub fn for_job(
        job: &Job,
        routes: &RouteTable,
        state: &RouteState,
        default_timeout: Duration,
        now_ms: i64,
    ) -> Plan {
        let route = routes.get(&job.route);
        let timeout = route.and_then(|r| r.timeout).unwrap_or(default_timeout);
        if job.purpose == JobPurpose::Shadow {
            return Plan {
                models: vec![job.model.clone()],
                forced: None,
                terminal: None,
                timeout,
            };
        }
        let mut models = vec![job.model.clone()];
        if let Some(route) = route {
            models.extend(route.fallback.iter().filter(|m| **m != job.model).cloned());
        }
        let forced = state
            .forced_fallback
            .as_ref()
            .filter(|f| f.until_ms.is_none_or(|until| now_ms < until))
            .map(|f| f.reason.clone());
        Plan {
            models,
            forced,
            terminal: Some(route.map_or(Terminal::StoreOnly, |r| r.terminal)),
            timeout,
        }
    }
}

/// A step given up, and why: recorded in the result, the audit trail and
/// `gateway_route_fallbacks_total`.
#[derive(Debug, Clone)]
pub(super) struct GivenUp {
    pub model: ModelId,
    /// 0 for the planned model, 1.. for fallback models.
    pub index: usize,
    /// A bounded label: `forced`, `model_unavailable`, `unsupported`,
    /// `circuit_open`, `timeout`, or an engine error kind.
    pub reason: &'static str,
    pub detail: String,
}

impl GivenUp {
    pub fn new(model: &ModelId, index: usize, reason: &'static str, detail: String) -> GivenUp {
        GivenUp {
            model: model.clone(),
            index,
            reason,
            detail: bounded(detail),
        }
    }

    pub fn from_attempt(model: &ModelId, index: usize, error: &AttemptError) -> GivenUp {
        GivenUp::new(model, index, error.reason(), error.to_string())
    }

    /// `primary` or `fallback`, the step label of metrics.
    pub fn step(&self) -> &'static str {
        step_name(self.index)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model": self.model.name,
            "version": self.model.version.to_string(),
            "step": self.step(),
            "reason": self.reason,
            "detail": self.detail,
        })
    }
}

/// What one model made of a job's images, with what monitoring needs.
pub(super) struct Scored {
    pub classification: Classification,
    /// Every image's scores came from the result cache.
    pub all_cached: bool,
    /// Engine time over the images that were not cached.
    pub inference: std::time::Duration,
    /// Acquisition parameters of the first image, for drift.
    pub acquisition: AcquisitionParams,
    /// Mean input statistics over the images, for drift.
    pub input: Option<InputStats>,
}

/// How the chain ended.
pub(super) enum ChainOutcome {
    /// A model answered.
    Served {
        index: usize,
        model: LoadedModel,
        scored: Scored,
        given_up: Vec<GivenUp>,
    },
    /// Every model was given up.
    Exhausted { given_up: Vec<GivenUp> },
}

/// `primary` for the planned model, `fallback` for the rest.
pub(super) fn step_name(index: usize) -> &'static str {
    if index == 0 { "primary" } else { "fallback" }
}

/// One sentence per step given up, for the SR and the results API:
/// `ct-hyperdensity@2.1.0: timeout (no answer within 2s)`.
pub(super) fn step_reason(given_up: &[GivenUp]) -> Option<String> {
    (!given_up.is_empty()).then(|| {
        given_up
            .iter()
            .map(|g| format!("{}: {} ({})", g.model, g.reason, g.detail))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// The outcome of one attempt as the breaker should count it.
pub(super) enum AttemptResult {
    Answered(Scored),
    GaveUp(AttemptError),
}

/// Records `outcome` on `permit`'s breaker: a timeout or an engine failure
/// counts against the engine; an answer closes the way.
pub(super) fn record(permit: crate::infer::Permit, outcome: &AttemptResult) {
    match outcome {
        AttemptResult::Answered(_) => permit.success(),
        AttemptResult::GaveUp(AttemptError::Timeout(_)) => permit.failure(Failure::Timeout),
        AttemptResult::GaveUp(AttemptError::Engine(e)) => permit.failure(Failure::from(e)),
        // Refused before the call: nothing to record.
        AttemptResult::GaveUp(AttemptError::CircuitOpen(_)) => drop(permit),
    }
}

/// Sets `gateway_circuit_state` for one breaker: 1 for its state now.
pub(super) fn publish_circuit(
    gauge: &prometheus::IntGaugeVec,
    engine: &str,
    model: &ModelId,
    breaker: &CircuitBreaker,
) {
    let now = breaker.state();
    let version = model.version.to_string();
    for state in [
        crate::infer::CircuitState::Closed,
        crate::infer::CircuitState::Open,
        crate::infer::CircuitState::HalfOpen,
    ] {
        gauge
            .with_label_values(&[
                engine,
                model.name.as_str(),
                version.as_str(),
                state.as_str(),
            ])
            .set(i64::from(state == now));
    }
}

/// Error texts end up in results and the audit trail: keep them short.
fn bounded(mut detail: String) -> String {
    const MAX: usize = 300;
    if detail.len() > MAX {
        let mut cut = MAX;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
        detail.push('…');
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{ForcedFallback, Level};

    const ROUTES: &str = r#"
        [[route]]
        name = "ct"
        model = "ct-hyperdensity@2.0.0"
        fallback = ["ct-hyperdensity@1.0.0", "forward-unprocessed"]
        timeout = "2s"
        level = "series"
    "#;

    fn job(purpose: JobPurpose, route: &str) -> Job {
        Job {
            id: 1,
            level: Level::Series,
            study_instance_uid: "1.2".into(),
            series_instance_uid: "1.2.3".into(),
            sop_instance_uid: None,
            site: "demo".into(),
            modality: "CT".into(),
            scanner: "other".into(),
            route: route.into(),
            model: ModelId {
                name: "ct-hyperdensity".into(),
                version: "2.0.0".parse().unwrap(),
            },
            purpose,
            destinations: vec![],
            attempts: 1,
            ready_after_ms: 0,
        }
    }

    #[test]
    fn a_production_job_tries_its_model_then_the_route_fallbacks() {
        let routes = RouteTable::from_toml(ROUTES).unwrap();
        let plan = Plan::for_job(
            &job(JobPurpose::Production, "ct"),
            &routes,
            &RouteState::default(),
            Duration::from_secs(30),
            0,
        );
        let models: Vec<String> = plan.models.iter().map(ToString::to_string).collect();
        assert_eq!(models, ["ct-hyperdensity@2.0.0", "ct-hyperdensity@1.0.0"]);
        assert_eq!(plan.terminal, Some(Terminal::ForwardUnprocessed));
        assert_eq!(plan.timeout, Duration::from_secs(2));
        assert!(plan.forced.is_none());
    }

    #[test]
    fn a_flip_skips_the_first_model_until_it_expires() {
        let routes = RouteTable::from_toml(ROUTES).unwrap();
        let state = RouteState {
            forced_fallback: Some(ForcedFallback {
                until_ms: Some(1_000),
                reason: "vendor advisory".into(),
            }),
            ..RouteState::default()
        };
        let job = job(JobPurpose::Production, "ct");
        let during = Plan::for_job(&job, &routes, &state, Duration::from_secs(30), 999);
        assert_eq!(during.forced.as_deref(), Some("vendor advisory"));
        let after = Plan::for_job(&job, &routes, &state, Duration::from_secs(30), 1_000);
        assert!(after.forced.is_none());
    }

    #[test]
    fn shadow_jobs_and_removed_routes_have_no_fallback_models() {
        let routes = RouteTable::from_toml(ROUTES).unwrap();
        let shadow = Plan::for_job(
            &job(JobPurpose::Shadow, "ct"),
            &routes,
            &RouteState::default(),
            Duration::from_secs(30),
            0,
        );
        assert_eq!(shadow.models.len(), 1);
        assert_eq!(shadow.terminal, None);
        let gone = Plan::for_job(
            &job(JobPurpose::Production, "removed"),
            &routes,
            &RouteState::default(),
            Duration::from_secs(30),
            0,
        );
        assert_eq!(gone.models.len(), 1);
        assert_eq!(gone.terminal, Some(Terminal::StoreOnly));
        assert_eq!(gone.timeout, Duration::from_secs(30));
    }

    #[test]
    fn reasons_read_as_one_line_per_step_and_are_bounded() {
        let model = ModelId {
            name: "m".into(),
            version: "1.0.0".parse().unwrap(),
        };
        let long = GivenUp::new(&model, 0, "engine_execution", "x".repeat(1000));
        assert!(long.detail.chars().count() <= 301);
        let reason = step_reason(&[
            GivenUp::new(&model, 0, "timeout", "no answer within 2s".into()),
            GivenUp::new(&model, 1, "circuit_open", "open".into()),
        ])
        .unwrap();
        assert_eq!(
            reason,
            "m@1.0.0: timeout (no answer within 2s); m@1.0.0: circuit_open (open)"
        );
        assert_eq!(step_reason(&[]), None);
    }
}
