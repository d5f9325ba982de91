//! The Redis backend: a deadpool-redis pool of multiplexed connections,
//! optional TLS (rustls) and ACL credentials, and one deadline around every
//! operation, connection and pool wait included.
//!
//! Nothing here retries: a failed operation is reported to [`super`], which
//! bypasses the cache for that call. The pool recovers by itself: a broken
//! connection fails its recycle check (PING) on the next checkout and is
//! replaced by a fresh one, so a restarted Redis is used again without any
//! action.

use std::time::Duration;

use deadpool_redis::{Manager, Pool, PoolError, Runtime};
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo};

use super::CacheError;
use super::config::{RedisConfig, RedisPassword};

/// Why one Redis operation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RedisOpError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("no redis connection: {0}")]
    Pool(#[from] PoolError),
    #[error("redis: {0}")]
    Command(#[from] redis::RedisError),
}

impl RedisOpError {
    /// A bounded label for the bypass metric.
    pub fn reason(&self) -> &'static str {
        match self {
            RedisOpError::Timeout(_) | RedisOpError::Pool(PoolError::Timeout(_)) => "timeout",
            RedisOpError::Pool(_) => "unavailable",
            RedisOpError::Command(e) if e.is_timeout() => "timeout",
            RedisOpError::Command(e)
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() =>
            {
                "unavailable"
            }
            RedisOpError::Command(_) => "error",
        }
    }
}

#[derive(Clone)]
pub struct RedisCache {
    pool: Pool,
    timeout: Duration,
}

impl RedisCache {
    /// Builds the pool; connects lazily, so a Redis that is down at start
    /// only means bypassed lookups until it is up.
    pub fn new(config: &RedisConfig) -> Result<RedisCache, CacheError> {
        Ok(RedisCache {
            pool: pool(config, config.pool_size)?,
            timeout: config.timeout,
        })
    }

    /// The stored bytes at `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisOpError> {
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
            Ok(value)
        })
        .await
    }

    /// Stores `value` at `key`, expiring after `ttl` (millisecond precision).
    pub async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), RedisOpError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            let () = redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }

    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, RedisOpError>>,
    ) -> Result<T, RedisOpError> {
        tokio::time::timeout(self.timeout, op)
            .await
            .unwrap_or(Err(RedisOpError::Timeout(self.timeout)))
    }
}

/// The connection settings of `config`: URL, ACL credentials (the password
/// read from its environment variable now), and the CA for TLS.
pub fn connection_info(config: &RedisConfig) -> Result<ConnectionInfo, CacheError> {
    let mut info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| CacheError::Config(format!("cache.redis.url: {e}")))?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &config.username {
        settings = settings.set_username(username);
    }
    match &config.password {
        None => {}
        Some(RedisPassword::Inline(password)) => settings = settings.set_password(password),
        Some(RedisPassword::Env(name)) => {
            let password = std::env::var(name).map_err(|_| {
                CacheError::Config(format!(
                    "cache.redis.password_env: environment variable {name} is not set"
                ))
            })?;
            settings = settings.set_password(password);
        }
    }
    info = info.set_redis_settings(settings);
    if let Some(path) = &config.ca_file {
        let root_cert = std::fs::read(path).map_err(|e| {
            CacheError::Config(format!("cache.redis.ca_file {}: {e}", path.display()))
        })?;
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        };
        let client = redis::Client::build_with_tls(info, certificates)
            .map_err(|e| CacheError::Config(format!("cache.redis.ca_file: {e}")))?;
        info = client.get_connection_info().clone();
    }
    Ok(info)
}

/// A pool of at most `size` connections to `config`'s Redis; every
/// connect, checkout and command bounded by `config.timeout`.
pub fn pool(config: &RedisConfig, size: usize) -> Result<Pool, CacheError> {
    let connection = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.timeout))
        .set_response_timeout(Some(config.timeout));
    let manager = Manager::new_with_config(connection_info(config)?, connection)
        .map_err(|e| CacheError::Config(format!("cache.redis: {e}")))?;
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.timeout))
        .create_timeout(Some(config.timeout))
        .recycle_timeout(Some(config.timeout))
        .build()
        .map_err(|e| CacheError::Config(format!("cache.redis pool: {e}")))
}

/// A client for dedicated connections (pub/sub), with the same settings.
pub fn client(config: &RedisConfig) -> Result<redis::Client, CacheError> {
    redis::Client::open(connection_info(config)?)
        .map_err(|e| CacheError::Config(format!("cache.redis: {e}")))
}
