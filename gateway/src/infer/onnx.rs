//! The embedded ONNX engine on tract (pure Rust, CPU).
//!
//! Loading parses the verified bytes, pins the input to the manifest's
//! shape, checks input and output names and shapes against the manifest,
//! then optimises once into a runnable plan. Each request runs the plan on
//! tokio's blocking pool behind the model's [`ConcurrencyLimit`]; tract uses
//! one thread per run, so `max_concurrent` is the number of cores a model
//! may keep busy. For a manifest with a dynamic batch axis, each batch size
//! the batcher sends gets its own fully shaped plan, built on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tract_onnx::prelude::{
    Datum, DatumExt, Framework, InferenceFact, InferenceModelExt, IntoRunnable, IntoTValue,
    IntoTensor, TValue, TVec, TypedRunnableModel, tvec,
};
use tract_onnx::tract_hir::infer::Factoid;

use super::InferenceEngine;
use super::error::EngineError;
use super::limit::{ConcurrencyLimit, EngineLimits, EngineStats};
use super::tensor::{Tensors, check_batched_inputs, check_inputs, check_outputs, with_batch};
use crate::models::{Manifest, TensorSpec, VerifiedModel};

/// A model loaded into tract, optimised and ready to run.
pub struct TractEngine {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<TensorSpec>,
    outputs: Arc<[TensorSpec]>,
    /// For each manifest output, its position among the plan's outputs
    /// (outputs the manifest does not name are computed and dropped).
    output_positions: Arc<[usize]>,
    /// For a manifest with a dynamic batch axis: plans for larger batches.
    batch_plans: Option<Arc<BatchPlans>>,
    limit: ConcurrencyLimit,
}

impl std::fmt::Debug for TractEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractEngine")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("limits", &self.limit.limits())
            .finish_non_exhaustive()
    }
}

fn load_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::Load(format!("{e:#}").replace('\n', " "))
}

impl TractEngine {
    /// Parses, checks and optimises `model` (CPU-heavy for large models).
    pub fn load(model: &VerifiedModel, limits: EngineLimits) -> Result<TractEngine, EngineError> {
        let manifest = model.manifest();
        let (plan, output_positions) = build_plan(model.bytes(), manifest, 1)?;
        Ok(TractEngine {
            plan,
            inputs: vec![manifest.input.clone()],
            outputs: manifest.output_tensors().into(),
            output_positions: output_positions.into(),
            batch_plans: manifest.dynamic_batch.then(|| {
                Arc::new(BatchPlans {
                    bytes: model.bytes().into(),
                    manifest: Arc::clone(manifest),
                    plans: Mutex::default(),
                })
            }),
            limit: ConcurrencyLimit::new(limits),
        })
    }

