//! Circuit breaker, between `route` (which decides what to do when a model
//! cannot answer) and the engines: one [`CircuitBreaker`] per engine and
//! model version stops sending work to an engine that keeps failing, so a
//! route falls back at once instead of waiting out a timeout per series.
//!
//! Closed → Open after `consecutive_failures` engine failures in a row, or
//! when the failed share of the recent window reaches `error_rate`. Open
//! refuses every call for `open_for`; then HalfOpen lets
//! `half_open_probes` calls through at once and refuses the rest; the
//! first probe to succeed closes the circuit, the first to fail re-opens
//! it. Only failures that are the engine's fault count (overloaded,
//! unavailable, failed at run time, timed out): a bad input or a broken
//! deployment says nothing about whether the engine is healthy.
//!
//! A [`Permit`] dropped without reporting counts as neither success nor
//! failure: callers drop it when their series is cancelled or the gateway
//! shuts down, which says nothing about the engine. A dropped probe frees
//! its half-open place so another call can probe.

mod attempt;
mod clock;
mod config;
mod registry;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::error::{EngineError, Fault};

pub use attempt::{AttemptError, call_with_timeout};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{CircuitConfig, CircuitPolicy, MAX_WINDOW_CALLS};
pub use registry::{CircuitKey, CircuitRegistry};

/// The state of a circuit, as a metrics gauge label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// A call refused without reaching the engine: the caller uses its
/// fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct CircuitOpen {
    /// When the circuit last opened.
    pub since: Instant,
    /// When it lets a probe through; `None` while half-open, when every
    /// probe place is taken and the circuit waits for their outcome.
    pub until: Option<Instant>,
    /// `until` less the time of refusal.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(after) => write!(
                f,
                "circuit open, probing again in {}",
                humantime::format_duration(round_to_millis(after))
            ),
            None => f.write_str("circuit half-open, waiting for probe calls"),
        }
    }
}

/// How a call failed, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The call ran past its deadline: an engine failure.
    Timeout,
    /// The engine answered with an error; only [`Fault::Engine`] counts.
    Engine(Fault),
}

impl From<&EngineError> for Failure {
    fn from(error: &EngineError) -> Self {
        Failure::Engine(error.fault())
    }
}

impl Failure {
    fn counts(self) -> bool {
        match self {
            Failure::Timeout => true,
            Failure::Engine(fault) => fault == Fault::Engine,
        }
    }
}

/// A breaker's state for the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitSnapshot {
    pub state: CircuitState,
    pub consecutive_failures: u32,
    /// Calls in the window now, and how many of them failed.
    pub window_calls: usize,
    pub window_failures: usize,
    /// `window_failures / window_calls`, 0 when the window is empty.
    pub window_error_rate: f64,
    /// RFC 3339 UTC time the circuit last opened; `None` if it never has.
    pub opened_at: Option<String>,
    /// How often it has opened since start, and how often of those a
    /// failed probe re-opened it.
    pub opens: u64,
    pub reopens: u64,
}

/// Counts engine failures for one engine and model version and refuses
/// calls while they are too many. Cheap to clone: clones share state.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    policy: CircuitPolicy,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped on every transition, so outcomes of calls admitted under an
    /// earlier phase (a slow call that finishes after the circuit opened)
    /// cannot close or open the circuit.
    generation: u64,
    consecutive_failures: u32,
    /// Recent outcomes, oldest first: (when, failed).
    window: VecDeque<(Instant, bool)>,
    window_failures: usize,
    opened_at: Option<SystemTime>,
    opens: u64,
    reopens: u64,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { since: Instant, until: Instant },
    HalfOpen { since: Instant, probes: u32 },
}

impl CircuitBreaker {
    pub fn new(policy: CircuitPolicy) -> Self {
        Self::with_clock(policy, Arc::new(SystemClock))
    }

    pub fn with_clock(policy: CircuitPolicy, clock: Arc<dyn Clock>) -> Self {
        let inner = Inner {
            phase: Phase::Closed,
            generation: 0,
            consecutive_failures: 0,
            window: VecDeque::with_capacity(policy.window_calls.get() as usize),
            window_failures: 0,
            opened_at: None,
            opens: 0,
            reopens: 0,
        };
        CircuitBreaker {
            shared: Arc::new(Shared {
                policy,
                clock,
                inner: Mutex::new(inner),
            }),
        }
    }

    pub fn policy(&self) -> &CircuitPolicy {
        &self.shared.policy
    }

    /// Admits one call, or refuses it at once while the circuit is open
    /// (or half-open with every probe place taken).
    pub fn try_acquire(&self) -> Result<Permit, CircuitOpen> {
        let now = self.shared.clock.now();
        let mut inner = self.shared.lock();
        inner.expire_open(now);
        let probe = match inner.phase {
            Phase::Closed => false,
            Phase::Open { since, until } => {
                return Err(CircuitOpen {
                    since,
                    until: Some(until),
                    retry_after: Some(until.saturating_duration_since(now)),
                });
            }
            Phase::HalfOpen { since, probes } => {
                if probes >= self.shared.policy.half_open_probes.get() {
                    return Err(CircuitOpen {
                        since,
                        until: None,
                        retry_after: None,
                    });
                }
                inner.phase = Phase::HalfOpen {
                    since,
                    probes: probes + 1,
                };
                true
            }
        };
        Ok(Permit {
            shared: Some(Arc::clone(&self.shared)),
            generation: inner.generation,
            probe,
        })
    }

