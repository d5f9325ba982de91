//! The live route table: loaded at start-up, reloaded from its file without
//! a restart (content-hash polling, or [`RoutesHandle::reload_now`] on
//! SIGHUP and from the admin API). A bad file never replaces a good table:
//! the last good one stays in force, and the refusal is logged and counted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use sha2::{Digest, Sha256};

use super::RoutesError;
use super::table::RouteTable;

/// Deployment cross-checks run on every table before it goes live (models
/// exist, destinations are configured): usually [`RouteTable::check`].
pub type RoutesValidator = Arc<dyn Fn(&RouteTable) -> Result<(), RoutesError> + Send + Sync>;

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file has the content of the table in force (or there is no file).
    Unchanged,
    /// A new table is in force.
    Reloaded { routes: usize },
}

/// Cheap to clone; every clone sees the same table.
#[derive(Clone)]
pub struct RoutesHandle {
    inner: Arc<Inner>,
}

struct Inner {
    path: Option<PathBuf>,
    validator: RoutesValidator,
    current: RwLock<Loaded>,
    /// Serialises reloads (watcher, SIGHUP, admin) so two cannot interleave.
    reloading: Mutex<()>,
    reloads: IntCounterVec,
    rules: IntGauge,
}

struct Loaded {
    table: Arc<RouteTable>,
    /// SHA-256 of the file content the table came from (`None`: embedded).
    hash: Option<[u8; 32]>,
}

impl RoutesHandle {
    /// Loads the table (`path = None`: the embedded default, never
    /// watched) and registers the route metrics on `registry`. A bad file or
    /// a failed `validator` is an error here: start-up refuses it.
    pub fn load(
        path: Option<PathBuf>,
        validator: RoutesValidator,
        registry: &Registry,
    ) -> Result<RoutesHandle, RoutesError> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "gateway_route_reloads_total",
                "Route table reloads by outcome (reloaded, rejected, unchanged)",
            ),
            &["outcome"],
        )?;
        let rules = IntGauge::new("gateway_route_rules", "Enabled routes in force")?;
        let (table, hash) = match &path {
            None => (RouteTable::embedded_default(), None),
            Some(path) => {
                let bytes = read(path)?;
                let table = parse_bytes(&bytes)?;
                (table, Some(hash_of(&bytes)))
            }
        };
        validator(&table)?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(rules.clone()))?;
        for outcome in ["reloaded", "rejected", "unchanged"] {
            // Present from the start, so a rate() over them has a baseline.
            reloads.with_label_values(&[outcome]);
        }
        rules.set(gauge_value(&table));
        tracing::info!(
            routes = table.routes().len(),
            enabled = table.enabled_count(),
            source = %describe(path.as_deref()),
            "routes loaded"
        );
        Ok(RoutesHandle {
            inner: Arc::new(Inner {
                path,
                validator,
                current: RwLock::new(Loaded {
                    table: Arc::new(table),
                    hash,
                }),
                reloading: Mutex::new(()),
                reloads,
                rules,
            }),
        })
    }

    /// The table in force. Hold the `Arc` for one decision, not longer, so
    /// the next decision sees a reload.
    pub fn current(&self) -> Arc<RouteTable> {
        let loaded = self
            .inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&loaded.table)
    }

    /// Re-reads the file now. Unchanged content is not re-parsed; changed
    /// content that is invalid (or fails the validator) is refused, and the
    /// table in force stays.
    pub fn reload_now(&self) -> Result<ReloadOutcome, RoutesError> {
        let Some(path) = &self.inner.path else {
            self.count("unchanged");
            return Ok(ReloadOutcome::Unchanged);
        };
        match read(path) {
            Ok(bytes) => self.apply(&bytes),
            Err(e) => {
                self.refuse(&e);
                Err(e)
            }
        }
    }

    /// Polls the file's content hash every `interval` and reloads when it
    /// changes. Each distinct bad content (or read failure) is logged once,
    /// not at every poll. Without a file the task ends at once. Abort the
    /// handle to stop watching.
    pub fn spawn_watcher(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let handle = self.clone();
        tokio::spawn(async move {
            if handle.inner.path.is_none() {
                return;
            }
            let mut last_seen = Seen::Content(handle.loaded_hash());
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate; the file was just loaded
            loop {
                ticker.tick().await;
                let poller = handle.clone();
                let previous = last_seen.clone();
                // Reading, parsing and the validator (which may look at the
                // model repository) are blocking work.
                match tokio::task::spawn_blocking(move || poller.poll_once(previous)).await {
                    Ok(seen) => last_seen = seen,
                    Err(e) => tracing::error!(error = %e, "route watcher poll failed"),
                }
            }
        })
    }

    /// One watcher poll: reloads if the content differs from what was last seen.
    fn poll_once(&self, last_seen: Seen) -> Seen {
        let Some(path) = &self.inner.path else {
            return last_seen;
        };
        match read(path) {
            Err(e) => {
                let seen = Seen::Unreadable(e.to_string());
                if seen != last_seen {
                    self.refuse(&e);
                }
                seen
            }
            Ok(bytes) => {
                let hash = hash_of(&bytes);
                let seen = Seen::Content(Some(hash));
                if seen != last_seen && Some(hash) != self.loaded_hash() {
                    // The outcome is logged and counted by apply().
                    let _ = self.apply(&bytes);
                }
                seen
            }
        }
    }

    fn apply(&self, bytes: &[u8]) -> Result<ReloadOutcome, RoutesError> {
        let _reloading = self
            .inner
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let hash = hash_of(bytes);
        if Some(hash) == self.loaded_hash() {
            self.count("unchanged");
            return Ok(ReloadOutcome::Unchanged);
        }
        let table = match parse_bytes(bytes).and_then(|t| (self.inner.validator)(&t).map(|()| t)) {
            Ok(table) => table,
            Err(e) => {
                self.refuse(&e);
                return Err(e);
            }
        };
        let routes = table.routes().len();
        self.inner.rules.set(gauge_value(&table));
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Loaded {
            table: Arc::new(table),
            hash: Some(hash),
        };
        self.count("reloaded");
        tracing::info!(routes, source = %describe(self.inner.path.as_deref()), "routes reloaded");
        Ok(ReloadOutcome::Reloaded { routes })
    }

    fn refuse(&self, error: &RoutesError) {
        self.count("rejected");
        tracing::error!(
            source = %describe(self.inner.path.as_deref()),
            error = %error,
            "routes file refused; the previous routes stay in force"
        );
    }

    fn loaded_hash(&self) -> Option<[u8; 32]> {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .hash
    }

    fn count(&self, outcome: &str) {
        self.inner.reloads.with_label_values(&[outcome]).inc();
    }
}

/// What the watcher saw at its last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Content(Option<[u8; 32]>),
    Unreadable(String),
}

fn read(path: &Path) -> Result<Vec<u8>, RoutesError> {
    std::fs::read(path).map_err(|source| RoutesError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_bytes(bytes: &[u8]) -> Result<RouteTable, RoutesError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| RoutesError::Invalid(vec![format!("the file is not UTF-8: {e}")]))?;
    RouteTable::from_toml(text)
}

fn hash_of(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn gauge_value(table: &RouteTable) -> i64 {
    i64::try_from(table.enabled_count()).unwrap_or(i64::MAX)
}

fn describe(path: Option<&Path>) -> String {
    path.map_or_else(
        || "embedded default".to_string(),
        |p| p.display().to_string(),
    )
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
