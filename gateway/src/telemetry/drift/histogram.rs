//! Fixed-bin distributions and the statistics that compare them: the
//! arithmetic under the drift monitor, free of keys, metrics and locks.
//!
//! PSI (population stability index) between a baseline distribution `e`
//! and the current one `a` over the same bins:
//!
//! ```text
//! PSI = Σ_i (a_i − e_i) · ln(a_i / e_i),   a_i, e_i = max(share of bin i, ε),  ε = 1e-4
//! ```
//!
//! ε keeps an empty bin from making the index infinite: a bin the baseline
//! never saw that now holds 10 % of observations adds about
//! 0.1 · ln(0.1 / 1e-4) ≈ 0.69. Usual reading: below 0.1 stable, 0.1–0.2
//! worth a look, above 0.2 a real shift. KS here is the largest gap between
//! the two binned cumulative distributions (numeric quantities only).

use serde::{Deserialize, Serialize};

/// Floor of a bin's share in PSI, so that empty bins stay finite.
pub const PSI_EPSILON: f64 = 1e-4;

/// How values map to bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Strictly increasing inner edges; `edges.len() + 1` bins, the first
    /// and last open-ended. Bin of `v` = number of edges `<= v`.
    Edges(Vec<f64>),
    /// Known categories, then one `other` bin: `categories.len() + 1` bins.
    Categories(Vec<String>),
}

/// One value of a monitored quantity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Number(f64),
    /// Already normalised (see `quantity::category_slug`).
    Category(&'a str),
}

impl Layout {
    pub fn bins(&self) -> usize {
        match self {
            Layout::Edges(edges) => edges.len() + 1,
            Layout::Categories(categories) => categories.len() + 1,
        }
    }

    /// The bin of `value`; `None` when the value does not fit the layout
    /// (a category for a numeric quantity, NaN).
    pub fn bin_of(&self, value: Value<'_>) -> Option<usize> {
        match (self, value) {
            (Layout::Edges(edges), Value::Number(v)) if v.is_finite() => {
                Some(edges.partition_point(|e| *e <= v))
            }
            (Layout::Categories(categories), Value::Category(c)) => Some(
                categories
                    .iter()
                    .position(|known| known == c)
                    .unwrap_or(categories.len()),
            ),
            _ => None,
        }
    }

    /// `count` equal-width bins over `[low, high]` (its inner edges).
    pub fn equal_width(low: f64, high: f64, count: usize) -> Layout {
        let count = count.max(1);
        let step = (high - low) / count as f64;
        Layout::Edges((1..count).map(|i| low + step * i as f64).collect())
    }

    /// Edges at the `count`-quantiles of `sample`, ties merged, so that the
    /// baseline spreads evenly over the bins (the usual PSI practice).
    pub fn quantiles(sample: &[f64], count: usize) -> Layout {
        let mut sorted: Vec<f64> = sample.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = Vec::with_capacity(count);
        if !sorted.is_empty() {
            for k in 1..count.max(1) {
                let at = (k * sorted.len()) / count;
                let edge = sorted[at.min(sorted.len() - 1)];
                if edges.last().is_none_or(|last| edge > *last) {
                    edges.push(edge);
                }
            }
        }
        Layout::Edges(edges)
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            Layout::Edges(edges) => edges.capacity() * std::mem::size_of::<f64>(),
            Layout::Categories(categories) => categories
                .iter()
                .map(|c| c.capacity() + std::mem::size_of::<String>())
                .sum(),
        }
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, Layout::Edges(_))
    }
}

/// Counts turned into shares (all zero when empty).
pub fn shares(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return vec![0.0; counts.len()];
    }
    counts.iter().map(|c| c / total).collect()
}

/// PSI of `actual` against `expected`, both shares over the same bins.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(e, a)| {
            let e = e.max(PSI_EPSILON);
            let a = a.max(PSI_EPSILON);
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Largest gap between the cumulative shares (binned two-sample KS statistic).
pub fn ks(expected: &[f64], actual: &[f64]) -> f64 {
    let (mut ce, mut ca, mut gap) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (e, a) in expected.iter().zip(actual) {
        ce += e;
        ca += a;
        gap = gap.max((ce - ca).abs());
    }
    gap
}

