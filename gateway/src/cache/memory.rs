//! The in-process backend (moka): bounded by entry count, each entry
//! expiring after the TTL. It cannot fail, is lost on restart and is not
//! shared between replicas; it is the embedded default because it needs
//! nothing else running.

use std::time::Duration;

use moka::future::Cache;

use super::value::CachedResult;

#[derive(Clone)]
pub struct MemoryCache {
    entries: Cache<String, CachedResult>,
}

impl MemoryCache {
    /// At most `max_entries` results, each kept at most `ttl`. Beyond the
    /// bound moka evicts by frequency and recency (TinyLFU), so a result
    /// reused often outlives one seen once.
    pub fn new(max_entries: u64, ttl: Duration) -> MemoryCache {
        MemoryCache {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub async fn get(&self, key: &str) -> Option<CachedResult> {
        self.entries.get(key).await
    }

    pub async fn put(&self, key: String, value: CachedResult) {
        self.entries.insert(key, value).await;
    }

    /// Entries held, after pending evictions are applied (for tests and
    /// the benchmark; moka applies evictions lazily).
    pub async fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count()
    }
}
