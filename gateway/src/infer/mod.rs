//! Inference, between `route` (which picks a model) and `results` (which
//! writes what it found): tensors in, named tensors out. Nothing here knows
//! DICOM, DIMSE or HTTP; turning pixels into the input tensor a manifest
//! describes is the pixel pipeline's job, upstream.
//!
//! - [`InferenceEngine`]: the one trait every engine implements.
//! - [`EngineConfig`]: a closed, tagged enum (`kind = "onnx" | "onnxruntime"
//!   | "triton"`) whose `build()` returns an engine and its health check.
//! - [`onnx::TractEngine`]: ONNX on tract, embedded, CPU.
//! - [`onnxruntime::OnnxruntimeEngine`]: ONNX Runtime through its C API,
//!   library loaded at run time; CPU, or CUDA/TensorRT with the GPU build.
//! - [`ConcurrencyLimit`]: per-model bounded execution (running + queued),
//!   refusing the excess with a retryable error instead of queueing it.
//! - [`LoadedModel`]: a verified manifest paired with its engine; maps
//!   scores onto labels and operating points.
//! - [`triton::TritonEngine`]: a model served by Triton (KServe v2 gRPC).
//! - [`BatchingEngine`]: dynamic batching in front of any engine, for
//!   models with a batch axis.
//! - [`EngineError`]: whether a failure is retryable and whose fault it is.
//! - [`CircuitBreaker`]: per engine and model version, stops calling an
//!   engine that keeps failing so a route falls back at once.

pub mod batch;
pub mod circuit;
mod config;
mod error;
mod limit;
mod loaded;
pub mod onnx;
pub mod onnxruntime;
mod tensor;
pub mod triton;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod test_images;

use futures::future::BoxFuture;

pub use batch::{BatchPolicy, BatchStats, BatchingConfig, BatchingEngine};
pub use circuit::{
    AttemptError, CircuitBreaker, CircuitConfig, CircuitKey, CircuitOpen, CircuitPolicy,
    CircuitRegistry, CircuitSnapshot, CircuitState, Failure, Permit, call_with_timeout,
};
pub use config::{
    BuiltEngine, EngineConfig, HealthCheck, OnnxConfig, OnnxruntimeConfig, Provider,
    TensorrtOptions, TritonConfig,
};
pub use error::{EngineError, Fault, InputError};
pub use limit::{ConcurrencyLimit, EngineLimits, EngineStats};
pub use loaded::{Classification, EngineSettings, LabelScore, LoadError, LoadedModel};
pub use tensor::{
    MAX_BATCH_SIZE, Tensor, Tensors, check_batched_inputs, check_inputs, check_outputs, with_batch,
    zeros_like,
};

use crate::models::TensorSpec;

/// An inference engine serving one model version.
///
/// Implementations check inputs against [`Self::inputs`] before running
/// (a typed [`InputError`]), bound their own concurrency with a
/// [`ConcurrencyLimit`], never block the async runtime, and return exactly
/// the outputs in [`Self::outputs`]. Every implementation passes the shared
/// conformance suite (`infer/conformance.rs`).
pub trait InferenceEngine: Send + Sync {
    /// The configuration `kind` (`"onnx"`, …), a bounded metric label.
    fn kind(&self) -> &'static str;

    /// The inputs the model takes, from its manifest.
    fn inputs(&self) -> &[TensorSpec];

    /// The outputs the model returns, from its manifest.
    fn outputs(&self) -> &[TensorSpec];

    /// Runs the model.
    fn infer(&self, inputs: Tensors) -> BoxFuture<'_, Result<Tensors, EngineError>>;

    /// Whether the engine can serve now (a remote engine asks its server).
    fn health(&self) -> BoxFuture<'_, Result<(), EngineError>>;

    /// Running, waiting and refused requests, for metrics.
    fn stats(&self) -> EngineStats;
}
