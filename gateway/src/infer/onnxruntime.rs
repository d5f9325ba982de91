//! The ONNX Runtime engine: the same models as the tract engine, through
//! ONNX Runtime's C API (ort, library loaded at run time), on CPU or, with
//! the `onnxruntime-gpu` library, on CUDA and TensorRT.
//!
//! Loading builds `max_concurrent` sessions from the verified bytes (graph
//! optimisation level 3, the configured execution providers), after
//! checking the model's declared inputs and outputs against the manifest.
//! Each request checks its tensors, takes a session from the pool and runs
//! it on tokio's blocking pool behind the model's [`ConcurrencyLimit`], and
//! returns exactly the manifest's outputs.
//!
//! - `runtime`: the shared library and the process's one environment.
//! - `providers`: TensorRT → CUDA → CPU registration, `require_provider`.
//! - `signature`: model inputs and outputs against the manifest.
//! - `pool`: one session per concurrent request.

mod pool;
mod providers;
mod runtime;
mod signature;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use futures::future::BoxFuture;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::InferenceEngine;
use super::config::{OnnxruntimeConfig, Provider};
use super::error::EngineError;
use super::limit::{ConcurrencyLimit, EngineLimits, EngineStats};
use super::tensor::{
    Tensor, Tensors, check_batched_inputs, check_inputs, check_outputs, with_batch,
};
use crate::models::{TensorSpec, VerifiedModel};
use pool::SessionPool;

pub use runtime::LIBRARY_ENV;

/// A model loaded into ONNX Runtime sessions, ready to run.
pub struct OnnxruntimeEngine {
    sessions: Arc<SessionPool>,
    provider: Provider,
    inputs: Vec<TensorSpec>,
    outputs: Arc<[TensorSpec]>,
    /// The first axis of input and outputs is a batch (see the manifest).
    dynamic_batch: bool,
    limit: ConcurrencyLimit,
}

impl std::fmt::Debug for OnnxruntimeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxruntimeEngine")
            .field("provider", &self.provider)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("limits", &self.limit.limits())
            .finish_non_exhaustive()
    }
}

fn load_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::Load(e.to_string().replace('\n', " "))
}

impl OnnxruntimeEngine {
    /// Loads the runtime if needed, then builds and checks the sessions
    /// (CPU-heavy for large models, minutes for a first TensorRT build).
    pub fn load(
        model: &VerifiedModel,
        config: &OnnxruntimeConfig,
    ) -> Result<OnnxruntimeEngine, EngineError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(EngineError::Load(format!(
                "invalid onnxruntime configuration: {}",
                problems.join("; ")
            )));
        }
        let runtime = runtime::runtime(config.library_path.as_deref())?;
        let manifest = model.manifest();
        let model_label = manifest.id().to_string();

        let mut builder = Session::builder(&runtime.environment)
            .map_err(load_error)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(load_error)?
            .with_intra_threads(config.intra_threads.get())
            .map_err(load_error)?
            .with_inter_threads(1)
            .map_err(load_error)?;
        let provider = providers::register(&mut builder, config, &model_label)?;

        let pool_size = config.max_concurrent.get();
        let mut sessions = Vec::with_capacity(pool_size);
        for _ in 0..pool_size {
            let session = builder
                .commit_from_memory(model.bytes())
                .map_err(load_error)?;
            if sessions.is_empty() {
                signature::check_inputs(session.inputs(), &manifest.input)?;
                signature::check_outputs(session.outputs(), &manifest.output_tensors())?;
            }
            sessions.push(session);
        }
        tracing::info!(
            model = %model_label,
            provider = provider.as_str(),
            sessions = pool_size,
            intra_threads = config.intra_threads.get(),
            "onnxruntime sessions ready"
        );
        Ok(OnnxruntimeEngine {
            sessions: SessionPool::new(sessions),
            provider,
            inputs: vec![manifest.input.clone()],
            outputs: manifest.output_tensors().into(),
            dynamic_batch: manifest.dynamic_batch,
            limit: ConcurrencyLimit::new(EngineLimits {
                max_concurrent: config.max_concurrent,
                max_queued: config.max_queued,
            }),
        })
    }

    /// The execution provider serving the sessions: the first configured
    /// one that registered (nodes it cannot run still fall back to CPU).
    pub fn provider(&self) -> Provider {
        self.provider
    }

    fn run_session(
        session: &mut Session,
        input_name: &str,
        input: &Tensor,
        outputs: &[TensorSpec],
        batch: Option<usize>,
    ) -> Result<Tensors, EngineError> {
        let execution = |e: ort::Error| EngineError::Execution(e.to_string());
        // ONNX Runtime reads a contiguous buffer; checked inputs are usually
        // standard layout already, in which case this borrows.
        let contiguous = input.as_standard_layout();
        let value = TensorRef::from_array_view(&contiguous).map_err(execution)?;
        let results = session
            .run(ort::inputs![input_name => value])
            .map_err(execution)?;
        let mut named = Tensors::new();
        for spec in outputs {
            let value = results.get(&spec.name).ok_or_else(|| {
                EngineError::ManifestMismatch(format!("no value for output `{}`", spec.name))
            })?;
            let array = value
                .try_extract_array::<f32>()
                .map_err(|e| EngineError::Execution(format!("output `{}`: {e}", spec.name)))?;
            named.insert(spec.name.clone(), array.to_owned());
        }
        match batch {
            Some(batch) => {
                let batched: Vec<_> = outputs.iter().map(|s| with_batch(s, batch)).collect();
                check_outputs(&batched, &named)?;
            }
            None => check_outputs(outputs, &named)?,
        }
        Ok(named)
    }
}

impl InferenceEngine for OnnxruntimeEngine {
    fn kind(&self) -> &'static str {
        "onnxruntime"
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn infer(&self, mut inputs: Tensors) -> BoxFuture<'_, Result<Tensors, EngineError>> {
        Box::pin(async move {
            let batch = if self.dynamic_batch {
                Some(check_batched_inputs(&self.inputs, &inputs)?)
            } else {
                check_inputs(&self.inputs, &inputs)?;
                None
            };
            let input_name = self.inputs[0].name.clone();
            let input = inputs
                .remove(&input_name)
                .ok_or_else(|| EngineError::Internal("checked input vanished".into()))?;
            let sessions = Arc::clone(&self.sessions);
            let outputs = Arc::clone(&self.outputs);
            self.limit
                .run_blocking(move || {
                    let mut pooled = sessions.checkout()?;
                    Self::run_session(pooled.session()?, &input_name, &input, &outputs, batch)
                })
                .await
        })
    }

    /// Nothing outside the process can break an embedded engine; a GPU
    /// that fails shows up as execution errors.
    fn health(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async { Ok(()) })
    }

    fn stats(&self) -> EngineStats {
        self.limit.stats()
    }
}
