//! Engine configuration: a closed, tagged enum, one variant per engine kind,
//! each able to `build()` an engine and its start-up health check for one
//! verified model (the shape of vector's `SinkConfig::build`).
//!
//! ```toml
//! [engine]
//! kind = "onnx"          # "onnx" (tract, embedded) | "onnxruntime" | "triton"
//! max_concurrent = 2
//! max_queued = 16
//! ```

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::InferenceEngine;
use super::error::EngineError;
use super::limit::EngineLimits;
use super::onnx::TractEngine;
use super::onnxruntime::OnnxruntimeEngine;
use super::tensor::zeros_like;
pub use super::triton::TritonConfig;
use crate::models::VerifiedModel;

/// Which engine runs a model, and its per-model limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EngineConfig {
    /// ONNX on tract, pure Rust, in process (CPU).
    Onnx(OnnxConfig),
    /// ONNX Runtime through its C API (CPU, CUDA, TensorRT providers).
    Onnxruntime(OnnxruntimeConfig),
    /// A remote Triton (KServe v2) server.
    Triton(TritonConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxConfig {
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: NonZeroUsize,
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
}

/// ONNX Runtime, loaded at run time from its shared library (the PyPI
/// `onnxruntime` wheel's `libonnxruntime.so.*`, or `onnxruntime-gpu` for the
/// CUDA and TensorRT providers). See `docs/engines.md`.
///
/// ```toml
/// [engine]
/// kind = "onnxruntime"
/// library_path = "/opt/onnxruntime/libonnxruntime.so.1.31.1"  # else ORT_DYLIB_PATH
/// providers = ["tensorrt", "cuda", "cpu"]  # tried in this order
/// require_provider = "tensorrt"            # fail at load instead of falling back
/// intra_threads = 1
/// device_id = 0
///
/// [engine.tensorrt]
/// fp16 = true
/// engine_cache_path = "/var/cache/gateway/trt"
/// timing_cache_path = "/var/cache/gateway/trt"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxruntimeConfig {
    /// Sessions per model, each running one request at a time.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: NonZeroUsize,
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    /// The ONNX Runtime shared library; when absent, `ORT_DYLIB_PATH`. One
    /// process loads one library: every model must name the same file.
    #[serde(default)]
    pub library_path: Option<PathBuf>,
    /// Execution providers in order of preference; the first that registers
    /// serves the session, and nodes it cannot run fall back to CPU.
    #[serde(default = "default_providers")]
    pub providers: Vec<Provider>,
    /// A provider that must register, or the model does not load: a GPU
    /// misconfiguration becomes an error instead of a slow CPU surprise.
    #[serde(default)]
    pub require_provider: Option<Provider>,
    /// Threads one request may use inside an operator. `max_concurrent ×
    /// intra_threads` is the number of cores a model may keep busy.
    #[serde(default = "default_intra_threads")]
    pub intra_threads: NonZeroUsize,
    /// The GPU the CUDA and TensorRT providers use.
    #[serde(default)]
    pub device_id: u32,
    #[serde(default)]
    pub tensorrt: TensorrtOptions,
}

/// An ONNX Runtime execution provider, by its configuration name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Tensorrt,
    Cuda,
    Cpu,
}

impl Provider {
    /// The configuration name, also a bounded log and metric value.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Tensorrt => "tensorrt",
            Provider::Cuda => "cuda",
            Provider::Cpu => "cpu",
        }
    }
}

/// Options of the TensorRT execution provider (ignored by the others).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TensorrtOptions {
    /// Build FP16 engines where the GPU supports them (faster, and outputs
    /// move by more than FP32 rounding: re-validate the operating points).
    #[serde(default)]
    pub fp16: bool,
    /// Where built engines are kept, so a restart does not rebuild them
    /// (minutes per model). No cache when absent.
    #[serde(default)]
    pub engine_cache_path: Option<PathBuf>,
    /// Where layer timing results are kept, which speeds up engine builds.
    #[serde(default)]
    pub timing_cache_path: Option<PathBuf>,
}

impl OnnxruntimeConfig {
    /// Every problem at once, as sentences: an empty or repeated provider
    /// list, or a required provider that is not in the list.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.providers.is_empty() {
            problems.push("`providers` is empty".to_string());
        }
        for (i, provider) in self.providers.iter().enumerate() {
            if self.providers[..i].contains(provider) {
                problems.push(format!("provider `{}` is listed twice", provider.as_str()));
            }
        }
        if let Some(required) = self.require_provider
            && !self.providers.contains(&required)
        {
            problems.push(format!(
                "`require_provider` is `{}`, which is not in `providers`",
                required.as_str()
            ));
        }
        problems
    }
}

