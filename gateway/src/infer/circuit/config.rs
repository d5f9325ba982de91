//! `[…circuit]` settings: raw serde values with defaults, then
//! [`CircuitConfig::validate`] turns them into a typed [`CircuitPolicy`],
//! reporting every problem at once.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Most outcomes one breaker remembers; bounds its memory and the work
/// done under its lock.
pub const MAX_WINDOW_CALLS: u32 = 1000;

/// When a breaker opens and how it recovers, as written in the
/// configuration.
///
/// ```toml
/// [circuit]
/// consecutive_failures = 5   # open after this many engine failures in a row
/// error_rate = 0.5           # or when this share of recent calls failed…
/// window = "60s"             # …among the calls of the last minute…
/// window_calls = 20          # …at most the last 20 of them…
/// min_calls = 10             # …once at least 10 are known
/// open_for = "30s"           # refuse everything this long
/// half_open_probes = 1       # then let this many calls test the engine
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitConfig {
    pub consecutive_failures: u32,
    /// A share between 0 (exclusive) and 1 (inclusive); the breaker opens
    /// when the failed share of the window reaches it.
    pub error_rate: f64,
    /// How far back the error rate looks (humantime, e.g. `"60s"`).
    pub window: String,
    /// How many of the most recent calls the error rate looks at.
    pub window_calls: u32,
    /// Calls the window must hold before its error rate counts, so one
    /// failure on a quiet night does not open the circuit.
    pub min_calls: u32,
    /// How long an open circuit refuses calls before probing.
    pub open_for: String,
    /// Calls let through at once while half-open.
    pub half_open_probes: u32,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            consecutive_failures: 5,
            error_rate: 0.5,
            window: "60s".into(),
            window_calls: 20,
            min_calls: 10,
            open_for: "30s".into(),
            half_open_probes: 1,
        }
    }
}

/// Validated [`CircuitConfig`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitPolicy {
    pub consecutive_failures: NonZeroU32,
    pub error_rate: f64,
    pub window: Duration,
    pub window_calls: NonZeroU32,
    pub min_calls: NonZeroU32,
    pub open_for: Duration,
    pub half_open_probes: NonZeroU32,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        CircuitConfig::default()
            .validate("circuit")
            .expect("the default circuit configuration is valid")
    }
}

impl CircuitConfig {
    /// Checks every field; `key` prefixes each problem (e.g.
    /// `"routes.ct-chest.circuit"`) so the operator knows where to look.
    pub fn validate(&self, key: &str) -> Result<CircuitPolicy, Vec<String>> {
        let mut problems = Vec::new();
        let mut at_least_one = |field: &str, value: u32| {
            NonZeroU32::new(value).unwrap_or_else(|| {
                problems.push(format!("{key}.{field}: must be at least 1"));
                NonZeroU32::MIN
            })
        };
        let consecutive_failures = at_least_one("consecutive_failures", self.consecutive_failures);
        let window_calls = at_least_one("window_calls", self.window_calls);
        let min_calls = at_least_one("min_calls", self.min_calls);
        let half_open_probes = at_least_one("half_open_probes", self.half_open_probes);

        if !(self.error_rate > 0.0 && self.error_rate <= 1.0) {
            problems.push(format!(
                "{key}.error_rate: {} is not a share in (0, 1]",
                self.error_rate
            ));
        }
        if self.window_calls > MAX_WINDOW_CALLS {
            problems.push(format!(
                "{key}.window_calls: {} is more than {MAX_WINDOW_CALLS}",
                self.window_calls
            ));
        }
        if self.min_calls > self.window_calls {
            problems.push(format!(
                "{key}.min_calls: {} is more than window_calls ({}), so the error rate would never count",
                self.min_calls, self.window_calls
            ));
        }
        let window = duration(&mut problems, &format!("{key}.window"), &self.window);
        let open_for = duration(&mut problems, &format!("{key}.open_for"), &self.open_for);

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(CircuitPolicy {
            consecutive_failures,
            error_rate: self.error_rate,
            window,
            window_calls,
            min_calls,
            open_for,
            half_open_probes,
        })
    }
}

fn duration(problems: &mut Vec<String>, key: &str, value: &str) -> Duration {
    match humantime::parse_duration(value) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            problems.push(format!("{key}: must be greater than zero"));
            Duration::from_secs(1)
        }
        Err(e) => {
            problems.push(format!(
                "{key}: `{value}` is not a duration like \"10s\" ({e})"
            ));
            Duration::from_secs(1)
        }
    }
}
