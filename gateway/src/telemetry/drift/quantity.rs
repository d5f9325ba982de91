//! What the drift monitor watches: model scores per label, acquisition
//! parameters from the header, and the input tensor's mean and standard
//! deviation after preprocessing; with the default bins for each.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::histogram::Layout;

/// A monitored quantity. Its text form (`score:<label>`, `kvp`, …) is the
/// `quantity` label of `gateway_drift_psi` and the name in manifests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Quantity {
    /// The model's score for one output label.
    Score(String),
    /// KVP (0018,0060), kV.
    Kvp,
    /// SliceThickness (0018,0050), mm.
    SliceThickness,
    /// PixelSpacing (0028,0030) row spacing, or ImagerPixelSpacing, mm.
    PixelSpacing,
    /// ConvolutionKernel (0018,1210), first value, as a category.
    ConvolutionKernel,
    /// Mean of the input tensor after preprocessing.
    InputMean,
    /// Standard deviation of the input tensor after preprocessing.
    InputStd,
}

/// Categories a categorical quantity keeps (first seen while the baseline
/// forms); later ones fall into the `other` bin.
pub const MAX_CATEGORIES: usize = 8;

/// Longest category kept (after normalisation).
const MAX_CATEGORY_LEN: usize = 16;

/// Score labels monitored per model version; more are ignored.
pub const MAX_SCORE_LABELS: usize = 16;

/// KVP edges (kV): the common tube voltages land in separate bins.
const KVP_EDGES: &[f64] = &[60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0, 130.0, 140.0];
/// Slice thickness edges (mm), between the usual reconstructions
/// (0.5/0.625/0.75, 1, 1.25, 1.5, 2, 2.5, 3, 5, thicker).
const SLICE_THICKNESS_EDGES: &[f64] = &[0.8, 1.1, 1.4, 1.8, 2.2, 2.8, 4.0, 6.0];
/// Pixel spacing edges (mm): radiography below 0.2, CT and MR above.
const PIXEL_SPACING_EDGES: &[f64] = &[0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.5];

/// How a quantity's bins are chosen when no manifest gives them.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultBins {
    /// Known up front.
    Fixed(Layout),
    /// Quantile edges of the baseline window's values (the input statistics,
    /// whose range depends on each model's preprocessing).
    Learned,
    /// Categories first seen while the baseline window fills.
    Categorical,
}

impl Quantity {
    /// The default bins; scores use `bins` equal bins over `[0, 1]`.
    pub fn default_bins(&self, bins: usize) -> DefaultBins {
        match self {
            Quantity::Score(_) => DefaultBins::Fixed(Layout::equal_width(0.0, 1.0, bins)),
            Quantity::Kvp => DefaultBins::Fixed(Layout::Edges(KVP_EDGES.to_vec())),
            Quantity::SliceThickness => {
                DefaultBins::Fixed(Layout::Edges(SLICE_THICKNESS_EDGES.to_vec()))
            }
            Quantity::PixelSpacing => {
                DefaultBins::Fixed(Layout::Edges(PIXEL_SPACING_EDGES.to_vec()))
            }
            Quantity::ConvolutionKernel => DefaultBins::Categorical,
            Quantity::InputMean | Quantity::InputStd => DefaultBins::Learned,
        }
    }

    pub fn is_categorical(&self) -> bool {
        matches!(self, Quantity::ConvolutionKernel)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantity::Score(label) => write!(f, "score:{label}"),
            Quantity::Kvp => f.write_str("kvp"),
            Quantity::SliceThickness => f.write_str("slice_thickness"),
            Quantity::PixelSpacing => f.write_str("pixel_spacing"),
            Quantity::ConvolutionKernel => f.write_str("convolution_kernel"),
            Quantity::InputMean => f.write_str("input_mean"),
            Quantity::InputStd => f.write_str("input_std"),
        }
    }
}

impl FromStr for Quantity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "kvp" => Quantity::Kvp,
            "slice_thickness" => Quantity::SliceThickness,
            "pixel_spacing" => Quantity::PixelSpacing,
            "convolution_kernel" => Quantity::ConvolutionKernel,
            "input_mean" => Quantity::InputMean,
            "input_std" => Quantity::InputStd,
            other => match other.strip_prefix("score:") {
                Some(label) if !label.is_empty() => Quantity::Score(label.to_string()),
                _ => {
                    return Err(format!(
                        "`{other}` is not one of score:<label>, kvp, slice_thickness, \
                         pixel_spacing, convolution_kernel, input_mean, input_std"
                    ));
                }
            },
        })
    }
}

impl From<Quantity> for String {
    fn from(q: Quantity) -> String {
        q.to_string()
    }
}

impl TryFrom<String> for Quantity {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// A category value as the monitor keeps it: lower-case `[a-z0-9-]`, at
/// most 16 characters; `None` when nothing is left.
pub fn category_slug(text: &str) -> Option<String> {
    let slug = crate::telemetry::scanner::slug(text, MAX_CATEGORY_LEN);
    (!slug.is_empty()).then_some(slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_round_trip_through_text() {
        for q in [
            Quantity::Score("hyperdensity".into()),
            Quantity::Kvp,
            Quantity::SliceThickness,
            Quantity::PixelSpacing,
            Quantity::ConvolutionKernel,
            Quantity::InputMean,
            Quantity::InputStd,
        ] {
            assert_eq!(q.to_string().parse::<Quantity>().unwrap(), q);
        }
        assert!("score:".parse::<Quantity>().is_err());
        assert!("kv".parse::<Quantity>().is_err());
    }

    #[test]
    fn categories_are_tame() {
        assert_eq!(category_slug(" B30f ").as_deref(), Some("b30f"));
        assert_eq!(category_slug("FC13\\H").as_deref(), Some("fc13-h"));
        assert_eq!(category_slug("!!!"), None);
        assert_eq!(category_slug(&"K".repeat(40)).unwrap().len(), 16);
    }
}
