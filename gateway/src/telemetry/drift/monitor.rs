//! The drift monitor's state: one baseline per model version, one decaying
//! current distribution per (site, scanner, model version) key and quantity,
//! the PSI between them, and the alert state. Pure apart from its metrics:
//! the caller passes the time in and writes the returned events and
//! snapshots to the index database.

use std::collections::{HashMap, HashSet};

use prometheus::{Gauge, IntCounter};
use serde::{Deserialize, Serialize};

use super::baseline::{BaselineMode, ModelBaseline};
use super::histogram::{self, DecayingCounts};
use super::metrics::DriftMetrics;
use super::quantity::Quantity;
use super::{BaselineRow, DriftPersist, DriftRow, ManifestBaseline};
use super::{DriftEvent, DriftEventKind, DriftKey, DriftObservation, DriftOutcome, ModelKey};
use crate::config::DriftConfig;

/// Model versions with a baseline; beyond this observations are refused
/// (a repository holds far fewer).
pub const MAX_MODEL_VERSIONS: usize = 256;

/// An alert clears once PSI falls below this share of the threshold, so a
/// value hovering at the threshold does not alert on every observation.
pub const RECOVERY_FRACTION: f64 = 0.8;

pub(super) struct DriftMonitor {
    pub config: DriftConfig,
    metrics: DriftMetrics,
    /// Per observation: old counts × decay before adding one.
    decay: f32,
    models: HashMap<ModelKey, ModelBaseline>,
    keys: HashMap<DriftKey, KeyState>,
    /// Observation counter, the clock of least-recently-used eviction.
    tick: u64,
    last_flush_ms: i64,
    dirty_models: HashSet<ModelKey>,
    dirty_keys: HashSet<DriftKey>,
    removed_keys: Vec<DriftKey>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct KeyState {
    pub last_used: u64,
    pub observations: u64,
    pub quantities: Vec<KeyQuantity>,
    #[serde(skip)]
    observations_counter: Option<IntCounter>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct KeyQuantity {
    pub quantity: Quantity,
    pub current: DecayingCounts,
    /// Observations counted since the baseline froze.
    pub observed: u64,
    pub psi: Option<f64>,
    pub ks: Option<f64>,
    pub alerting: bool,
    #[serde(skip)]
    gauge: Option<Gauge>,
}

impl DriftMonitor {
    pub fn new(config: DriftConfig, metrics: DriftMetrics) -> Self {
        metrics.threshold.set(config.threshold);
        Self {
            decay: 1.0 - 1.0 / config.window.max(1) as f32,
            config,
            metrics,
            models: HashMap::new(),
            keys: HashMap::new(),
            tick: 0,
            last_flush_ms: 0,
            dirty_models: HashSet::new(),
            dirty_keys: HashSet::new(),
            removed_keys: Vec::new(),
        }
    }

    /// Puts a manifest's `[baseline]` in place for a model version.
    pub fn register_manifest_baseline(&mut self, model: ModelKey, baseline: &ManifestBaseline) {
        if self.config.baseline == BaselineMode::Window
            || (!self.models.contains_key(&model) && self.models.len() >= MAX_MODEL_VERSIONS)
        {
            return;
        }
        let changed = self
            .models
            .entry(model.clone())
            .or_default()
            .apply_manifest(baseline);
        for (key, state) in &mut self.keys {
            if key.model == model.0 && key.version == model.1 {
                state.quantities.retain(|q| !changed.contains(&q.quantity));
            }
        }
        self.dirty_models.insert(model);
    }

    pub fn observe(&mut self, obs: &DriftObservation<'_>, now_ms: i64) -> DriftOutcome {
        let mut outcome = DriftOutcome::default();
        if !self.config.enabled {
            return outcome;
        }
        let model_key: ModelKey = (obs.model.to_string(), obs.version.to_string());
        if !self.models.contains_key(&model_key) && self.models.len() >= MAX_MODEL_VERSIONS {
            self.metrics.refused.inc();
            return outcome;
        }
        let key = DriftKey {
            site: obs.site.to_string(),
            scanner: obs.scanner.to_string(),
            model: obs.model.to_string(),
            version: obs.version.to_string(),
        };
        if !self.keys.contains_key(&key) && self.keys.len() >= self.config.max_tracked {
            self.evict_least_recently_used();
        }
        self.tick += 1;
        let config = &self.config;
        let model = self.models.entry(model_key.clone()).or_default();
        let state = self.keys.entry(key.clone()).or_default();
        state.last_used = self.tick;
        state.observations += 1;
        state
            .observations_counter
            .get_or_insert_with(|| {
                self.metrics
                    .observations
                    .with_label_values(&key.label_values())
            })
            .inc();
        let mut model_changed = false;
        for (quantity, value) in obs.values() {
            let Some(baseline) = model.quantity_mut(&quantity, config.baseline, config.bins) else {
                continue;
            };
            let Some((layout, expected)) = baseline.frozen() else {
                model_changed |= baseline.add_warming(value.as_value(), config.bins, config.window);
                continue;
            };
            let Some(bin) = layout.bin_of(value.as_value()) else {
                continue;
            };
            let bins = layout.bins();
            let numeric = layout.is_numeric();
            let current = state.quantity_mut(&quantity, bins);
            current.current.add(bin, self.decay);
            current.observed += 1;
            if current.observed < config.min_observations as u64 {
                continue;
            }
            let actual = current.current.shares();
            let psi = histogram::psi(expected, &actual);
            current.psi = Some(psi);
            current.ks = numeric.then(|| histogram::ks(expected, &actual));
            let quantity_label = quantity.to_string();
            current
                .gauge
                .get_or_insert_with(|| {
                    self.metrics
                        .psi
                        .with_label_values(&key.quantity_label_values(&quantity_label))
                })
                .set(psi);
            let kind = if !current.alerting && psi > config.threshold {
                current.alerting = true;
                DriftEventKind::ThresholdCrossed
            } else if current.alerting && psi < config.threshold * RECOVERY_FRACTION {
                current.alerting = false;
                DriftEventKind::Recovered
            } else {
                continue;
            };
            let event = DriftEvent {
                kind,
                key: key.clone(),
                quantity: quantity_label,
                psi,
                threshold: config.threshold,
                observations: current.observed,
            };
            event.log();
            if kind == DriftEventKind::ThresholdCrossed {
                self.metrics
                    .alerts
                    .with_label_values(&key.quantity_label_values(&event.quantity))
                    .inc();
            }
            outcome.events.push(event);
        }
        if model_changed {
            self.dirty_models.insert(model_key);
        }
        self.dirty_keys.insert(key);
        self.metrics.tracked_keys.set(self.keys.len() as i64);
        if now_ms - self.last_flush_ms >= self.config.persist_interval.as_millis() as i64 {
            self.last_flush_ms = now_ms;
            outcome.persist = Some(self.take_dirty());
        }
        outcome
    }

    fn evict_least_recently_used(&mut self) {
        // A linear scan, only when a new key arrives at the limit: cheaper
        // in memory than an ordered index, and bounded by max_tracked.
        let Some(oldest) = self
            .keys
            .iter()
            .min_by_key(|(_, state)| state.last_used)
            .map(|(key, _)| key.clone())
        else {
            return;
        };
        if let Some(state) = self.keys.remove(&oldest) {
            for q in &state.quantities {
                let _ = self
                    .metrics
                    .psi
                    .remove_label_values(&oldest.quantity_label_values(&q.quantity.to_string()));
            }
            let _ = self
                .metrics
                .observations
                .remove_label_values(&oldest.label_values());
        }
        self.metrics.evicted_keys.inc();
        self.dirty_keys.remove(&oldest);
        self.removed_keys.push(oldest);
    }

    /// Everything changed since the last flush, for `persist::save`.
    pub fn take_dirty(&mut self) -> DriftPersist {
        let models = std::mem::take(&mut self.dirty_models)
            .into_iter()
            .filter_map(|k| {
                let state = serde_json::to_string(self.models.get(&k)?).ok()?;
                Some((k, state))
            })
            .collect();
        let keys = std::mem::take(&mut self.dirty_keys)
            .into_iter()
            .filter_map(|k| {
                let state = serde_json::to_string(self.keys.get(&k)?).ok()?;
                Some((k, state))
            })
            .collect();
        DriftPersist {
            models,
            keys,
            removed: std::mem::take(&mut self.removed_keys),
        }
    }

    /// Loads persisted state (most recently used keys first win the limit).
    pub fn restore(
        &mut self,
        models: Vec<(ModelKey, ModelBaseline)>,
        keys: Vec<(DriftKey, KeyState)>,
    ) {
        for (key, baseline) in models.into_iter().take(MAX_MODEL_VERSIONS) {
            self.models.entry(key).or_insert(baseline);
        }
        let mut keys = keys;
        keys.sort_by_key(|(_, state)| std::cmp::Reverse(state.last_used));
        for (key, mut state) in keys.into_iter().take(self.config.max_tracked) {
            self.tick = self.tick.max(state.last_used);
            for q in &mut state.quantities {
                if let Some(psi) = q.psi {
                    let label = q.quantity.to_string();
                    let gauge = self
                        .metrics
                        .psi
                        .with_label_values(&key.quantity_label_values(&label));
                    gauge.set(psi);
                    q.gauge = Some(gauge);
                }
            }
            self.keys.insert(key, state);
        }
        self.metrics.tracked_keys.set(self.keys.len() as i64);
    }

    /// Rows for the report, limited to `sites` when given.
    pub fn rows(&self, sites: Option<&[String]>) -> Vec<DriftRow> {
        let mut rows = Vec::new();
        for (key, state) in &self.keys {
            if sites.is_some_and(|s| !s.contains(&key.site)) {
                continue;
            }
            let model = self.models.get(&(key.model.clone(), key.version.clone()));
            for q in &state.quantities {
                let baseline = model
                    .and_then(|m| m.get(&q.quantity))
                    .map_or("warming", |b| b.source_label());
                rows.push(DriftRow {
                    site: key.site.clone(),
                    scanner: key.scanner.clone(),
                    model: key.model.clone(),
                    version: key.version.clone(),
                    quantity: q.quantity.to_string(),
                    psi: q.psi,
                    ks: q.ks,
                    observations: q.observed,
                    baseline: baseline.to_string(),
                    over_threshold: q.psi.is_some_and(|p| p > self.config.threshold),
                    alerting: q.alerting,
                });
            }
        }
        rows.sort_by(|a, b| {
            (&a.site, &a.scanner, &a.model, &a.version, &a.quantity).cmp(&(
                &b.site,
                &b.scanner,
                &b.model,
                &b.version,
                &b.quantity,
            ))
        });
        rows
    }

    pub fn baselines(&self) -> Vec<BaselineRow> {
        let mut rows: Vec<BaselineRow> = self
            .models
            .iter()
            .flat_map(|((model, version), baseline)| {
                baseline.quantities.iter().map(move |q| BaselineRow {
                    model: model.clone(),
                    version: version.clone(),
                    quantity: q.quantity.to_string(),
                    source: q.source_label().to_string(),
                    observations: q.observations(),
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            (&a.model, &a.version, &a.quantity).cmp(&(&b.model, &b.version, &b.quantity))
        });
        rows
    }

    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    /// Bytes held by the monitor's own state, from the sizes of what it
    /// stores (hash-map slots, strings, vectors); excludes the metric
    /// families, measured separately by the bench.
    pub fn estimated_bytes(&self) -> usize {
        use std::mem::size_of;
        let string = |s: &String| size_of::<String>() + s.capacity();
        let key_bytes = |k: &DriftKey| {
            string(&k.site) + string(&k.scanner) + string(&k.model) + string(&k.version)
        };
        let mut total = size_of::<Self>();
        // hashbrown: one slot per capacity entry plus a control byte.
        total += self.keys.capacity() * (size_of::<(DriftKey, KeyState)>() + 1);
        for (key, state) in &self.keys {
            total += key_bytes(key) - 4 * size_of::<String>();
            total += state.quantities.capacity() * size_of::<KeyQuantity>();
            for q in &state.quantities {
                total += q.current.counts.capacity() * size_of::<f32>();
                if let Quantity::Score(label) = &q.quantity {
                    total += label.capacity();
                }
            }
        }
        total += self.models.capacity() * (size_of::<(ModelKey, ModelBaseline)>() + 1);
        for (key, model) in &self.models {
            total += key.0.capacity() + key.1.capacity() + model.heap_bytes();
        }
        total
    }
}

impl KeyState {
    fn quantity_mut(&mut self, quantity: &Quantity, bins: usize) -> &mut KeyQuantity {
        let index = match self.quantities.iter().position(|q| q.quantity == *quantity) {
            // Bins changed under it (a manifest baseline replaced a window).
            Some(i) if self.quantities[i].current.counts.len() != bins => {
                self.quantities[i].current = DecayingCounts::new(bins);
                self.quantities[i].observed = 0;
                i
            }
            Some(i) => i,
            None => {
                self.quantities.push(KeyQuantity {
                    quantity: quantity.clone(),
                    current: DecayingCounts::new(bins),
                    observed: 0,
                    psi: None,
                    ks: None,
                    alerting: false,
                    gauge: None,
                });
                self.quantities.len() - 1
            }
        };
        &mut self.quantities[index]
    }
}
