//! Cache values: a successful classification and who made it, as versioned
//! JSON.
//!
//! Every value carries `schema`. A reader that does not know the schema, or
//! finds a value that does not belong to its key, treats it as a miss: the
//! model runs again and the entry is overwritten, which is always safe.

use serde::{Deserialize, Serialize};

use super::key::CacheKey;
use crate::infer::{Classification, LabelScore};
use crate::models::ModelId;

/// The schema this build writes and the only one it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// A successful classification as kept in the cache. There is no error
/// variant on purpose: failures are never cached, so a transient engine
/// fault cannot turn into a lasting wrong answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedResult {
    pub classification: Classification,
    pub model: ModelId,
    pub model_sha256: String,
    /// The engine kind that computed it (`onnx`, `onnxruntime`, …), so a
    /// result served from the cache still names its maker.
    pub engine: String,
    /// Unix milliseconds when it was computed.
    pub created_at_ms: i64,
}

impl CachedResult {
    /// A result for `key`, computed now by `engine`.
    pub fn new(key: &CacheKey, classification: Classification, engine: &str) -> CachedResult {
        CachedResult {
            classification,
            model: key.model().clone(),
            model_sha256: key.model_sha256().to_string(),
            engine: engine.to_string(),
            created_at_ms: crate::time::unix_millis(),
        }
    }
}

/// Why a stored value was not used.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("unknown cache value schema {0}")]
    UnknownSchema(u32),
    #[error("cache value is not valid: {0}")]
    Corrupt(String),
    #[error("cache value belongs to another model")]
    Mismatch,
}

impl ValueError {
    /// A bounded label for the rejection metric.
    pub fn as_label(&self) -> &'static str {
        match self {
            ValueError::UnknownSchema(_) => "schema",
            ValueError::Corrupt(_) => "corrupt",
            ValueError::Mismatch => "mismatch",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct WireModel {
    name: String,
    version: String,
    sha256: String,
}

/// Scores travel as `f64`: every `f32` is exactly representable, and an
/// f64 read back even one ulp off still rounds to the same f32, so a hit
/// returns the very bits the engine produced.
#[derive(Serialize, Deserialize)]
struct WireLabel {
    output: String,
    label: String,
    score: f64,
    threshold: f64,
    positive: bool,
}

#[derive(Serialize, Deserialize)]
struct WireV1 {
    schema: u32,
    model: WireModel,
    engine: String,
    created_at_ms: i64,
    labels: Vec<WireLabel>,
}

#[derive(Deserialize)]
struct SchemaOnly {
    schema: u32,
}

/// The JSON bytes of `value`.
pub fn encode(value: &CachedResult) -> Vec<u8> {
    let wire = WireV1 {
        schema: SCHEMA_VERSION,
        model: WireModel {
            name: value.model.name.clone(),
            version: value.model.version.to_string(),
            sha256: value.model_sha256.clone(),
        },
        engine: value.engine.clone(),
        created_at_ms: value.created_at_ms,
        labels: value
            .classification
            .labels
            .iter()
            .map(|l| WireLabel {
                output: l.output.clone(),
                label: l.label.clone(),
                score: f64::from(l.score),
                threshold: f64::from(l.threshold),
                positive: l.positive,
            })
            .collect(),
    };
    // Strings, integers and finite floats always serialise.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// Reads a stored value, checking it belongs to `key` and is consistent.
pub fn decode(key: &CacheKey, bytes: &[u8]) -> Result<CachedResult, ValueError> {
    let probe: SchemaOnly =
        serde_json::from_slice(bytes).map_err(|e| ValueError::Corrupt(e.to_string()))?;
    if probe.schema != SCHEMA_VERSION {
        return Err(ValueError::UnknownSchema(probe.schema));
    }
    let wire: WireV1 =
        serde_json::from_slice(bytes).map_err(|e| ValueError::Corrupt(e.to_string()))?;
    let version = wire
        .model
        .version
        .parse()
        .map_err(|_| ValueError::Corrupt("model version".into()))?;
    let model = ModelId {
        name: wire.model.name,
        version,
    };
    if &model != key.model() || wire.model.sha256 != key.model_sha256() {
        return Err(ValueError::Mismatch);
    }
    if wire.labels.is_empty() {
        return Err(ValueError::Corrupt("no labels".into()));
    }
    let mut labels = Vec::with_capacity(wire.labels.len());
    for l in wire.labels {
        let (score, threshold) = (l.score as f32, l.threshold as f32);
        // serde_json (without its `float_roundtrip` feature) may read an f64
        // back one ulp off, so do not demand f64 equality: the nearest f32
        // is still the engine's own value (measured: 4 of 64 values through
        // Redis were an ulp off and were wrongly refused as corrupt).
        if !score.is_finite() || l.positive != (score >= threshold) {
            return Err(ValueError::Corrupt(format!("label {}", l.label)));
        }
        labels.push(LabelScore {
            output: l.output,
            label: l.label,
            score,
            threshold,
            positive: l.positive,
        });
    }
    Ok(CachedResult {
        classification: Classification { labels },
        model,
        model_sha256: wire.model.sha256,
        engine: wire.engine,
        created_at_ms: wire.created_at_ms,
    })
}
