//! The optional `[baseline]` of a manifest: what the model's inputs and
//! outputs looked like on its validation data, as bins and expected shares,
//! for the drift monitor (`telemetry::drift`) to compare production with.
//! Optional, so manifests without one stay valid and fall back to a frozen
//! window of the first observations.
//!
//! ```toml
//! [[baseline.quantities]]
//! quantity = "score:hyperdensity"      # or kvp, slice_thickness, pixel_spacing,
//! edges = [0.25, 0.5, 0.75]            #    input_mean, input_std
//! proportions = [0.7, 0.15, 0.1, 0.05] # one per bin: edges + 1, summing to 1
//!
//! [[baseline.quantities]]
//! quantity = "convolution_kernel"
//! categories = ["fc13", "fc26"]         # lower-case [a-z0-9-]
//! proportions = [0.6, 0.35, 0.05]       # one per category, then `other`
//! ```

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::manifest::OutputSpec;
use crate::telemetry::drift::{
    Layout, MAX_CATEGORIES, ManifestBaseline, Quantity, QuantityBaseline, category_slug,
};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBaseline {
    /// Where the shares come from (documentation; never in labels or logs).
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub quantities: Vec<RawQuantityBaseline>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuantityBaseline {
    pub quantity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    pub proportions: Vec<f64>,
}

/// How far the proportions' sum may be from 1 (rounded figures in a file).
const SUM_TOLERANCE: f64 = 1e-3;

/// Validates `raw`, pushing every problem; `None` when any was found.
pub(super) fn validate_baseline(
    raw: &RawBaseline,
    outputs: &[OutputSpec],
    problems: &mut Vec<String>,
) -> Option<ManifestBaseline> {
    let before = problems.len();
    let labels: HashSet<&str> = outputs
        .iter()
        .flat_map(|o| o.labels.iter().map(|l| l.name.as_str()))
        .collect();
    let mut seen = HashSet::new();
    let mut quantities = Vec::new();
    for (i, q) in raw.quantities.iter().enumerate() {
        let key = format!("baseline.quantities[{i}]");
        let quantity = match q.quantity.parse::<Quantity>() {
            Ok(quantity) => quantity,
            Err(e) => {
                problems.push(format!("{key}.quantity: {e}"));
                continue;
            }
        };
        if let Quantity::Score(label) = &quantity
            && !labels.contains(label.as_str())
        {
            problems.push(format!(
                "{key}.quantity: `{label}` is not one of the outputs' labels"
            ));
        }
        if !seen.insert(quantity.clone()) {
            problems.push(format!("{key}.quantity: `{quantity}` appears twice"));
        }
        let layout = match (&q.edges, &q.categories, quantity.is_categorical()) {
            (None, Some(categories), true) => categories_layout(&key, categories, problems),
            (Some(edges), None, false) => edges_layout(&key, edges, problems),
            (_, _, true) => {
                problems.push(format!(
                    "{key}: `{quantity}` takes `categories` (and no `edges`)"
                ));
                continue;
            }
            (_, _, false) => {
                problems.push(format!(
                    "{key}: `{quantity}` takes `edges` (and no `categories`)"
                ));
                continue;
            }
        };
        let bins = layout.bins();
        if q.proportions.len() != bins {
            problems.push(format!(
                "{key}.proportions: {} values for {bins} bins (one per bin, the open ends and `other` included)",
                q.proportions.len()
            ));
        }
        if q.proportions.iter().any(|p| !p.is_finite() || *p < 0.0) {
            problems.push(format!(
                "{key}.proportions: must be finite and not negative"
            ));
        }
        let sum: f64 = q.proportions.iter().sum();
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            problems.push(format!("{key}.proportions: sum to {sum}, not 1"));
        }
        quantities.push(QuantityBaseline {
            quantity,
            layout,
            // Renormalised: the tolerance above allows rounded figures.
            shares: q.proportions.iter().map(|p| p / sum).collect(),
        });
    }
    (problems.len() == before).then_some(ManifestBaseline { quantities })
}

