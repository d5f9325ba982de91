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
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::InferenceEngine;
use super::error::EngineError;
use super::limit::EngineLimits;
use super::onnx::TractEngine;
use super::tensor::zeros_like;
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

/// Placeholder until the ONNX Runtime engine lands; its options (execution
/// provider, threads, TensorRT caches) join these.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxruntimeConfig {
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: NonZeroUsize,
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
}

/// Placeholder until the Triton engine lands; its options (model name on
/// the server, timeouts, TLS) join these.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TritonConfig {
    /// gRPC endpoint, e.g. `http://triton:8001`.
    pub url: String,
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: NonZeroUsize,
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
}

fn default_max_concurrent() -> NonZeroUsize {
    EngineLimits::default().max_concurrent
}

fn default_max_queued() -> usize {
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

/// A health check run once before an engine takes traffic: the engine's own
/// [`InferenceEngine::health`] (a readiness call for a remote engine), then
/// one inference on zeros, which proves the model runs with the manifest's
/// shapes and warms caches.
pub type HealthCheck = BoxFuture<'static, Result<(), EngineError>>;

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
            EngineConfig::Onnxruntime(_) => {
                return Err(EngineError::Unsupported {
                    kind: "onnxruntime",
                });
            }
            EngineConfig::Triton(_) => return Err(EngineError::Unsupported { kind: "triton" }),
        };
        let probe = Arc::clone(&engine);
        Ok(BuiltEngine {
            engine,
            healthcheck: Box::pin(async move {
                probe.health().await?;
                let zeros = probe
                    .inputs()
                    .iter()
                    .map(|spec| (spec.name.clone(), zeros_like(spec)))
                    .collect();
                probe.infer(zeros).await.map(|_| ())
            }),
        })
    }
}
