//! Health of the model versions the pipeline uses, for routes to report
//! and circuits to act on. The [`HealthBook`] remembers the last load
//! failure of a version that could not come up and the last probe of each
//! loaded one; [`spawn_health_watch`] probes the loaded versions (for
//! Triton, `ModelReady`) so a model a server dropped after load shows in
//! `routes list` before a series fails on it.
//!
//! A failed probe counts as one engine failure on the version's circuit
//! breaker, so a server that keeps saying "not ready" opens the circuit
//! without a series paying for it. A passing probe does not close a
//! circuit: only a real call does, because "ready" does not prove that
//! inference works (a model can be ready and return NaN).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::watch;

use super::ModelCache;
use super::chain::publish_circuit;
use crate::infer::{CircuitRegistry, EngineError, Failure, Fault};
use crate::models::ModelId;
use crate::telemetry::PipelineMetrics;

/// What the gateway knows of one model version's ability to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Loaded, and its last probe (if any) passed.
    Ready,
    /// Loaded, but its engine's last probe failed (a Triton server that
    /// unloaded it or lost its GPU).
    NotReady,
    /// Its last load failed: not in the repository, a hash mismatch, a
    /// remote server that says it is not ready or cannot be reached.
    Unavailable,
    /// Not asked for yet: it loads on first use.
    NotLoaded,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Ready => "ready",
            HealthState::NotReady => "not_ready",
            HealthState::Unavailable => "unavailable",
            HealthState::NotLoaded => "not_loaded",
        }
    }
}

/// One version's health, for the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelHealth {
    pub state: HealthState,
    /// Why it is not ready or unavailable.
    pub detail: Option<String>,
    /// RFC 3339 UTC time of the load or probe this comes from.
    pub checked_at: Option<String>,
}

impl ModelHealth {
    /// False when the version is known not to serve now; a version not
    /// loaded yet may well serve.
    pub fn can_serve(&self) -> bool {
        !matches!(self.state, HealthState::NotReady | HealthState::Unavailable)
    }
}

/// The last known health per version. Entries exist only for versions
/// something asked for (routes, operator actions) and go at a reload
/// unless the version stays loaded (a failed one gets another chance), so
/// the book stays as small as the repository.
#[derive(Debug, Default)]
pub(super) struct HealthBook {
    entries: Mutex<HashMap<ModelId, Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    state: HealthState,
    detail: Option<String>,
    at: SystemTime,
}

impl HealthBook {
    /// Records `state` for `id` and returns the state it replaces.
    pub(super) fn record(
        &self,
        id: &ModelId,
        state: HealthState,
        detail: Option<String>,
    ) -> HealthState {
        let entry = Entry {
            state,
            detail,
            at: SystemTime::now(),
        };
        self.lock()
            .insert(id.clone(), entry)
            .map_or(HealthState::NotLoaded, |old| old.state)
    }

    /// Keeps only the versions `keep` says yes to.
    pub(super) fn retain(&self, keep: impl Fn(&ModelId) -> bool) {
        self.lock().retain(|id, _| keep(id));
    }