fn edges_layout(key: &str, edges: &[f64], problems: &mut Vec<String>) -> Layout {
    if edges.is_empty() {
        problems.push(format!("{key}.edges: list at least one edge"));
    }
    if edges.iter().any(|e| !e.is_finite()) || edges.windows(2).any(|w| w[0] >= w[1]) {
        problems.push(format!(
            "{key}.edges: must be finite and strictly increasing"
        ));
    }
    Layout::Edges(edges.to_vec())
}

fn categories_layout(key: &str, categories: &[String], problems: &mut Vec<String>) -> Layout {
    if categories.is_empty() || categories.len() > MAX_CATEGORIES {
        problems.push(format!(
            "{key}.categories: list 1 to {MAX_CATEGORIES} categories"
        ));
    }
    for c in categories {
        if category_slug(c).as_deref() != Some(c.as_str()) {
            problems.push(format!(
                "{key}.categories: `{c}` must be 1-16 characters of a-z, 0-9 and single '-'"
            ));
        }
    }
    let unique: HashSet<&String> = categories.iter().collect();
    if unique.len() != categories.len() {
        problems.push(format!("{key}.categories: a category appears twice"));
    }
    Layout::Categories(categories.to_vec())
}

#[cfg(test)]
mod tests {
    use super::super::Manifest;
    use crate::telemetry::drift::{Layout, Quantity};

    const MANIFEST: &str = r#"
name = "tiny"
version = "1.0.0"
task = "classification"
demo = true
clinical_use = "DEMO — NOT FOR CLINICAL USE"
intended_use = "tests"
limitations = ["none"]
model_file = "model.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[input]
name = "image"
shape = [1, 1, 8, 8]
dtype = "float32"
per_image = "2d"

[preprocessing]
modality_lut = true
resize = [8, 8]
channels = 1
layout = "nchw"

[preprocessing.window]
source = "none"

[preprocessing.normalisation]
kind = "none"

[[outputs]]
name = "score"
shape = [1, 1]
labels = [{ name = "bleed", threshold = 0.5 }]
"#;

    #[test]
    fn manifests_without_a_baseline_stay_valid() {
        assert_eq!(Manifest::from_toml(MANIFEST).unwrap().baseline, None);
    }

    #[test]
    fn a_baseline_becomes_bins_and_shares() {
        let text = format!(
            "{MANIFEST}
[baseline]
description = \"validation set\"
[[baseline.quantities]]
quantity = \"score:bleed\"
edges = [0.25, 0.5, 0.75]
proportions = [0.7, 0.15, 0.1, 0.05]
[[baseline.quantities]]
quantity = \"convolution_kernel\"
categories = [\"fc13\", \"fc26\"]
proportions = [0.6, 0.35, 0.0501]
"
        );
        let baseline = Manifest::from_toml(&text).unwrap().baseline.unwrap();
        assert_eq!(baseline.quantities.len(), 2);
        assert_eq!(
            baseline.quantities[0].quantity,
            Quantity::Score("bleed".into())
        );
        assert_eq!(
            baseline.quantities[0].layout,
            Layout::Edges(vec![0.25, 0.5, 0.75])
        );
        let sum: f64 = baseline.quantities[1].shares.iter().sum();
        assert!((sum - 1.0).abs() < 1e-12, "renormalised: {sum}");
    }

    #[test]
    fn every_baseline_problem_is_reported() {
        let text = format!(
            "{MANIFEST}
[[baseline.quantities]]
quantity = \"score:nothing\"
edges = [0.5, 0.25]
proportions = [0.5, 0.6]
[[baseline.quantities]]
quantity = \"convolution_kernel\"
edges = [1.0]
proportions = [1.0]
[[baseline.quantities]]
quantity = \"kvp\"
categories = [\"High Voltage\"]
proportions = [1.0]
[[baseline.quantities]]
quantity = \"weather\"
proportions = [1.0]
"
        );
        let problems = Manifest::from_toml(&text).unwrap_err().0;
        let all = problems.join("\n");
        for expected in [
            "`nothing` is not one of the outputs' labels",
            "edges: must be finite and strictly increasing",
            "2 values for 3 bins",
            "sum to 1.1",
            "takes `categories`",
            "takes `edges`",
            "`weather` is not one of",
        ] {
            assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
        }
    }
}
