//! `[pipeline.batching]`: how long and how far dynamic batching may gather
//! requests, with per-model overrides.
//!
//! ```toml
//! [pipeline.batching]
//! max_batch_size = 8        # 1 (the default) turns batching off
//! max_queue_delay = "5ms"   # the longest a request waits for company
//! max_queued = 64           # requests waiting; the rest are refused, retryably
//!
//! [pipeline.batching.models."resnet18-demo"]        # every version
//! max_batch_size = 16
//! [pipeline.batching.models."resnet18-demo@1.1.0"]  # one version (wins)
//! max_queue_delay = "2ms"
//! ```

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::infer::config::duration_text;
use crate::infer::tensor::MAX_BATCH_SIZE;
use crate::models::ModelId;

/// Batching defaults and per-model overrides. Only models whose manifest
/// declares a dynamic batch axis are batched, and only where
/// `max_batch_size` is above 1: off by default, because it pays on GPUs and
/// ONNX Runtime but costs throughput on tract (docs/engines.md has figures).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    #[serde(default = "default_max_batch_size")]
    pub max_batch_size: NonZeroUsize,
    #[serde(default = "default_max_queue_delay", with = "duration_text")]
    pub max_queue_delay: Duration,
    #[serde(default = "default_max_queued")]
    pub max_queued: NonZeroUsize,
    /// By `name` (every version) or `name@version`.
    #[serde(default)]
    pub models: BTreeMap<String, BatchOverride>,
}

/// Per-model settings; what is left out comes from the defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<NonZeroUsize>,
    #[serde(
        default,
        with = "optional_duration_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_queue_delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<NonZeroUsize>,
}

/// The settings one model is batched with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Requests stacked into one call at most; 1: no batching.
    pub max_batch_size: usize,
    /// How long the first request of a batch waits for more.
    pub max_queue_delay: Duration,
    /// Requests waiting to be batched; the rest are refused at once.
    pub max_queued: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            max_batch_size: default_max_batch_size(),
            max_queue_delay: default_max_queue_delay(),
            max_queued: default_max_queued(),
            models: BTreeMap::new(),
        }
    }
}

impl BatchingConfig {
    /// No batching for any model (the default).
    pub fn disabled() -> Self {
        BatchingConfig::default()
    }

    /// Up to `max_batch_size` requests per call, waiting at most
    /// `max_queue_delay`, for every batch-dynamic model.
    pub fn enabled(max_batch_size: NonZeroUsize, max_queue_delay: Duration) -> Self {
        BatchingConfig {
            max_batch_size,
            max_queue_delay,
            ..BatchingConfig::default()
        }
    }

    /// The policy for `model`: `name@version` override, else `name`, else
    /// the defaults.
    pub fn policy_for(&self, model: &ModelId) -> BatchPolicy {
        let exact = self.models.get(&model.to_string());
        let by_name = self.models.get(&model.name);
        let pick = |f: fn(&BatchOverride) -> Option<usize>| {
            exact.and_then(f).or_else(|| by_name.and_then(f))
        };
        let delay = exact
            .and_then(|o| o.max_queue_delay)
            .or_else(|| by_name.and_then(|o| o.max_queue_delay));
        BatchPolicy {
            max_batch_size: pick(|o| o.max_batch_size.map(NonZeroUsize::get))
                .unwrap_or(self.max_batch_size.get()),
            max_queue_delay: delay.unwrap_or(self.max_queue_delay),
            max_queued: pick(|o| o.max_queued.map(NonZeroUsize::get))
                .unwrap_or(self.max_queued.get()),
        }
    }

    /// Every problem at once, as sentences (keys relative to the section).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let sizes = std::iter::once(("max_batch_size".to_string(), Some(self.max_batch_size)))
            .chain(self.models.iter().map(|(name, o)| {
                (
                    format!("models.\"{name}\".max_batch_size"),
                    o.max_batch_size,
                )
            }));
        for (key, size) in sizes {
            if let Some(size) = size
                && size.get() > MAX_BATCH_SIZE
            {
                problems.push(format!("{key}: {size} is more than {MAX_BATCH_SIZE}"));
            }
        }
        let delays = std::iter::once(("max_queue_delay".to_string(), Some(self.max_queue_delay)))
            .chain(self.models.iter().map(|(name, o)| {
                (
                    format!("models.\"{name}\".max_queue_delay"),
                    o.max_queue_delay,
                )
            }));
        for (key, delay) in delays {
            // A batch holds its first request this long: keep it well under
            // any job's deadline.
            if let Some(delay) = delay
                && delay > Duration::from_secs(1)
            {
                problems.push(format!("{key}: more than 1s"));
            }
        }
        for name in self.models.keys() {
            let model_name = name.split_once('@').map_or(name.as_str(), |(n, _)| n);
            if crate::models::check_model_name(model_name).is_err() {
                problems.push(format!(
                    "models.\"{name}\": not a model name or name@version"
                ));
            }
        }
        problems
    }
}

fn default_max_batch_size() -> NonZeroUsize {
    NonZeroUsize::MIN
}

fn default_max_queue_delay() -> Duration {
    Duration::from_millis(5)
}

fn default_max_queued() -> NonZeroUsize {
    NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN)
}

mod optional_duration_text {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => super::duration_text::serialize(value, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::duration_text::deserialize(deserializer).map(Some)
    }
}
