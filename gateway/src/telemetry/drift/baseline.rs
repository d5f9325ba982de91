//! Baselines of the drift monitor, one per model version: what a model's
//! inputs and outputs looked like when it was known to work. Either given
//! by the manifest's `[baseline]` (bins and expected shares), or frozen from
//! the first `window` observations the model version sees, pooled over every
//! site and scanner, so that a new scanner or site is compared with what
//! came before it rather than with itself.

use serde::{Deserialize, Serialize};

use super::histogram::{Layout, Value, shares};
use super::quantity::{DefaultBins, MAX_CATEGORIES, MAX_SCORE_LABELS, Quantity};

/// A model version's baseline for one quantity, as a manifest states it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantityBaseline {
    pub quantity: Quantity,
    pub layout: Layout,
    /// Expected share per bin (`layout.bins()` values summing to 1).
    pub shares: Vec<f64>,
}

/// The optional `[baseline]` of a manifest, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ManifestBaseline {
    pub quantities: Vec<QuantityBaseline>,
}

/// Where the baseline a quantity is compared with came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineSource {
    Manifest,
    Window,
}

/// Which baselines the monitor uses (`drift.baseline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineMode {
    /// The manifest's where it gives one, otherwise a frozen window.
    Auto,
    /// Only quantities the manifest gives are monitored.
    Manifest,
    /// Frozen windows only; manifest baselines are ignored.
    Window,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum BaselineState {
    /// Filling from the first observations. `layout` is `None` while edges
    /// are still to be learned from `sample`; categories grow first-seen up
    /// to [`MAX_CATEGORIES`], with `counts[MAX_CATEGORIES]` as `other`.
    Warming {
        layout: Option<Layout>,
        counts: Vec<u64>,
        categories: Vec<String>,
        sample: Vec<f64>,
        observations: u64,
    },
    Frozen {
        layout: Layout,
        shares: Vec<f64>,
        source: BaselineSource,
        observations: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct BaselineQuantity {
    pub quantity: Quantity,
    pub state: BaselineState,
}

/// Every quantity's baseline for one model version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct ModelBaseline {
    pub quantities: Vec<BaselineQuantity>,
}

impl BaselineQuantity {
    fn warming(quantity: Quantity, bins: usize) -> Self {
        let (layout, counts) = match quantity.default_bins(bins) {
            DefaultBins::Fixed(layout) => {
                let bins = layout.bins();
                (Some(layout), vec![0; bins])
            }
            DefaultBins::Categorical => (None, vec![0; MAX_CATEGORIES + 1]),
            DefaultBins::Learned => (None, Vec::new()),
        };
        BaselineQuantity {
            quantity,
            state: BaselineState::Warming {
                layout,
                counts,
                categories: Vec::new(),
                sample: Vec::new(),
                observations: 0,
            },
        }
    }

    pub fn from_manifest(spec: &QuantityBaseline) -> Self {
        BaselineQuantity {
            quantity: spec.quantity.clone(),
            state: BaselineState::Frozen {
                layout: spec.layout.clone(),
                shares: spec.shares.clone(),
                source: BaselineSource::Manifest,
                observations: 0,
            },
        }
    }

    /// Adds a value while warming; freezes after `window` values. Returns
    /// whether anything changed.
    pub fn add_warming(&mut self, value: Value<'_>, bins: usize, window: usize) -> bool {
        let BaselineState::Warming {
            layout,
            counts,
            categories,
            sample,
            observations,
        } = &mut self.state
        else {
            return false;
        };
        match (layout.as_ref(), value) {
            (Some(layout), value) => match layout.bin_of(value) {
                Some(bin) => counts[bin] += 1,
                None => return false,
            },
            (None, Value::Category(c)) if self.quantity.is_categorical() => {
                let index = match categories.iter().position(|known| known == c) {
                    Some(i) => i,
                    None if categories.len() < MAX_CATEGORIES => {
                        categories.push(c.to_string());
                        categories.len() - 1
                    }
                    None => MAX_CATEGORIES,
                };
                counts[index] += 1;
            }
            (None, Value::Number(v)) if !self.quantity.is_categorical() && v.is_finite() => {
                sample.push(v);
            }
            _ => return false,
        }
        *observations += 1;
        if *observations as usize >= window {
            self.freeze(bins);
        }
        true
    }

    fn freeze(&mut self, bins: usize) {
        let BaselineState::Warming {
            layout,
            counts,
            categories,
            sample,
            observations,
        } = &mut self.state
        else {
            return;
        };
        let (layout, counts): (Layout, Vec<f64>) = match layout.take() {
            Some(layout) => (layout, counts.iter().map(|c| *c as f64).collect()),
            None if self.quantity.is_categorical() => {
                let mut kept: Vec<f64> = counts[..categories.len()]
                    .iter()
                    .map(|c| *c as f64)
                    .collect();
                kept.push(counts[MAX_CATEGORIES] as f64);
                (Layout::Categories(std::mem::take(categories)), kept)
            }
            None => {
                let layout = Layout::quantiles(sample, bins);
                let mut binned = vec![0.0; layout.bins()];
                for v in sample.iter() {
                    if let Some(bin) = layout.bin_of(Value::Number(*v)) {
                        binned[bin] += 1.0;
                    }
                }
                (layout, binned)
            }
        };
        self.state = BaselineState::Frozen {
            layout,
            shares: shares(&counts),
            source: BaselineSource::Window,
            observations: *observations,
        };
    }

    pub fn frozen(&self) -> Option<(&Layout, &[f64])> {
        match &self.state {
            BaselineState::Frozen { layout, shares, .. } => Some((layout, shares)),
            BaselineState::Warming { .. } => None,
        }
    }

    /// `manifest`, `window`, or `warming`: for the report.
    pub fn source_label(&self) -> &'static str {
        match &self.state {
            BaselineState::Frozen {
                source: BaselineSource::Manifest,
                ..
            } => "manifest",
            BaselineState::Frozen { .. } => "window",
            BaselineState::Warming { .. } => "warming",
        }
    }

    pub fn observations(&self) -> u64 {
        match &self.state {
            BaselineState::Warming { observations, .. }
            | BaselineState::Frozen { observations, .. } => *observations,
        }
    }
}

