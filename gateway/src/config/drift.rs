//! The `[drift]` section: how the drift monitor bins, compares and bounds
//! its distributions (see docs/monitoring.md).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::Problems;
use crate::telemetry::drift::BaselineMode;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawDrift {
    pub enabled: bool,
    pub bins: usize,
    pub threshold: f64,
    pub baseline: String,
    pub window: usize,
    pub min_observations: usize,
    pub max_tracked: usize,
    pub persist_interval: String,
}

impl Default for RawDrift {
    fn default() -> Self {
        Self {
            enabled: true,
            bins: 10,
            threshold: 0.2,
            baseline: "auto".into(),
            window: 500,
            min_observations: 200,
            max_tracked: 4096,
            persist_interval: "60s".into(),
        }
    }
}

/// The validated `[drift]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftConfig {
    pub enabled: bool,
    /// Bins of scores (equal width over 0..1) and of learned input statistics.
    pub bins: usize,
    /// PSI above which an alert is raised.
    pub threshold: f64,
    pub baseline: BaselineMode,
    /// Observations that form a frozen-window baseline, and the effective
    /// length of the decaying current distribution.
    pub window: usize,
    /// Observations a key needs before its PSI is reported or alerted.
    pub min_observations: usize,
    /// (site, scanner, model, version) keys held; the least recently seen
    /// is dropped beyond this.
    pub max_tracked: usize,
    /// How often running distributions are written to the index database.
    pub persist_interval: Duration,
}

impl Default for DriftConfig {
    fn default() -> Self {
        let mut p = Problems(Vec::new());
        let config = validate_drift(&RawDrift::default(), &mut p);
        debug_assert!(p.0.is_empty(), "{:?}", p.0);
        config
    }
}

const BINS: std::ops::RangeInclusive<usize> = 2..=100;
const WINDOW: std::ops::RangeInclusive<usize> = 10..=100_000;
const MAX_TRACKED: std::ops::RangeInclusive<usize> = 1..=1_000_000;

pub(super) fn validate_drift(raw: &RawDrift, p: &mut Problems) -> DriftConfig {
    if !BINS.contains(&raw.bins) {
        p.push(format!(
            "drift.bins: {} is outside {}..={}",
            raw.bins,
            BINS.start(),
            BINS.end()
        ));
    }
    if !(raw.threshold.is_finite() && raw.threshold > 0.0) {
        p.push(format!(
            "drift.threshold: {} must be a number above 0 (0.2 is usual)",
            raw.threshold
        ));
    }
    let baseline = match raw.baseline.as_str() {
        "auto" => BaselineMode::Auto,
        "manifest" => BaselineMode::Manifest,
        "window" => BaselineMode::Window,
        other => {
            p.push(format!(
                "drift.baseline: `{other}` is not one of \"auto\", \"manifest\", \"window\""
            ));
            BaselineMode::Auto
        }
    };
    if !WINDOW.contains(&raw.window) {
        p.push(format!(
            "drift.window: {} is outside {}..={}",
            raw.window,
            WINDOW.start(),
            WINDOW.end()
        ));
    }
    if raw.min_observations == 0 || raw.min_observations > raw.window {
        p.push("drift.min_observations: must be between 1 and drift.window".into());
    }
    if !MAX_TRACKED.contains(&raw.max_tracked) {
        p.push(format!(
            "drift.max_tracked: {} is outside {}..={}",
            raw.max_tracked,
            MAX_TRACKED.start(),
            MAX_TRACKED.end()
        ));
    }
    DriftConfig {
        enabled: raw.enabled,
        bins: raw.bins.clamp(*BINS.start(), *BINS.end()),
        threshold: if raw.threshold.is_finite() && raw.threshold > 0.0 {
            raw.threshold
        } else {
            0.2
        },
        baseline,
        window: raw.window.clamp(*WINDOW.start(), *WINDOW.end()),
        min_observations: raw.min_observations.clamp(1, raw.window.max(1)),
        max_tracked: raw
            .max_tracked
            .clamp(*MAX_TRACKED.start(), *MAX_TRACKED.end()),
        persist_interval: p.duration("drift.persist_interval", &raw.persist_interval),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_every_problem_is_reported() {
        let mut p = Problems(Vec::new());
        let config = validate_drift(&RawDrift::default(), &mut p);
        assert!(p.0.is_empty(), "{:?}", p.0);
        assert_eq!(config.window, 500);
        assert_eq!(config.baseline, BaselineMode::Auto);

        let bad = RawDrift {
            bins: 1,
            threshold: -1.0,
            baseline: "yesterday".into(),
            window: 5,
            min_observations: 50,
            max_tracked: 0,
            persist_interval: "soon".into(),
            ..RawDrift::default()
        };
        let mut p = Problems(Vec::new());
        validate_drift(&bad, &mut p);
        assert_eq!(p.0.len(), 7, "{:#?}", p.0);
    }
}
