//! Result cache, between `infer` and `results`: a classification computed
//! once for an input and a model is reused when the same input comes again
//! (a re-sent series, another replica's work), instead of running the model.
//!
//! - `key.rs`: [`CacheKey`]: model name, version, SHA-256, a digest of the
//!   manifest's input contract ([`ModelFingerprint`]) and of the input
//!   tensor ([`InputDigest`]). No UID or patient data in a key.
//! - `value.rs`: [`CachedResult`], stored as JSON with a schema version.
//! - `memory.rs` (moka, bounded, the embedded default) and `redis.rs`
//!   (deadpool-redis, TLS, ACL, a deadline on every operation).
//! - `config.rs`: the `[cache]` section. `metrics.rs`: metric families and
//!   the rate-limited warning.
//!
//! Keys and TTLs only, no business logic: the job runner decides what to
//! look up and what to store. The cache is never on the acknowledgement
//! path and never fails a job: [`ResultCache::get`] and
//! [`ResultCache::put`] return no error; trouble is a bypass (a miss, or a
//! dropped write), counted in `gateway_cache_bypass_total`, logged at most
//! once per 30 s per reason, and over as soon as the backend answers.

mod config;
mod key;
mod memory;
mod metrics;
pub mod redis;
mod value;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use config::{
    CacheBackendConfig, CacheConfig, DEFAULT_KEY_PREFIX, REDACTED, RawCacheConfig, RawRedisConfig,
    RedisConfig, RedisPassword, validate,
};
pub use key::{CacheKey, InputDigest, ModelFingerprint};
pub use memory::MemoryCache;
pub use metrics::{CacheMetrics, DEFAULT_WARN_INTERVAL, TroubleLog};
pub use value::{CachedResult, SCHEMA_VERSION, ValueError};

use self::redis::RedisCache;

/// Why the cache could not be built (start-up only; at run time the cache
/// has no errors, only bypasses).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A setting that passed validation but cannot be used here (a CA file
    /// that cannot be read, a password variable that is not set).
    #[error("{0}")]
    Config(String),
    #[error("cannot register cache metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The result cache. Cheap to clone; clones share the backend.
#[derive(Clone)]
pub struct ResultCache {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    ttl: Duration,
    prefix: String,
    metrics: Option<CacheMetrics>,
    log: TroubleLog,
}

enum Backend {
    Disabled,
    Memory(MemoryCache),
    Redis(RedisCache),
}

impl Backend {
    fn label(&self) -> &'static str {
        match self {
            Backend::Disabled => "none",
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }
}

impl ResultCache {
    /// Builds the configured backend and registers its metrics. Does not
    /// connect to Redis: an unreachable Redis is a bypass, not a start-up
    /// failure. Once per registry (the metric families are registered).
    pub fn build(
        config: &CacheConfig,
        registry: &prometheus::Registry,
    ) -> Result<ResultCache, CacheError> {
        Self::build_with_warn_interval(config, registry, DEFAULT_WARN_INTERVAL)
    }

    /// [`ResultCache::build`] with the trouble warning limited to once per
    /// `interval` (tests use a short one).
    pub fn build_with_warn_interval(
        config: &CacheConfig,
        registry: &prometheus::Registry,
        interval: Duration,
    ) -> Result<ResultCache, CacheError> {
        let backend = match &config.backend {
            CacheBackendConfig::None => Backend::Disabled,
            CacheBackendConfig::Memory { max_entries } => {
                Backend::Memory(MemoryCache::new(*max_entries, config.ttl))
            }
            CacheBackendConfig::Redis(redis) => Backend::Redis(RedisCache::new(redis)?),
        };
        let metrics = match backend {
            Backend::Disabled => None,
            _ => Some(CacheMetrics::register(registry)?),
        };
        Ok(Self::assemble(backend, config, metrics, interval))
    }

