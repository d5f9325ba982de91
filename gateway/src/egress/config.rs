//! Egress configuration: where results go (`[[destinations]]`) and how hard
//! we try (`[egress.retry]`). Raw serde structs with defaults, then
//! [`validate`] turns them into typed values, reporting every problem at once.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{check_ae_title, check_label_name};

/// One PACS (or other storage SCP) as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    /// Short name used in the queue, the API and as a metric label.
    pub name: String,
    /// The destination's AE title (our Called AE Title).
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// Our Calling AE Title towards this destination; the gateway's own AE
    /// title when absent (some PACS register one AE per sender).
    #[serde(default)]
    pub calling_ae_title: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "default_dimse_timeout")]
    pub dimse_timeout: String,
    /// The largest PDU we are willing to receive from the destination.
    #[serde(default = "default_max_pdu_length")]
    pub max_pdu_length: u32,
}

/// How often and how long a failed delivery is retried.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetryPolicy {
    pub initial_backoff: String,
    pub max_backoff: String,
    /// Attempts (the first included) before a delivery is dead-lettered.
    pub max_attempts: u32,
}

impl Default for RawRetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: "2s".into(),
            max_backoff: "5m".into(),
            max_attempts: 10,
        }
    }
}

fn default_connect_timeout() -> String {
    "10s".into()
}

fn default_dimse_timeout() -> String {
    "30s".into()
}

fn default_max_pdu_length() -> u32 {
    65536
}

/// A validated destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub name: String,
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// `None`: use the gateway's AE title.
    pub calling_ae_title: Option<String>,
    /// Limit for TCP connect plus association negotiation.
    pub connect_timeout: Duration,
    /// Limit for each PDU written and for waiting on each response.
    pub dimse_timeout: Duration,
    pub max_pdu_length: u32,
}

impl Destination {
    /// The Calling AE Title to use towards this destination.
    pub fn calling_ae<'a>(&'a self, gateway_ae: &'a str) -> &'a str {
        self.calling_ae_title.as_deref().unwrap_or(gateway_ae)
    }
}

/// A validated retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1 for the first):
    /// `initial_backoff * 2^(attempt-1)`, capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        self.initial_backoff
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// Smallest and largest max PDU we allow (same range as the DIMSE listener).
const MAX_PDU_RANGE: std::ops::RangeInclusive<u32> = 4096..=4 * 1024 * 1024;