    fn run_plan(
        plan: &Arc<TypedRunnableModel>,
        input: TValue,
        outputs: &[TensorSpec],
        positions: &[usize],
        batch: Option<usize>,
    ) -> Result<Tensors, EngineError> {
        let mut values: TVec<Option<TValue>> = plan
            .run(tvec!(input))
            .map_err(|e| EngineError::Execution(format!("{e:#}")))?
            .into_iter()
            .map(Some)
            .collect();
        let mut named = Tensors::new();
        for (spec, &position) in outputs.iter().zip(positions) {
            let value = values
                .get_mut(position)
                .and_then(Option::take)
                .ok_or_else(|| {
                    EngineError::ManifestMismatch(format!("no value for output `{}`", spec.name))
                })?;
            let array = value
                .into_tensor()
                .into_plain_array::<f32>()
                .map_err(|e| EngineError::Execution(format!("output `{}`: {e:#}", spec.name)))?;
            named.insert(spec.name.clone(), array);
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

/// Plans for batch sizes above 1, built on first use and kept: tract runs a
/// plan with every shape known much faster than one with a symbolic batch
/// axis (measured: about twice as fast for the demo ResNet at batch 1), so
/// each batch size gets its own. The first batch of a size pays for its
/// planning (parse and optimise, like a load).
struct BatchPlans {
    bytes: Arc<[u8]>,
    manifest: Arc<Manifest>,
    plans: Mutex<HashMap<usize, Arc<TypedRunnableModel>>>,
}

impl BatchPlans {
    fn plan(&self, batch: usize) -> Result<Arc<TypedRunnableModel>, EngineError> {
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| EngineError::Internal("tract batch plans poisoned".into()))?;
        if let Some(plan) = plans.get(&batch) {
            return Ok(Arc::clone(plan));
        }
        let (plan, _) = build_plan(&self.bytes, &self.manifest, batch)?;
        plans.insert(batch, Arc::clone(&plan));
        Ok(plan)
    }
}

/// Parses `bytes`, checks them against the manifest, pins the input to the
/// manifest's shape with `batch` on the batch axis, and optimises. Returns
/// the plan and, for each manifest output, its position among the plan's
/// outputs (outputs the manifest does not name are computed and dropped).
fn build_plan(
    bytes: &[u8],
    manifest: &Manifest,
    batch: usize,
) -> Result<(Arc<TypedRunnableModel>, Vec<usize>), EngineError> {
    let mut reader = std::io::Cursor::new(bytes);
    let mut graph = tract_onnx::onnx()
        .model_for_read(&mut reader)
        .map_err(load_error)?;

    let input_names: Vec<&str> = graph
        .input_outlets()
        .map_err(load_error)?
        .iter()
        .map(|outlet| graph.node(outlet.node).name.as_str())
        .collect();
    if input_names != [manifest.input.name.as_str()] {
        return Err(EngineError::ManifestMismatch(format!(
            "the model's inputs are {input_names:?}, the manifest declares [{:?}]",
            manifest.input.name
        )));
    }
    check_declared_input(graph.input_fact(0).map_err(load_error)?, &manifest.input)?;
    let input = with_batch(&manifest.input, batch);
    let input_fact: InferenceFact = f32::fact(input.shape.as_slice()).into();
    graph.set_input_fact(0, input_fact).map_err(load_error)?;

    let model_outputs: Vec<String> = graph
        .output_outlets()
        .map_err(load_error)?
        .iter()
        .map(|&outlet| {
            graph
                .outlet_label(outlet)
                .unwrap_or(graph.node(outlet.node).name.as_str())
                .to_string()
        })
        .collect();
    let outputs: Vec<TensorSpec> = manifest
        .output_tensors()
        .iter()
        .map(|spec| with_batch(spec, batch))
        .collect();
    let output_positions = outputs
        .iter()
        .map(|spec| {
            model_outputs
                .iter()
                .position(|name| *name == spec.name)
                .ok_or_else(|| {
                    EngineError::ManifestMismatch(format!(
                        "the model has no output `{}` (its outputs are {model_outputs:?})",
                        spec.name
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Shapes must be fully known once the input is pinned: tract then
    // plans every buffer up front, and the manifest is checked here, at
    // load, instead of on the first image.
    let typed = graph.into_optimized().map_err(load_error)?;
    for (spec, &position) in outputs.iter().zip(&output_positions) {
        let fact = typed.output_fact(position).map_err(load_error)?;
        if fact.datum_type != f32::datum_type() {
            return Err(EngineError::ManifestMismatch(format!(
                "output `{}` is {:?}, the manifest says float32",
                spec.name, fact.datum_type
            )));
        }
        if fact.shape.as_concrete() != Some(spec.shape.as_slice()) {
            return Err(EngineError::ManifestMismatch(format!(
                "output `{}` has shape {:?}, the manifest says {:?}",
                spec.name, fact.shape, spec.shape
            )));
        }
    }
    let plan = typed.into_runnable().map_err(load_error)?;
    Ok((plan, output_positions))
}

/// What the ONNX file itself declares about its input must agree with the
/// manifest wherever it is concrete (a symbolic batch dimension is fine).
fn check_declared_input(declared: &InferenceFact, spec: &TensorSpec) -> Result<(), EngineError> {
    let mismatch = |what: String| {
        EngineError::ManifestMismatch(format!(
            "input `{}`: the model declares {what}, the manifest says {:?} float32",
            spec.name, spec.shape
        ))
    };
    if let Some(datum_type) = declared.datum_type.concretize()
        && datum_type != f32::datum_type()
    {
        return Err(mismatch(format!("{datum_type:?}")));
    }
    let dims: Vec<_> = declared.shape.dims().collect();
    if !declared.shape.is_open() && dims.len() != spec.shape.len() {
        return Err(mismatch(format!("{} dimensions", dims.len())));
    }
    for (axis, (dim, &expected)) in dims.iter().zip(&spec.shape).enumerate() {
        if let Some(size) = dim.concretize().and_then(|d| d.as_i64())
            && usize::try_from(size).ok() != Some(expected)
        {
            return Err(mismatch(format!("size {size} on axis {axis}")));
        }
    }
    Ok(())
}

impl InferenceEngine for TractEngine {
    fn kind(&self) -> &'static str {
        "onnx"
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn infer(&self, mut inputs: Tensors) -> BoxFuture<'_, Result<Tensors, EngineError>> {
        Box::pin(async move {
            let batch = if self.batch_plans.is_some() {
                Some(check_batched_inputs(&self.inputs, &inputs)?)
            } else {
                check_inputs(&self.inputs, &inputs)?;
                None
            };
            let input = inputs
                .remove(&self.inputs[0].name)
                .ok_or_else(|| EngineError::Internal("checked input vanished".into()))?;
            let plan = Arc::clone(&self.plan);
            let batch_plans = self.batch_plans.clone();
            let outputs = Arc::clone(&self.outputs);
            let positions = Arc::clone(&self.output_positions);
            self.limit
                .run_blocking(move || {
                    // Output positions do not depend on the batch size.
                    let plan = match (batch, batch_plans) {
                        (Some(size), Some(plans)) if size > 1 => plans.plan(size)?,
                        _ => plan,
                    };
                    let input = tract_onnx::prelude::Tensor::from(input).into_tvalue();
                    TractEngine::run_plan(&plan, input, &outputs, &positions, batch)
                })
                .await
        })
    }

    /// Nothing outside the process can break an embedded engine.
    fn health(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async { Ok(()) })
    }

    fn stats(&self) -> EngineStats {
        self.limit.stats()
    }
}
