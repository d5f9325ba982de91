//! `manifest.toml`: what a model is, what it takes, what it returns.
//!
//! Read in two steps like the gateway configuration: [`RawManifest`] is the
//! file as written (serde, `deny_unknown_fields`, so a misspelt key is an
//! error rather than a silently ignored setting), and
//! [`RawManifest::validate`] turns it into a typed [`Manifest`], reporting
//! every problem at once.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Every problem found in one manifest, one per line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid manifest ({} problem{}):\n  - {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  - "))]
pub struct ManifestError(pub Vec<String>);

/// A validated model manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub version: Version,
    pub task: Task,
    /// A demo model: `clinical_use` then says it is not for clinical use.
    pub demo: bool,
    /// The plain statement of clinical status shown with every result.
    pub clinical_use: String,
    pub description: String,
    pub intended_use: String,
    pub limitations: Vec<String>,
    /// File name of the model inside its version folder (no path parts).
    pub model_file: String,
    /// Lower-case hex SHA-256 of the model file.
    pub sha256: String,
    pub input: TensorSpec,
    pub per_image: PerImage,
    pub preprocessing: Preprocessing,
    pub outputs: Vec<OutputSpec>,
    /// Expected distributions for drift monitoring (`[baseline]`, optional).
    pub baseline: Option<crate::telemetry::drift::ManifestBaseline>,
    /// The model takes a batch on the first axis of its input and every
    /// output (`-1` there in the file). `input.shape` and the outputs'
    /// shapes still say 1 there: the shape of one request, which is what
    /// the pixel pipeline makes; dynamic batching stacks requests.
    pub dynamic_batch: bool,
    /// Served by a Triton (KServe v2) server instead of from the local
    /// model file; see [`TritonModel`].
    pub triton: Option<TritonModel>,
}

/// Where a Triton-served model version runs: its name and pinned version in
/// the server's model repository. `model_file` and `sha256` then name the
/// artifact deployed there (e.g. `model.plan`); every request names this
/// version and an answer from any other version is refused, so the hash in
/// a result names what ran. See docs/engines.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TritonModel {
    /// The model's name on the server.
    pub model: String,
    /// The version on the server (Triton versions are positive integers).
    pub version: String,
}

/// `name@version`, the identity used in logs, metric labels and results.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelId {
    pub name: String,
    pub version: Version,
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// A model version, `MAJOR.MINOR.PATCH` (numbers only, compared numerically).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('.').collect();
        let number = |part: &str| -> Option<u64> {
            let plain = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            // No leading zeros: "1.02.0" and "1.2.0" must not both exist.
            let canonical = part == "0" || !part.starts_with('0');
            if plain && canonical {
                part.parse().ok()
            } else {
                None
            }
        };
        match parts.as_slice() {
            [major, minor, patch] => match (number(major), number(minor), number(patch)) {
                (Some(major), Some(minor), Some(patch)) => Ok(Version {
                    major,
                    minor,
                    patch,
                }),
                _ => Err(format!("`{text}` is not a version like \"1.0.0\"")),
            },
            _ => Err(format!("`{text}` is not a version like \"1.0.0\"")),
        }
    }
}

/// What the model does. Segmentation (with DICOM SEG results) will be a
/// second variant; everything that depends on the task matches on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// One score per label; a label is positive at or above its threshold.
    Classification,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classification => "classification",
        }
    }
}

/// Element type of a tensor. Only `float32` so far; the engines' tensor type
/// is `f32`, so a manifest cannot promise anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    Float32,
}

/// What one input tensor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum PerImage {
    /// One 2D image (a slice, a radiograph, one frame): `[N, C, H, W]`.
    #[serde(rename = "2d")]
    TwoD,
    /// A whole series as a volume: `[N, C, D, H, W]`.
    #[serde(rename = "volume")]
    Volume,
}

/// Where the channel axis sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Channels before the spatial axes: `[N, C, H, W]` / `[N, C, D, H, W]`.
    Nchw,
    /// Channels last: `[N, H, W, C]` / `[N, D, H, W, C]`.
    Nhwc,
}

/// A named tensor with a fixed shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DataType,
}

impl TensorSpec {
    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }
}

/// How pixels become the input tensor, in this order: modality LUT, VOI
/// window, resize, normalisation, channel replication, layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessing {
    /// Apply Rescale Slope/Intercept (CT: stored values → HU).
    pub modality_lut: bool,
    pub window: Window,
    /// Target `[rows, columns]`.
    pub resize: [usize; 2],
    pub normalisation: Normalisation,
    /// The grey image is repeated on this many channels.
    pub channels: usize,
    pub layout: Layout,
}

/// VOI windowing. A window maps `[center - width/2, center + width/2]`
/// linearly onto `0..1` and clamps outside it (PS3.3 C.11.2.1.2, output
/// range 0..1); without a window values pass through unchanged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    None,
    Fixed {
        center: f32,
        width: f32,
    },
    /// Window Center/Width from the image (the first pair when several).
    FromFile,
}

/// Applied after windowing and resizing.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalisation {
    None,
    /// `x * scale + offset`.
    Scale {
        scale: f32,
        offset: f32,
    },
    /// `(x - mean[c]) / std[c]` per channel.
    MeanStd {
        mean: Vec<f32>,
        std: Vec<f32>,
    },
}

/// One output tensor and, for classification, what each element means.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    pub tensor: TensorSpec,
    /// One label per element, in tensor order.
    pub labels: Vec<Label>,
}

/// A class and its operating point.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub name: String,
    /// Scores at or above this are positive.
    pub threshold: f32,
}

impl Manifest {
    /// Parses and validates a manifest's text.
    pub fn from_toml(text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| ManifestError(vec![format!("{e}")]))?;
        raw.validate()
    }

    pub fn id(&self) -> ModelId {
        ModelId {
            name: self.name.clone(),
            version: self.version,
        }
    }

    /// Output specs as plain tensor specs, for the engines.
    pub fn output_tensors(&self) -> Vec<TensorSpec> {
        self.outputs.iter().map(|o| o.tensor.clone()).collect()
    }
}

// ---------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub name: String,
    pub version: String,
    pub task: Task,
    pub demo: bool,
    pub clinical_use: String,
    #[serde(default)]
    pub description: String,
    pub intended_use: String,
    pub limitations: Vec<String>,
    pub model_file: String,
    pub sha256: String,
    pub input: RawInput,
    pub preprocessing: RawPreprocessing,
    pub outputs: Vec<RawOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<super::baseline::RawBaseline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triton: Option<RawTriton>,
}

/// `[triton]`: this version is served by a Triton (KServe v2) server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTriton {
    pub model: String,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub dtype: DataType,
    pub per_image: PerImage,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreprocessing {
    pub modality_lut: bool,
    pub window: RawWindow,
    pub resize: Vec<i64>,
    pub normalisation: RawNormalisation,
    pub channels: i64,
    pub layout: Layout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowSource {
    None,
    Fixed,
    FromFile,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub source: WindowSource,
    pub center: Option<f64>,
    pub width: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NormalisationKind {
    None,
    Scale,
    MeanStd,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNormalisation {
    pub kind: NormalisationKind,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub mean: Option<Vec<f64>>,
    pub std: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    pub name: String,
    pub shape: Vec<i64>,
    #[serde(default = "default_dtype")]
    pub dtype: DataType,
    #[serde(default)]
    pub labels: Vec<RawLabel>,
}

fn default_dtype() -> DataType {
    DataType::Float32
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLabel {
    pub name: String,
    pub threshold: f64,
}