impl Default for OnnxruntimeConfig {
    fn default() -> Self {
        OnnxruntimeConfig {
            max_concurrent: default_max_concurrent(),
            max_queued: default_max_queued(),
            library_path: None,
            providers: default_providers(),
            require_provider: None,
            intra_threads: default_intra_threads(),
            device_id: 0,
            tensorrt: TensorrtOptions::default(),
        }
    }
}

fn default_providers() -> Vec<Provider> {
    vec![Provider::Tensorrt, Provider::Cuda, Provider::Cpu]
}

/// One thread per request, like tract: the reference box has two cores,
/// and `max_concurrent` already spreads requests over them.
fn default_intra_threads() -> NonZeroUsize {
    NonZeroUsize::MIN
}

pub(super) fn default_max_concurrent() -> NonZeroUsize {
    EngineLimits::default().max_concurrent
}

pub(super) fn default_max_queued() -> usize {
    EngineLimits::default().max_queued
}

impl Default for OnnxConfig {
    fn default() -> Self {
        OnnxConfig {
            max_concurrent: default_max_concurrent(),
            max_queued: default_max_queued(),
        }
    }
}

/// Durations as humantime text ("250ms", "2s"), like the rest of the
/// configuration.
pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration: {e}")))
    }
}

/// A health check run once before an engine takes traffic: the engine's own
/// [`InferenceEngine::health`] (a readiness call for a remote engine), then
/// one inference on zeros, which proves the model runs with the manifest's
/// shapes and warms caches.
pub type HealthCheck = BoxFuture<'static, Result<(), EngineError>>;

/// One inference on zeros shaped like every input, the last step of every
/// engine's health check at load: the model runs end to end (and caches
/// are warm) before it takes a series.
pub(crate) async fn infer_on_zeros(engine: &dyn InferenceEngine) -> Result<(), EngineError> {
    let zeros = engine
        .inputs()
        .iter()
        .map(|spec| (spec.name.clone(), zeros_like(spec)))
        .collect();
    engine.infer(zeros).await.map(|_| ())
}

/// What [`EngineConfig::build`] returns.
pub struct BuiltEngine {
    pub engine: Arc<dyn InferenceEngine>,
    pub healthcheck: HealthCheck,
}

impl EngineConfig {
    /// The tract engine with default limits.
    pub fn onnx() -> Self {
        EngineConfig::Onnx(OnnxConfig::default())
    }

    /// ONNX Runtime with default limits and providers, its library from
    /// `ORT_DYLIB_PATH`.
    pub fn onnxruntime() -> Self {
        EngineConfig::Onnxruntime(OnnxruntimeConfig::default())
    }

    /// The `kind` value, a bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineConfig::Onnx(_) => "onnx",
            EngineConfig::Onnxruntime(_) => "onnxruntime",
            EngineConfig::Triton(_) => "triton",
        }
    }

    pub fn limits(&self) -> EngineLimits {
        let (max_concurrent, max_queued) = match self {
            EngineConfig::Onnx(c) => (c.max_concurrent, c.max_queued),
            EngineConfig::Onnxruntime(c) => (c.max_concurrent, c.max_queued),
            EngineConfig::Triton(c) => (c.max_concurrent, c.max_queued),
        };
        EngineLimits {
            max_concurrent,
            max_queued,
        }
    }

    /// The same engine with other limits.
    pub fn with_limits(mut self, limits: EngineLimits) -> Self {
        let (max_concurrent, max_queued) = match &mut self {
            EngineConfig::Onnx(c) => (&mut c.max_concurrent, &mut c.max_queued),
            EngineConfig::Onnxruntime(c) => (&mut c.max_concurrent, &mut c.max_queued),
            EngineConfig::Triton(c) => (&mut c.max_concurrent, &mut c.max_queued),
        };
        *max_concurrent = limits.max_concurrent;
        *max_queued = limits.max_queued;
        self
    }

    /// Builds the engine for `model`: parses, checks against the manifest
    /// and optimises. CPU-heavy for large models: call it from a blocking
    /// context ([`super::LoadedModel::load`] does).
    pub fn build(&self, model: &VerifiedModel) -> Result<BuiltEngine, EngineError> {
        let engine: Arc<dyn InferenceEngine> = match self {
            EngineConfig::Onnx(_) => Arc::new(TractEngine::load(model, self.limits())?),
            EngineConfig::Onnxruntime(c) => Arc::new(OnnxruntimeEngine::load(model, c)?),
            EngineConfig::Triton(c) => return c.build(model.manifest()),
        };
        let probe = Arc::clone(&engine);
        Ok(BuiltEngine {
            engine,
            healthcheck: Box::pin(async move {
                probe.health().await?;
                infer_on_zeros(probe.as_ref()).await
            }),
        })
    }
}
