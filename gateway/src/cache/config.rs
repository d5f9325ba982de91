//! The `[cache]` section: which backend keeps inference results, for how
//! long, and how to reach Redis (which also carries shared route state).
//!
//! [`RawCacheConfig`] is the TOML as written; [`validate`] turns it into a
//! [`CacheConfig`] and reports every problem at once, like the rest of the
//! configuration. Secrets are resolved when the cache is built, not here, so
//! `check-config` never needs the production password in its environment.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[cache]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawCacheConfig {
    /// `"memory"` (the embedded default), `"redis"` or `"none"`.
    pub kind: String,
    /// How long a result is kept, e.g. `"7d"`.
    pub ttl: String,
    /// Memory backend: most results kept; the least used go first.
    pub max_entries: u64,
    /// Prefix of every key, so deployments can share one Redis.
    pub key_prefix: String,
    pub redis: RawRedisConfig,
}

impl Default for RawCacheConfig {
    fn default() -> Self {
        Self {
            kind: "memory".into(),
            ttl: "7d".into(),
            max_entries: 100_000,
            key_prefix: DEFAULT_KEY_PREFIX.into(),
            redis: RawRedisConfig::default(),
        }
    }
}

/// `[cache.redis]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawRedisConfig {
    /// `redis://host:port/db` or `rediss://…` for TLS; no credentials in it.
    pub url: String,
    /// ACL user; empty: the default user.
    pub username: String,
    /// The password itself; prefer `password_env`.
    pub password: String,
    /// Name of an environment variable holding the password.
    pub password_env: String,
    /// PEM file of the CA that signed the server's certificate (TLS only);
    /// empty: the system's trust store.
    pub ca_file: String,
    pub pool_size: usize,
    /// Deadline of every Redis operation, connection included, e.g. `"50ms"`.
    pub timeout: String,
    /// Share operator route state between replicas through this Redis.
    pub share_route_state: bool,
    /// This replica's name in shared route state and audit entries; empty:
    /// host name plus a random suffix, new at each start.
    pub replica_id: String,
}

impl Default for RawRedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            username: String::new(),
            password: String::new(),
            password_env: String::new(),
            ca_file: String::new(),
            pool_size: 8,
            timeout: "50ms".into(),
            share_route_state: true,
            replica_id: String::new(),
        }
    }
}

/// Keys start with this unless `key_prefix` says otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "dgw";

/// The validated `[cache]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub backend: CacheBackendConfig,
    /// Time to live of every stored result.
    pub ttl: Duration,
    pub key_prefix: String,
}

impl CacheConfig {
    /// The in-process cache with the defaults of `config/gateway.toml`.
    pub fn memory(max_entries: u64, ttl: Duration) -> CacheConfig {
        CacheConfig {
            backend: CacheBackendConfig::Memory { max_entries },
            ttl,
            key_prefix: DEFAULT_KEY_PREFIX.into(),
        }
    }

    /// The Redis settings, when Redis is the backend.
    pub fn redis(&self) -> Option<&RedisConfig> {
        match &self.backend {
            CacheBackendConfig::Redis(redis) => Some(redis),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CacheBackendConfig {
    /// Every lookup misses and nothing is stored.
    None,
    /// A bounded cache in this process (moka): lost on restart, not shared.
    Memory { max_entries: u64 },
    /// Shared by every replica through Redis.
    Redis(RedisConfig),
}

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<RedisPassword>,
    pub ca_file: Option<PathBuf>,
    pub pool_size: usize,
    pub timeout: Duration,
    pub share_route_state: bool,
    pub replica_id: Option<String>,
    pub key_prefix: String,
}

impl RedisConfig {
    /// Plain settings for `url`, for tests and tools.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            username: None,
            password: None,
            ca_file: None,
            pool_size: 8,
            timeout: Duration::from_millis(50),
            share_route_state: true,
            replica_id: None,
            key_prefix: DEFAULT_KEY_PREFIX.into(),
        }
    }

    /// Whether the connection uses TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }
}

/// Where the Redis password comes from. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisPassword {
    Inline(String),
    /// Read from this environment variable when the cache is built.
    Env(String),
}

impl std::fmt::Debug for RedisPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisPassword::Inline(_) => f.write_str("Inline(<redacted>)"),
            RedisPassword::Env(name) => write!(f, "Env({name})"),
        }
    }
}

/// What `check-config` prints instead of an inline password.
pub const REDACTED: &str = "<redacted>";