/// Checks every destination and the retry policy; all problems at once.
pub fn validate(
    destinations: &[RawDestination],
    retry: &RawRetryPolicy,
) -> Result<(Vec<Destination>, RetryPolicy), Vec<String>> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    let mut typed = Vec::with_capacity(destinations.len());
    for (i, raw) in destinations.iter().enumerate() {
        let key = format!("destinations[{i}]");
        if let Err(why) = check_label_name(&raw.name) {
            problems.push(format!("{key}.name: `{}` {why}", raw.name));
        } else if !names.insert(raw.name.as_str()) {
            problems.push(format!("{key}.name: `{}` is used twice", raw.name));
        }
        if let Err(why) = check_ae_title(&raw.ae_title) {
            problems.push(format!("{key}.ae_title: AE title `{}` {why}", raw.ae_title));
        }
        if let Some(calling) = &raw.calling_ae_title
            && let Err(why) = check_ae_title(calling)
        {
            problems.push(format!(
                "{key}.calling_ae_title: AE title `{calling}` {why}"
            ));
        }
        if raw.host.trim().is_empty() {
            problems.push(format!("{key}.host: must not be empty"));
        }
        if raw.port == 0 {
            problems.push(format!("{key}.port: must not be 0"));
        }
        if !MAX_PDU_RANGE.contains(&raw.max_pdu_length) {
            problems.push(format!(
                "{key}.max_pdu_length: {} is outside {}..={}",
                raw.max_pdu_length,
                MAX_PDU_RANGE.start(),
                MAX_PDU_RANGE.end()
            ));
        }
        let connect_timeout = duration(
            &mut problems,
            &format!("{key}.connect_timeout"),
            &raw.connect_timeout,
        );
        let dimse_timeout = duration(
            &mut problems,
            &format!("{key}.dimse_timeout"),
            &raw.dimse_timeout,
        );
        typed.push(Destination {
            name: raw.name.clone(),
            ae_title: raw.ae_title.clone(),
            host: raw.host.trim().to_string(),
            port: raw.port,
            calling_ae_title: raw.calling_ae_title.clone(),
            connect_timeout,
            dimse_timeout,
            max_pdu_length: raw.max_pdu_length,
        });
    }
    let initial_backoff = duration(
        &mut problems,
        "egress.retry.initial_backoff",
        &retry.initial_backoff,
    );
    let max_backoff = duration(
        &mut problems,
        "egress.retry.max_backoff",
        &retry.max_backoff,
    );
    if max_backoff < initial_backoff {
        problems.push("egress.retry.max_backoff: must not be less than initial_backoff".into());
    }
    if retry.max_attempts == 0 {
        problems.push("egress.retry.max_attempts: must be at least 1".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let policy = RetryPolicy {
        initial_backoff,
        max_backoff,
        max_attempts: retry.max_attempts,
    };
    Ok((typed, policy))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str) -> RawDestination {
        toml::from_str(&format!(
            "name = \"{name}\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = 104\n"
        ))
        .expect("minimal destination parses")
    }

    #[test]
    fn defaults_apply_and_types_come_out() {
        let (dests, policy) =
            validate(&[raw("pacs-main")], &RawRetryPolicy::default()).expect("valid config");
        let d = &dests[0];
        assert_eq!(d.connect_timeout, Duration::from_secs(10));
        assert_eq!(d.dimse_timeout, Duration::from_secs(30));
        assert_eq!(d.max_pdu_length, 65536);
        assert_eq!(d.calling_ae("GATEWAY"), "GATEWAY");
        assert_eq!(policy.max_attempts, 10);
        assert_eq!(policy.max_backoff, Duration::from_secs(300));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut bad = raw("Bad Name");
        bad.ae_title = "A_TITLE_LONGER_THAN_16".into();
        bad.calling_ae_title = Some("back\\slash".into());
        bad.port = 0;
        bad.host = " ".into();
        bad.connect_timeout = "soon".into();
        bad.max_pdu_length = 10;
        let retry = RawRetryPolicy {
            initial_backoff: "0s".into(),
            max_backoff: "1s".into(),
            max_attempts: 0,
        };
        let problems = validate(&[bad, raw("dup"), raw("dup")], &retry).unwrap_err();
        let expected = [
            "destinations[0].name",
            "destinations[0].ae_title",
            "destinations[0].calling_ae_title",
            "destinations[0].host",
            "destinations[0].port",
            "destinations[0].max_pdu_length",
            "destinations[0].connect_timeout",
            "destinations[2].name: `dup` is used twice",
            "egress.retry.initial_backoff",
            "egress.retry.max_attempts",
        ];
        for e in expected {
            assert!(
                problems.iter().any(|p| p.starts_with(e)),
                "missing `{e}` in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let result: Result<RawDestination, _> =
            toml::from_str("name = \"a\"\nae_title = \"P\"\nhost = \"h\"\nport = 1\nretries = 3\n");
        assert!(result.unwrap_err().to_string().contains("retries"));
        let result: Result<RawRetryPolicy, _> = toml::from_str("max_attempt = 3\n");
        assert!(result.is_err());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            max_attempts: 100,
        };
        assert_eq!(policy.backoff(1), Duration::from_secs(2));
        assert_eq!(policy.backoff(2), Duration::from_secs(4));
        assert_eq!(policy.backoff(5), Duration::from_secs(32));
        assert_eq!(policy.backoff(6), Duration::from_secs(60));
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(60));
        assert_eq!(policy.backoff(0), Duration::from_secs(2));
    }
}
