//! Operator route state, overlaid on the routes config: forced fallback,
//! pinned and promoted versions, canary and shadow, disable and drain.
//!
//! This file holds the state itself and [`effective_model`], the pure
//! function that turns (route, state, study, time) into the step that
//! serves a series. [`RouteStateStore`](super::RouteStateStore)
//! (`state_store.rs`) persists the state in the index database, audits every
//! change and publishes it to readers without a restart.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::table::Route;
use crate::models::{ModelId, Version};

/// Everything an operator has set on one route. The default (nothing set)
/// means the route runs exactly as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteState {
    /// The route's fallback chain runs instead of its model.
    pub forced_fallback: Option<ForcedFallback>,
    /// This version serves every series, whatever else is set.
    #[serde(with = "optional_version_text")]
    pub pinned: Option<Version>,
    /// The version promoted over the configured one, and the one it replaced.
    pub promotion: Option<Promotion>,
    /// No new work; the route is out of service.
    pub disabled: bool,
    /// No new work; work in flight finishes (decommissioning).
    pub draining: bool,
    /// A share of studies goes to a candidate version.
    pub canary: Option<Canary>,
    /// A candidate version runs beside production on every series; its
    /// results are stored and compared, never forwarded.
    pub shadow: Option<Shadow>,
}

/// Fallback forced by an operator, until a time or until unflipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForcedFallback {
    /// Unix milliseconds after which the route runs its model again;
    /// `None`: until an operator unflips it.
    pub until_ms: Option<i64>,
    pub reason: String,
}

/// A promotion: `current` serves; `previous` is what rollback returns to.
/// After a rollback `previous` is `None`, so a second rollback is refused
/// rather than putting the version just rolled back from into service again
/// (that takes an explicit promote).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    #[serde(with = "version_text")]
    pub current: Version,
    #[serde(with = "optional_version_text")]
    pub previous: Option<Version>,
}

/// `percent` of studies (chosen by [`canary_bucket`]) run `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    #[serde(with = "version_text")]
    pub version: Version,
    /// 0..=100.
    pub percent: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    #[serde(with = "version_text")]
    pub version: Version,
}

/// Where the serving version came from, for results and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    Pinned,
    Promoted,
    Canary,
    Config,
}

impl VersionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionSource::Pinned => "pinned",
            VersionSource::Promoted => "promoted",
            VersionSource::Canary => "canary",
            VersionSource::Config => "config",
        }
    }
}

/// What one route does with one series right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveStep {
    /// The model@version that serves the series.
    pub model: ModelId,
    pub source: VersionSource,
    /// `Some(reason)`: skip the model and run the fallback chain.
    pub forced_fallback_reason: Option<String>,
    /// `false` when the route is disabled or draining: take no new series.
    pub accepts_new_work: bool,
    /// A candidate to run beside `model` on the same series, if any.
    pub shadow: Option<ModelId>,
}

/// The step that serves `study_uid` on `route` at `now_ms` (Unix ms).
///
/// Version precedence: a pin wins over everything (a pin means "this
/// version, no experiments"); otherwise a canary takes its share of studies;
/// the rest run the promoted version, or the configured one. The canary sits
/// above the promotion so that a canary set after a promote is not silently
/// inert. A forced fallback whose `until_ms` has passed is no longer forced.
pub fn effective_model(
    route: &Route,
    state: &RouteState,
    study_uid: &str,
    now_ms: i64,
) -> EffectiveStep {
    let (version, source) = if let Some(pinned) = state.pinned {
        (pinned, VersionSource::Pinned)
    } else if let Some(canary) = state
        .canary
        .filter(|c| canary_bucket(study_uid) < c.percent)
    {
        (canary.version, VersionSource::Canary)
    } else if let Some(promotion) = state.promotion {
        (promotion.current, VersionSource::Promoted)
    } else {
        (route.model.version, VersionSource::Config)
    };
    let forced_fallback_reason = state
        .forced_fallback
        .as_ref()
        .filter(|f| f.until_ms.is_none_or(|until| now_ms < until))
        .map(|f| f.reason.clone());
    let shadow = state
        .shadow
        .filter(|s| s.version != version)
        .map(|s| ModelId {
            name: route.model.name.clone(),
            version: s.version,
        });
    EffectiveStep {
        model: ModelId {
            name: route.model.name.clone(),
            version,
        },
        source,
        forced_fallback_reason,
        accepts_new_work: route.enabled && !state.disabled && !state.draining,
        shadow,
    }
}

/// The study's canary bucket, 0..100: the first 8 bytes of the SHA-256 of
/// the StudyInstanceUID, modulo 100. Every series of a study lands in the
/// same bucket, on every instance of the gateway and across restarts.
pub fn canary_bucket(study_uid: &str) -> u8 {
    let digest = Sha256::digest(study_uid.trim_end_matches(['\0', ' ']).as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % 100) as u8
}

/// Whose fault a [`StateError`] is, which decides who has to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFault {
    /// The request itself: no reason, an unknown route or version, nothing
    /// to roll back to. The operator changes the request.
    Operator,
    /// The model repository or the engine: a file that fails its hash, a
    /// version that does not come up healthy. Someone fixes the deployment.
    Deployment,
    /// The index database or a bug.
    Internal,
}

impl StateFault {
    pub fn as_str(self) -> &'static str {
        match self {
            StateFault::Operator => "operator",
            StateFault::Deployment => "deployment",
            StateFault::Internal => "internal",
        }
    }
}

/// Why an operator action was refused. A refused action changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("a reason is required")]
    MissingReason,
    #[error("an actor is required")]
    MissingActor,
    #[error("route `{0}` is not configured")]
    UnknownRoute(String),
    #[error("model {0} is not in the model repository")]
    UnknownVersion(ModelId),
    #[error("model {model} cannot serve: its file is {status}")]
    ModelFile { model: ModelId, status: String },
    #[error("model {model} is not ready: {why}")]
    NotReady { model: ModelId, why: String },
    #[error("route `{0}` has no previous version to roll back to")]
    NoPreviousVersion(String),
    #[error("route `{route}` already serves version {version}")]
    AlreadyServing { route: String, version: Version },
    #[error("canary percent {0} is over 100")]
    InvalidPercent(u8),
    #[error("force-fallback end {until_ms} (unix ms) is not in the future")]
    UntilInPast { until_ms: i64 },
    #[error("cannot persist route state: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("stored state of route `{route}` is unreadable: {source}")]
    Corrupt {
        route: String,
        source: serde_json::Error,
    },
}

impl StateError {
    pub fn fault(&self) -> StateFault {
        match self {
            Self::MissingReason
            | Self::MissingActor
            | Self::UnknownRoute(_)
            | Self::UnknownVersion(_)
            | Self::NoPreviousVersion(_)
            | Self::AlreadyServing { .. }
            | Self::InvalidPercent(_)
            | Self::UntilInPast { .. } => StateFault::Operator,
            Self::ModelFile { .. } | Self::NotReady { .. } => StateFault::Deployment,
            Self::Database(_) | Self::Corrupt { .. } => StateFault::Internal,
        }
    }

    /// Only a busy or failing database may succeed unchanged later; a model
    /// that is not ready may too, but only once someone has looked at it.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Database(_))
    }
}

/// `Version` as `"1.2.3"` in the stored JSON.
mod version_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::models::Version;

    pub fn serialize<S: Serializer>(version: &Version, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(version)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

mod optional_version_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::models::Version;

    pub fn serialize<S: Serializer>(version: &Option<Version>, s: S) -> Result<S::Ok, S::Error> {
        match version {
            Some(version) => s.collect_str(version),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Version>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| text.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