    pub fn state(&self) -> CircuitState {
        let now = self.shared.clock.now();
        let mut inner = self.shared.lock();
        inner.expire_open(now);
        inner.phase.state()
    }

    pub fn snapshot(&self) -> CircuitSnapshot {
        let now = self.shared.clock.now();
        let mut inner = self.shared.lock();
        inner.expire_open(now);
        inner.trim_window(now, &self.shared.policy);
        let calls = inner.window.len();
        CircuitSnapshot {
            state: inner.phase.state(),
            consecutive_failures: inner.consecutive_failures,
            window_calls: calls,
            window_failures: inner.window_failures,
            window_error_rate: if calls == 0 {
                0.0
            } else {
                inner.window_failures as f64 / calls as f64
            },
            opened_at: inner
                .opened_at
                .map(|t| humantime::format_rfc3339_millis(t).to_string()),
            opens: inner.opens,
            reopens: inner.reopens,
        }
    }
}

/// Leave to make one call. Report how it went with [`Permit::success`]
/// or [`Permit::failure`]; dropping it counts as neither.
#[derive(Debug)]
#[must_use = "report the outcome with success() or failure()"]
pub struct Permit {
    shared: Option<Arc<Shared>>,
    generation: u64,
    probe: bool,
}

impl Permit {
    pub fn success(mut self) {
        if let Some(shared) = self.shared.take() {
            shared.record(self.generation, self.probe, Outcome::Success);
        }
    }

    /// Records a failure; one that is not the engine's fault counts as
    /// neither success nor failure.
    pub fn failure(mut self, failure: Failure) {
        if let Some(shared) = self.shared.take() {
            let outcome = if failure.counts() {
                Outcome::Failure
            } else {
                Outcome::Neutral
            };
            shared.record(self.generation, self.probe, outcome);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.record(self.generation, self.probe, Outcome::Neutral);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Neutral,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state stays consistent across a panic elsewhere: every
        // update under the lock is a few assignments.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, generation: u64, probe: bool, outcome: Outcome) {
        let now = self.clock.now();
        let policy = &self.policy;
        let mut inner = self.lock();
        inner.expire_open(now);
        if generation != inner.generation {
            return;
        }
        match (inner.phase, outcome) {
            (Phase::Closed, Outcome::Neutral) => {}
            (Phase::Closed, Outcome::Success) => {
                inner.consecutive_failures = 0;
                inner.push_outcome(now, false, policy);
            }
            (Phase::Closed, Outcome::Failure) => {
                inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                inner.push_outcome(now, true, policy);
                if inner.consecutive_failures >= policy.consecutive_failures.get()
                    || inner.error_rate_reached(policy)
                {
                    inner.open(now, policy);
                }
            }
            (Phase::HalfOpen { .. }, Outcome::Success) if probe => inner.close(),
            (Phase::HalfOpen { .. }, Outcome::Failure) if probe => {
                inner.reopens += 1;
                inner.open(now, policy);
            }
            (Phase::HalfOpen { since, probes }, _) if probe => {
                // A neutral or dropped probe frees its place for another.
                inner.phase = Phase::HalfOpen {
                    since,
                    probes: probes.saturating_sub(1),
                };
            }
            // Open, or a half-open call that was not a probe (impossible
            // within one generation): nothing to learn.
            _ => {}
        }
    }
}

impl Inner {
    /// Moves an open circuit whose time is up to half-open.
    fn expire_open(&mut self, now: Instant) {
        if let Phase::Open { since, until } = self.phase
            && now >= until
        {
            self.phase = Phase::HalfOpen { since, probes: 0 };
            self.generation += 1;
        }
    }

    fn open(&mut self, now: Instant, policy: &CircuitPolicy) {
        self.phase = Phase::Open {
            since: now,
            until: now + policy.open_for,
        };
        self.generation += 1;
        self.opened_at = Some(SystemTime::now());
        self.opens += 1;
        self.clear_counts();
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.generation += 1;
        self.clear_counts();
    }

    fn clear_counts(&mut self) {
        self.consecutive_failures = 0;
        self.window.clear();
        self.window_failures = 0;
    }

    fn push_outcome(&mut self, now: Instant, failed: bool, policy: &CircuitPolicy) {
        self.window.push_back((now, failed));
        self.window_failures += usize::from(failed);
        self.trim_window(now, policy);
    }

    /// Forgets outcomes older than the window or beyond its call count.
    fn trim_window(&mut self, now: Instant, policy: &CircuitPolicy) {
        let max_calls = policy.window_calls.get() as usize;
        while let Some(&(at, failed)) = self.window.front() {
            let too_old = now.saturating_duration_since(at) > policy.window;
            if !too_old && self.window.len() <= max_calls {
                break;
            }
            self.window.pop_front();
            self.window_failures -= usize::from(failed);
        }
    }

    fn error_rate_reached(&self, policy: &CircuitPolicy) -> bool {
        let calls = self.window.len();
        calls >= policy.min_calls.get() as usize
            && self.window_failures as f64 >= policy.error_rate * calls as f64
    }
}

impl Phase {
    fn state(self) -> CircuitState {
        match self {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { .. } => CircuitState::Open,
            Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}
