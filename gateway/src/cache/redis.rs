//! The Redis backend: a deadpool-redis pool of multiplexed connections,
//! optional TLS (rustls) and ACL credentials, and one deadline around every
//! operation, connection and pool wait included.
//!
//! Nothing here retries: a failed operation is reported to [`super`], which
//! bypasses the cache for that call. The pool recovers by itself: a
//! connection that failed an operation is taken out of the pool, one idle
//! for a while is checked with a PING before reuse, and new ones are opened
//! on demand, so a restarted Redis is used again without any action.
//!
//! deadpool-redis's own manager PINGs on every checkout, which doubles the
//! cost of a lookup on a local Redis (measured with `examples/cache_bench`:
//! p50 ~68 µs against ~31 µs for the GET alone); [`RedisManager`] keeps its
//! connection set-up and PINGs only connections idle for [`PING_IF_IDLE`].

use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleResult};
use deadpool_redis::Runtime;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo, RedisError};

use super::CacheError;
use super::config::{RedisConfig, RedisPassword};

/// A pooled connection unused for this long is PINGed before reuse.
pub const PING_IF_IDLE: Duration = Duration::from_secs(2);

/// deadpool-redis's connection manager with a cheaper recycle check.
pub struct RedisManager {
    inner: deadpool_redis::Manager,
}

impl managed::Manager for RedisManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.inner.create().await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<RedisError> {
        if metrics.last_used() < PING_IF_IDLE {
            return Ok(());
        }
        self.inner.recycle(conn, metrics).await
    }
}

/// A pool of Redis connections.
pub type RedisPool = managed::Pool<RedisManager>;
type PoolError = managed::PoolError<RedisError>;

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
            RedisOpError::Pool(PoolError::Backend(e)) | RedisOpError::Command(e) => {
                if e.is_timeout() {
                    "timeout"
                } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
                {
                    "unavailable"
                } else {
                    "error"
                }
            }
            RedisOpError::Pool(_) => "unavailable",
        }
    }
}

#[derive(Clone)]
pub struct RedisCache {
    pool: RedisPool,
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
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.run(&cmd).await
    }

    /// Stores `value` at `key`, expiring after `ttl` (millisecond precision).
    pub async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), RedisOpError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(ttl_ms);
        self.run(&cmd).await
    }

    /// Runs `cmd` on a pooled connection within the deadline.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisOpError> {
        run(&self.pool, self.timeout, cmd).await
    }
}

/// Runs `cmd` on a connection from `pool`, the checkout included within
/// `timeout`. A connection whose command failed or timed out is dropped
/// from the pool rather than handed to the next caller.
pub async fn run<T: redis::FromRedisValue>(
    pool: &RedisPool,
    timeout: Duration,
    cmd: &redis::Cmd,
) -> Result<T, RedisOpError> {
    let op = async {
        let mut checkout = Checkout {
            conn: Some(pool.get().await?),
            succeeded: false,
        };
        let value = cmd.query_async::<T>(checkout.conn()).await?;
        checkout.succeeded = true;
        Ok(value)
    };
    tokio::time::timeout(timeout, op)
        .await
        .unwrap_or(Err(RedisOpError::Timeout(timeout)))
}

/// A pooled connection that goes back to the pool only if its command
/// succeeded: dropped on an error or mid-command (deadline), it leaves the
/// pool for good, so the next caller never inherits a broken connection or
/// a late reply.
struct Checkout {
    conn: Option<managed::Object<RedisManager>>,
    succeeded: bool,
}

impl Checkout {
    fn conn(&mut self) -> &mut MultiplexedConnection {
        self.conn.as_deref_mut().expect("held until dropped")
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if !self.succeeded
            && let Some(conn) = self.conn.take()
        {
            drop(managed::Object::take(conn));
        }
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
pub fn pool(config: &RedisConfig, size: usize) -> Result<RedisPool, CacheError> {
    let connection = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.timeout))
        .set_response_timeout(Some(config.timeout));
    let inner = deadpool_redis::Manager::new_with_config(connection_info(config)?, connection)
        .map_err(|e| CacheError::Config(format!("cache.redis: {e}")))?;
    RedisPool::builder(RedisManager { inner })
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
