//! Cache metric families, registered on the gateway's registry, and the
//! rate-limited warning for cache trouble. Labels are the backend name and
//! fixed outcome and reason sets: never keys, UIDs or model inputs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Lookup latency buckets: an in-process hit is microseconds, a local
/// Redis a few hundred, a remote one milliseconds; the top is the timeout.
const LOOKUP_BUCKETS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25,
];

/// How often one kind of cache trouble may be logged as a warning.
pub const DEFAULT_WARN_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct CacheMetrics {
    /// Lookups by backend and outcome (`hit`, `miss`, `bypass`).
    pub requests: IntCounterVec,
    /// Operations skipped because of backend trouble, by backend, op
    /// (`get`, `put`) and reason (`timeout`, `unavailable`, `error`).
    pub bypass: IntCounterVec,
    /// Stored values not used, by backend and reason (`schema`, `corrupt`,
    /// `mismatch`); each counts as a miss.
    pub rejected: IntCounterVec,
    /// Results stored, by backend.
    pub writes: IntCounterVec,
    /// Lookup latency by backend, bypasses included.
    pub lookup_seconds: HistogramVec,
}

impl CacheMetrics {
    pub fn register(registry: &Registry) -> Result<CacheMetrics, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "gateway_cache_requests_total",
                "Result cache lookups by backend and outcome (hit, miss, bypass)",
            ),
            &["backend", "outcome"],
        )?;
        let bypass = IntCounterVec::new(
            Opts::new(
                "gateway_cache_bypass_total",
                "Result cache operations skipped because the backend is in trouble",
            ),
            &["backend", "op", "reason"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "gateway_cache_rejected_total",
                "Stored results not used (unknown schema, corrupt, other model): counted as misses",
            ),
            &["backend", "reason"],
        )?;
        let writes = IntCounterVec::new(
            Opts::new(
                "gateway_cache_writes_total",
                "Results stored in the cache by backend",
            ),
            &["backend"],
        )?;
        let lookup_seconds = HistogramVec::new(
            HistogramOpts::new(
                "gateway_cache_lookup_seconds",
                "Result cache lookup latency by backend",
            )
            .buckets(LOOKUP_BUCKETS.to_vec()),
            &["backend"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(bypass.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(lookup_seconds.clone()))?;
        Ok(CacheMetrics {
            requests,
            bypass,
            rejected,
            writes,
            lookup_seconds,
        })
    }
}

/// Warns about Redis trouble at most once per interval and reason, with
/// the number of occurrences held back meanwhile, and says once when Redis
/// answers again. A Redis outage under load would otherwise write one line
/// per image.
#[derive(Debug)]
pub struct TroubleLog {
    /// `memory`, `redis` (the cache) or `route-sync`.
    component: &'static str,
    /// What the trouble means for the gateway, the warning's message.
    consequence: &'static str,
    interval: Duration,
    /// Per reason: when it was last logged, and how often since.
    last: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
    degraded: AtomicBool,
}

impl TroubleLog {
    pub fn new(
        component: &'static str,
        consequence: &'static str,
        interval: Duration,
    ) -> TroubleLog {
        TroubleLog {
            component,
            consequence,
            interval,
            last: Mutex::new(HashMap::new()),
            degraded: AtomicBool::new(false),
        }
    }

    /// Records one bypass; logs it unless this reason was logged recently.
    /// Returns whether it was logged.
    pub fn trouble(
        &self,
        op: &'static str,
        reason: &'static str,
        error: &dyn std::fmt::Display,
    ) -> bool {
        self.degraded.store(true, Ordering::Relaxed);
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = last.entry(reason).or_insert((None, 0));
        if entry
            .0
            .is_some_and(|at| now.duration_since(at) < self.interval)
        {
            entry.1 += 1;
            return false;
        }
        let suppressed = std::mem::replace(entry, (Some(now), 0)).1;
        drop(last);
        tracing::warn!(
            component = self.component,
            op,
            reason,
            error = %error,
            suppressed,
            "{}",
            self.consequence
        );
        true
    }

    /// Records a successful backend operation; the first after trouble is
    /// logged.
    pub fn healthy(&self) {
        if self.degraded.load(Ordering::Relaxed) && self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!(component = self.component, "redis answers again");
        }
    }
}
