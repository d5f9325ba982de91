//! Every breaker in the process, one per (engine kind, model version),
//! created on first use with the gateway's policy: the job runner asks for
//! a model's breaker before each attempt, the admin API and the metrics
//! read them all.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use super::{CircuitBreaker, CircuitPolicy, CircuitSnapshot};
use crate::models::ModelId;

/// A breaker's identity: the engine kind (a bounded label) and the model.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CircuitKey {
    pub engine: &'static str,
    pub model: String,
    pub version: String,
}

/// The breakers, keyed by engine and model version.
#[derive(Debug)]
pub struct CircuitRegistry {
    policy: CircuitPolicy,
    breakers: Mutex<BTreeMap<CircuitKey, CircuitBreaker>>,
}

impl CircuitRegistry {
    pub fn new(policy: CircuitPolicy) -> Self {
        CircuitRegistry {
            policy,
            breakers: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn policy(&self) -> &CircuitPolicy {
        &self.policy
    }

    /// The breaker of `model` on `engine`, created closed on first use.
    /// Clones share state, so the caller may keep it for one attempt.
    pub fn breaker(&self, engine: &'static str, model: &ModelId) -> CircuitBreaker {
        let key = CircuitKey {
            engine,
            model: model.name.clone(),
            version: model.version.to_string(),
        };
        self.breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert_with(|| CircuitBreaker::new(self.policy))
            .clone()
    }

    /// The breaker of `model` on any engine, if one exists.
    pub fn find(&self, model: &ModelId) -> Option<(CircuitKey, CircuitSnapshot)> {
        let version = model.version.to_string();
        self.snapshots()
            .into_iter()
            .find(|(key, _)| key.model == model.name && key.version == version)
    }

    /// Every breaker's state, in key order.
    pub fn snapshots(&self) -> Vec<(CircuitKey, CircuitSnapshot)> {
        let breakers: Vec<(CircuitKey, CircuitBreaker)> = self
            .breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, b)| (k.clone(), b.clone()))
            .collect();
        // Snapshots take each breaker's own lock: not under the map's.
        breakers
            .into_iter()
            .map(|(key, breaker)| (key, breaker.snapshot()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::{CircuitState, Failure};

    fn model(version: &str) -> ModelId {
        ModelId {
            name: "m".into(),
            version: version.parse().unwrap(),
        }
    }

    #[test]
    fn one_breaker_per_engine_and_version_shared_by_callers() {
        let registry = CircuitRegistry::new(CircuitPolicy::default());
        let a = registry.breaker("onnx", &model("1.0.0"));
        for _ in 0..registry.policy().consecutive_failures.get() {
            a.try_acquire().unwrap().failure(Failure::Timeout);
        }
        let again = registry.breaker("onnx", &model("1.0.0"));
        assert_eq!(again.state(), CircuitState::Open);
        assert_eq!(
            registry.breaker("onnx", &model("2.0.0")).state(),
            CircuitState::Closed
        );
        assert_eq!(
            registry.breaker("triton", &model("1.0.0")).state(),
            CircuitState::Closed
        );
        assert_eq!(registry.snapshots().len(), 3);
        let (key, snapshot) = registry.find(&model("1.0.0")).unwrap();
        assert_eq!(key.version, "1.0.0");
        assert_eq!(snapshot.state, CircuitState::Open);
    }
}