/// Checks `[cache]`, collecting every problem.
pub fn validate(raw: &RawCacheConfig) -> Result<CacheConfig, Vec<String>> {
    let mut problems = Vec::new();
    let ttl = match humantime::parse_duration(&raw.ttl) {
        Ok(ttl) if ttl >= Duration::from_secs(1) => ttl,
        Ok(_) => {
            problems.push("cache.ttl: must be at least 1s".into());
            Duration::from_secs(1)
        }
        Err(e) => {
            problems.push(format!(
                "cache.ttl: `{}` is not a duration like \"7d\" ({e})",
                raw.ttl
            ));
            Duration::from_secs(1)
        }
    };
    let prefix_ok = !raw.key_prefix.is_empty()
        && raw.key_prefix.len() <= 32
        && raw
            .key_prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_:".contains(c));
    if !prefix_ok {
        problems.push(format!(
            "cache.key_prefix: `{}` must be 1-32 characters of a-z, 0-9, '-', '_' or ':'",
            raw.key_prefix
        ));
    }
    let backend = match raw.kind.as_str() {
        "none" => CacheBackendConfig::None,
        "memory" => {
            if raw.max_entries == 0 {
                problems.push("cache.max_entries: must be at least 1".into());
            }
            CacheBackendConfig::Memory {
                max_entries: raw.max_entries.max(1),
            }
        }
        "redis" => {
            CacheBackendConfig::Redis(validate_redis(&raw.redis, &raw.key_prefix, &mut problems))
        }
        other => {
            problems.push(format!(
                "cache.kind: `{other}` is not one of \"memory\", \"redis\", \"none\""
            ));
            CacheBackendConfig::None
        }
    };
    if problems.is_empty() {
        Ok(CacheConfig {
            backend,
            ttl,
            key_prefix: raw.key_prefix.clone(),
        })
    } else {
        Err(problems)
    }
}

fn validate_redis(raw: &RawRedisConfig, prefix: &str, problems: &mut Vec<String>) -> RedisConfig {
    let url = raw.url.trim();
    let tls = url.starts_with("rediss://");
    if !(url.starts_with("redis://") || tls) {
        problems.push(format!(
            "cache.redis.url: `{url}` must start with redis:// or rediss:// (TLS)"
        ));
    } else {
        match redis::IntoConnectionInfo::into_connection_info(url) {
            Ok(info) => {
                let settings = info.redis_settings();
                if settings.password().is_some() || settings.username().is_some() {
                    problems.push(
                        "cache.redis.url: must not carry credentials; use cache.redis.username and password_env"
                            .into(),
                    );
                }
            }
            Err(e) => problems.push(format!("cache.redis.url: `{url}` is not valid ({e})")),
        }
    }
    let password = match (raw.password.is_empty(), raw.password_env.trim()) {
        (true, "") => None,
        (false, "") => Some(RedisPassword::Inline(raw.password.clone())),
        (true, name) => Some(RedisPassword::Env(name.to_string())),
        (false, _) => {
            problems.push("cache.redis: set either password or password_env, not both".into());
            None
        }
    };
    let ca_file = (!raw.ca_file.trim().is_empty()).then(|| PathBuf::from(raw.ca_file.trim()));
    if ca_file.is_some() && !tls {
        problems.push("cache.redis.ca_file: only used with a rediss:// (TLS) url".into());
    }
    if raw.pool_size == 0 {
        problems.push("cache.redis.pool_size: must be at least 1".into());
    }
    let timeout = match humantime::parse_duration(&raw.timeout) {
        Ok(t) if t >= Duration::from_millis(1) && t <= Duration::from_secs(10) => t,
        Ok(_) => {
            problems.push("cache.redis.timeout: must be between 1ms and 10s".into());
            Duration::from_millis(50)
        }
        Err(e) => {
            problems.push(format!(
                "cache.redis.timeout: `{}` is not a duration like \"50ms\" ({e})",
                raw.timeout
            ));
            Duration::from_millis(50)
        }
    };
    let replica_id = raw.replica_id.trim();
    if !replica_id.is_empty() && crate::config::check_label_name(replica_id).is_err() {
        problems.push(format!(
            "cache.redis.replica_id: `{replica_id}` must be 1-64 characters of a-z, 0-9, '-' or '_'"
        ));
    }
    RedisConfig {
        url: url.to_string(),
        username: (!raw.username.trim().is_empty()).then(|| raw.username.trim().to_string()),
        password,
        ca_file,
        pool_size: raw.pool_size.max(1),
        timeout,
        share_route_state: raw.share_route_state,
        replica_id: (!replica_id.is_empty()).then(|| replica_id.to_string()),
        key_prefix: prefix.to_string(),
    }
}