impl ModelBaseline {
    /// The baseline of `quantity`, created as a warming window when the
    /// mode allows one; `None` when it is not to be monitored.
    pub fn quantity_mut(
        &mut self,
        quantity: &Quantity,
        mode: BaselineMode,
        bins: usize,
    ) -> Option<&mut BaselineQuantity> {
        if let Some(i) = self.quantities.iter().position(|q| q.quantity == *quantity) {
            return Some(&mut self.quantities[i]);
        }
        if mode == BaselineMode::Manifest {
            return None;
        }
        let scores = self
            .quantities
            .iter()
            .filter(|q| matches!(q.quantity, Quantity::Score(_)))
            .count();
        if matches!(quantity, Quantity::Score(_)) && scores >= MAX_SCORE_LABELS {
            return None;
        }
        self.quantities
            .push(BaselineQuantity::warming(quantity.clone(), bins));
        self.quantities.last_mut()
    }

    /// Heap bytes of the baseline vectors, for the memory estimate.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let mut total = self.quantities.capacity() * size_of::<BaselineQuantity>();
        for q in &self.quantities {
            if let Quantity::Score(label) = &q.quantity {
                total += label.capacity();
            }
            total += match &q.state {
                BaselineState::Warming {
                    layout,
                    counts,
                    categories,
                    sample,
                    ..
                } => {
                    layout.as_ref().map_or(0, Layout::heap_bytes)
                        + counts.capacity() * size_of::<u64>()
                        + categories
                            .iter()
                            .map(|c| c.capacity() + size_of::<String>())
                            .sum::<usize>()
                        + sample.capacity() * size_of::<f64>()
                }
                BaselineState::Frozen { layout, shares, .. } => {
                    layout.heap_bytes() + shares.capacity() * size_of::<f64>()
                }
            };
        }
        total
    }

    pub fn get(&self, quantity: &Quantity) -> Option<&BaselineQuantity> {
        self.quantities.iter().find(|q| q.quantity == *quantity)
    }

    /// Puts the manifest's baselines in place (replacing windows); returns
    /// the quantities whose bins changed, whose running counts must reset.
    pub fn apply_manifest(&mut self, manifest: &ManifestBaseline) -> Vec<Quantity> {
        let mut changed = Vec::new();
        for spec in &manifest.quantities {
            let new = BaselineQuantity::from_manifest(spec);
            match self
                .quantities
                .iter_mut()
                .find(|q| q.quantity == spec.quantity)
            {
                Some(existing) if existing.frozen() == new.frozen() => {}
                Some(existing) => {
                    *existing = new;
                    changed.push(spec.quantity.clone());
                }
                None => self.quantities.push(new),
            }
        }
        changed
    }
}