    /// A cache that never hits and stores nothing.
    pub fn disabled() -> ResultCache {
        let config = CacheConfig {
            backend: CacheBackendConfig::None,
            ttl: Duration::from_secs(1),
            key_prefix: DEFAULT_KEY_PREFIX.into(),
        };
        Self::assemble(Backend::Disabled, &config, None, DEFAULT_WARN_INTERVAL)
    }

    fn assemble(
        backend: Backend,
        config: &CacheConfig,
        metrics: Option<CacheMetrics>,
        interval: Duration,
    ) -> ResultCache {
        ResultCache {
            inner: Arc::new(Inner {
                log: TroubleLog::new(
                    backend.label(),
                    "result cache bypassed: inference goes on without it",
                    interval,
                ),
                backend,
                ttl: config.ttl,
                prefix: config.key_prefix.clone(),
                metrics,
            }),
        }
    }

    /// `"none"`, `"memory"` or `"redis"`.
    pub fn backend(&self) -> &'static str {
        self.inner.backend.label()
    }

    pub fn is_enabled(&self) -> bool {
        !matches!(self.inner.backend, Backend::Disabled)
    }

    /// The stored result for `key`, or `None` on a miss, on a value that
    /// cannot be used (unknown schema, corrupt, another model's) and on any
    /// backend trouble. Never fails and never waits longer than the
    /// configured Redis timeout.
    pub async fn get(&self, key: &CacheKey) -> Option<CachedResult> {
        let inner = &*self.inner;
        let backend = inner.backend.label();
        let started = Instant::now();
        let text = key.text(&inner.prefix);
        let (outcome, found) = match &inner.backend {
            Backend::Disabled => return None,
            Backend::Memory(memory) => match memory.get(&text).await {
                Some(found)
                    if found.model == *key.model() && found.model_sha256 == key.model_sha256() =>
                {
                    ("hit", Some(found))
                }
                _ => ("miss", None),
            },
            Backend::Redis(redis) => match redis.get(&text).await {
                Ok(None) => {
                    inner.log.healthy();
                    ("miss", None)
                }
                Ok(Some(bytes)) => {
                    inner.log.healthy();
                    match value::decode(key, &bytes) {
                        Ok(found) => ("hit", Some(found)),
                        Err(e) => {
                            if let Some(m) = &inner.metrics {
                                m.rejected.with_label_values(&[backend, e.as_label()]).inc();
                            }
                            tracing::debug!(reason = e.as_label(), "cached value not used");
                            ("miss", None)
                        }
                    }
                }
                Err(e) => {
                    self.bypassed("get", &e);
                    ("bypass", None)
                }
            },
        };
        if let Some(m) = &inner.metrics {
            m.requests.with_label_values(&[backend, outcome]).inc();
            m.lookup_seconds
                .with_label_values(&[backend])
                .observe(started.elapsed().as_secs_f64());
        }
        found
    }

    /// Stores a successful result for `key`, kept for the configured TTL.
    /// Only [`CachedResult`]s exist to be stored, so failures are never
    /// cached. Trouble drops the write (counted, logged, never returned).
    pub async fn put(&self, key: &CacheKey, value: &CachedResult) {
        let inner = &*self.inner;
        let text = key.text(&inner.prefix);
        match &inner.backend {
            Backend::Disabled => return,
            Backend::Memory(memory) => memory.put(text, value.clone()).await,
            Backend::Redis(redis) => {
                let bytes = value::encode(value);
                if let Err(e) = redis.put(&text, &bytes, inner.ttl).await {
                    self.bypassed("put", &e);
                    return;
                }
                inner.log.healthy();
            }
        }
        if let Some(m) = &inner.metrics {
            m.writes.with_label_values(&[inner.backend.label()]).inc();
        }
    }

    fn bypassed(&self, op: &'static str, error: &self::redis::RedisOpError) {
        let inner = &*self.inner;
        let reason = error.reason();
        if let Some(m) = &inner.metrics {
            m.bypass
                .with_label_values(&[inner.backend.label(), op, reason])
                .inc();
        }
        inner.log.trouble(op, reason, error);
    }
}