    pub(super) fn get(&self, id: &ModelId) -> ModelHealth {
        match self.lock().get(id) {
            Some(entry) => ModelHealth {
                state: entry.state,
                detail: entry.detail.clone(),
                checked_at: Some(humantime::format_rfc3339_millis(entry.at).to_string()),
            },
            None => ModelHealth {
                state: HealthState::NotLoaded,
                detail: None,
                checked_at: None,
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ModelId, Entry>> {
        // Every update under the lock is one insert or remove.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One probe of a loaded version.
pub struct Probe {
    pub model: ModelId,
    pub engine: &'static str,
    pub result: Result<(), EngineError>,
    /// The state before this probe.
    pub was: HealthState,
}

/// Probes the loaded versions every `interval` until `shutdown` turns
/// true: records each result in the book, sets `gateway_model_ready`, and
/// counts a failed probe on the version's circuit breaker.
pub fn spawn_health_watch(
    models: Arc<ModelCache>,
    circuits: Arc<CircuitRegistry>,
    metrics: PipelineMetrics,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut published: HashSet<(&'static str, ModelId)> = HashSet::new();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            // A probe never waits longer than the interval it runs in.
            let probes = models.probe_loaded(interval.min(PROBE_TIMEOUT)).await;
            let mut seen = HashSet::new();
            for probe in &probes {
                apply_probe(probe, &circuits, &metrics);
                seen.insert((probe.engine, probe.model.clone()));
            }
            // Versions unloaded by a reload leave the gauge.
            for (engine, model) in published.difference(&seen) {
                let version = model.version.to_string();
                let _ = metrics.model_ready.remove_label_values(&[
                    engine,
                    model.name.as_str(),
                    version.as_str(),
                ]);
            }
            published = seen;
        }
    })
}

/// Longest a single probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What one probe changes outside the book: the readiness gauge, the
/// circuit breaker (a failure that is the engine's fault counts), and a
/// log line when the state changes.
pub(super) fn apply_probe(probe: &Probe, circuits: &CircuitRegistry, metrics: &PipelineMetrics) {
    let version = probe.model.version.to_string();
    metrics
        .model_ready
        .with_label_values(&[probe.engine, probe.model.name.as_str(), version.as_str()])
        .set(i64::from(probe.result.is_ok()));
    match &probe.result {
        Ok(()) => {
            if probe.was == HealthState::NotReady {
                tracing::info!(model = %probe.model, engine = probe.engine, "model ready again");
            }
        }
        Err(error) => {
            if probe.was != HealthState::NotReady {
                tracing::warn!(model = %probe.model, engine = probe.engine, error = %error, "model health probe failed");
            }
            if error.fault() == Fault::Engine {
                let breaker = circuits.breaker(probe.engine, &probe.model);
                // An open circuit refuses the permit and stays open.
                if let Ok(permit) = breaker.try_acquire() {
                    permit.failure(Failure::from(error));
                }
                publish_circuit(&metrics.circuit_state, probe.engine, &probe.model, &breaker);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::CircuitState;

    fn id(text: &str) -> ModelId {
        let (name, version) = text.split_once('@').unwrap();
        ModelId {
            name: name.into(),
            version: version.parse().unwrap(),
        }
    }

    #[test]
    fn the_book_keeps_the_last_state_and_says_what_it_replaced() {
        let book = HealthBook::default();
        let ct = id("ct-hyperdensity@2.0.0");
        assert_eq!(book.get(&ct).state, HealthState::NotLoaded);
        assert!(book.get(&ct).can_serve(), "a version not loaded may serve");

        let was = book.record(&ct, HealthState::Unavailable, Some("not ready".into()));
        assert_eq!(was, HealthState::NotLoaded);
        let health = book.get(&ct);
        assert_eq!(health.state, HealthState::Unavailable);
        assert_eq!(health.detail.as_deref(), Some("not ready"));
        assert!(!health.can_serve());
        assert!(health.checked_at.is_some_and(|t| t.ends_with('Z')));

        assert_eq!(
            book.record(&ct, HealthState::Ready, None),
            HealthState::Unavailable
        );
        assert!(book.get(&ct).can_serve());
        book.retain(|id| id != &ct);
        assert_eq!(book.get(&ct).state, HealthState::NotLoaded);
    }

    #[test]
    fn failed_probes_open_the_circuit_and_passing_ones_do_not_close_it() {
        let registry = prometheus::Registry::new();
        let metrics = PipelineMetrics::register(&registry);
        let policy = crate::infer::CircuitConfig {
            consecutive_failures: 2,
            ..Default::default()
        }
        .validate("circuit")
        .unwrap();
        let circuits = CircuitRegistry::new(policy);
        let model = id("dx-exposure@1.0.0");
        let probe = |result, was| Probe {
            model: model.clone(),
            engine: "triton",
            result,
            was,
        };
        let gauge = |metrics: &PipelineMetrics| {
            metrics
                .model_ready
                .with_label_values(&["triton", "dx-exposure", "1.0.0"])
                .get()
        };

        apply_probe(&probe(Ok(()), HealthState::Ready), &circuits, &metrics);
        assert_eq!(gauge(&metrics), 1);
        let not_ready = || Err(EngineError::NotReady("the server says not ready".into()));
        apply_probe(&probe(not_ready(), HealthState::Ready), &circuits, &metrics);
        assert_eq!(gauge(&metrics), 0);
        let breaker = circuits.breaker("triton", &model);
        assert_eq!(breaker.state(), CircuitState::Closed, "one failure of two");
        apply_probe(
            &probe(not_ready(), HealthState::NotReady),
            &circuits,
            &metrics,
        );
        assert_eq!(breaker.state(), CircuitState::Open);
        apply_probe(&probe(Ok(()), HealthState::NotReady), &circuits, &metrics);
        assert_eq!(gauge(&metrics), 1);
        assert_eq!(breaker.state(), CircuitState::Open, "ready is not proof");

        // A deployment fault says nothing about the engine.
        let other = id("ct-hyperdensity@2.0.0");
        for _ in 0..3 {
            let mismatch = Probe {
                model: other.clone(),
                engine: "triton",
                result: Err(EngineError::ManifestMismatch("shape".into())),
                was: HealthState::Ready,
            };
            apply_probe(&mismatch, &circuits, &metrics);
        }
        assert_eq!(
            circuits.breaker("triton", &other).state(),
            CircuitState::Closed
        );
    }
}
