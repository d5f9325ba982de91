//! One attempt at a model through its breaker, with a deadline: the step a
//! route runs before deciding whether to fall back.

use std::future::Future;
use std::time::Duration;

use super::{CircuitBreaker, CircuitOpen, Failure};
use crate::infer::EngineError;

/// Why one attempt at a model gave no result: the reason a route moves to
/// its next step.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error(transparent)]
    CircuitOpen(#[from] CircuitOpen),
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl AttemptError {
    /// A bounded label for "fallback activations by route and reason":
    /// `circuit_open`, `timeout`, or the engine error's label.
    pub fn reason(&self) -> &'static str {
        match self {
            AttemptError::CircuitOpen(_) => "circuit_open",
            AttemptError::Timeout(_) => "timeout",
            AttemptError::Engine(e) => e.as_label(),
        }
    }
}

/// Runs one call through `breaker` with a deadline: refused at once while
/// the circuit is open, otherwise `call` runs under `timeout` and its
/// outcome is recorded (a timeout counts as an engine failure).
///
/// `call` is not polled when the circuit is open; dropping the returned
/// future drops the permit, which counts as neither outcome.
pub async fn call_with_timeout<F, T>(
    breaker: &CircuitBreaker,
    timeout: Duration,
    call: F,
) -> Result<T, AttemptError>
where
    F: Future<Output = Result<T, EngineError>>,
{
    let permit = breaker.try_acquire()?;
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => {
            permit.success();
            Ok(value)
        }
        Ok(Err(error)) => {
            permit.failure(Failure::from(&error));
            Err(AttemptError::Engine(error))
        }
        Err(_elapsed) => {
            permit.failure(Failure::Timeout);
            Err(AttemptError::Timeout(timeout))
        }
    }
}