/// Exponentially weighted counts: the "current" distribution of a key. Each
/// observation multiplies the old counts by `decay` before adding one, so
/// the distribution follows roughly the last `1 / (1 − decay)` observations
/// in constant memory and time per observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecayingCounts {
    pub counts: Vec<f32>,
    /// Sum of `counts`: the effective number of observations.
    pub weight: f32,
}

impl DecayingCounts {
    pub fn new(bins: usize) -> Self {
        Self {
            counts: vec![0.0; bins],
            weight: 0.0,
        }
    }

    pub fn add(&mut self, bin: usize, decay: f32) {
        for c in &mut self.counts {
            *c *= decay;
        }
        if let Some(c) = self.counts.get_mut(bin) {
            *c += 1.0;
        }
        self.weight = self.weight * decay + 1.0;
    }

    pub fn shares(&self) -> Vec<f64> {
        let counts: Vec<f64> = self.counts.iter().map(|c| f64::from(*c)).collect();
        shares(&counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_half_open_with_open_ends() {
        let layout = Layout::Edges(vec![1.0, 2.0]);
        assert_eq!(layout.bins(), 3);
        assert_eq!(layout.bin_of(Value::Number(-5.0)), Some(0));
        assert_eq!(layout.bin_of(Value::Number(1.0)), Some(1));
        assert_eq!(layout.bin_of(Value::Number(1.5)), Some(1));
        assert_eq!(layout.bin_of(Value::Number(2.0)), Some(2));
        assert_eq!(layout.bin_of(Value::Number(f64::NAN)), None);
        assert_eq!(layout.bin_of(Value::Category("b30f")), None);
        let kernels = Layout::Categories(vec!["b30f".into(), "fc13".into()]);
        assert_eq!(kernels.bin_of(Value::Category("fc13")), Some(1));
        assert_eq!(kernels.bin_of(Value::Category("new")), Some(2));
    }

    #[test]
    fn psi_is_zero_for_equal_shares_and_grows_with_the_shift() {
        let e = [0.25, 0.25, 0.25, 0.25];
        assert!(psi(&e, &e).abs() < 1e-12);
        let small = psi(&e, &[0.3, 0.25, 0.25, 0.2]);
        let large = psi(&e, &[0.7, 0.1, 0.1, 0.1]);
        assert!(small > 0.0 && small < 0.1, "{small}");
        assert!(large > 0.2, "{large}");
        // Empty bins stay finite thanks to ε.
        let disjoint = psi(&[1.0, 0.0], &[0.0, 1.0]);
        assert!(disjoint.is_finite() && disjoint > 10.0, "{disjoint}");
    }

    #[test]
    fn ks_is_the_largest_cumulative_gap() {
        assert_eq!(ks(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
        assert!((ks(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn quantile_edges_spread_the_sample_and_merge_ties() {
        let sample: Vec<f64> = (0..1000).map(f64::from).collect();
        let Layout::Edges(edges) = Layout::quantiles(&sample, 10) else {
            unreachable!()
        };
        assert_eq!(edges.len(), 9);
        assert_eq!(edges[0], 100.0);
        let constant = Layout::quantiles(&[120.0; 50], 10);
        assert_eq!(constant, Layout::Edges(vec![120.0]));
        assert_eq!(Layout::quantiles(&[], 10), Layout::Edges(vec![]));
    }

    #[test]
    fn decaying_counts_forget_old_observations() {
        let mut counts = DecayingCounts::new(2);
        for _ in 0..1000 {
            counts.add(0, 0.99);
        }
        for _ in 0..300 {
            counts.add(1, 0.99);
        }
        let shares = counts.shares();
        assert!(shares[1] > 0.9, "{shares:?}");
        assert!((counts.weight - 100.0).abs() < 1.0, "{}", counts.weight);
    }
}
