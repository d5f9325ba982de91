//! Named tensors, and the checks every engine makes against the manifest.

use std::collections::BTreeMap;

use super::error::{EngineError, InputError};
use crate::models::TensorSpec;

/// The engines' tensor type: `f32`, any rank.
pub type Tensor = ndarray::ArrayD<f32>;

/// Tensors by name: an engine's inputs or outputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tensors(BTreeMap<String, Tensor>);

impl Tensors {
    pub fn new() -> Self {
        Tensors(BTreeMap::new())
    }

    /// One tensor, the common case for single-input models.
    pub fn single(name: impl Into<String>, tensor: Tensor) -> Self {
        let mut tensors = Tensors::new();
        tensors.insert(name, tensor);
        tensors
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Option<Tensor> {
        self.0.insert(name.into(), tensor)
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.0.get(name)
    }

    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.0.remove(name)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.0.iter().map(|(name, tensor)| (name.as_str(), tensor))
    }
}

impl FromIterator<(String, Tensor)> for Tensors {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> Self {
        Tensors(iter.into_iter().collect())
    }
}

impl IntoIterator for Tensors {
    type Item = (String, Tensor);
    type IntoIter = std::collections::btree_map::IntoIter<String, Tensor>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Checks `inputs` against the model's input specs before anything runs:
/// exactly the named inputs, each of the declared shape, all values finite.
/// The element type is `f32` by construction and manifests only declare
/// `float32`, so there is no separate type check.
pub fn check_inputs(specs: &[TensorSpec], inputs: &Tensors) -> Result<(), EngineError> {
    for spec in specs {
        let Some(tensor) = inputs.get(&spec.name) else {
            return Err(InputError::Missing {
                name: spec.name.clone(),
            }
            .into());
        };
        if tensor.shape() != spec.shape.as_slice() {
            return Err(InputError::Shape {
                name: spec.name.clone(),
                expected: spec.shape.clone(),
                actual: tensor.shape().to_vec(),
            }
            .into());
        }
        if !tensor.iter().all(|v| v.is_finite()) {
            return Err(InputError::NonFinite {
                name: spec.name.clone(),
            }
            .into());
        }
    }
    if let Some(extra) = inputs
        .names()
        .find(|name| !specs.iter().any(|s| s.name == *name))
    {
        return Err(InputError::Unexpected {
            name: extra.to_string(),
        }
        .into());
    }
    Ok(())
}

/// The most requests one call may stack on a dynamic batch axis: bounds
/// the memory a single call can take, whoever builds the batch.
pub const MAX_BATCH_SIZE: usize = 256;

/// [`check_inputs`] for a model with a dynamic batch axis (the manifest's
/// `dynamic_batch`): each input holds 1 to [`MAX_BATCH_SIZE`] requests
/// stacked on axis 0, the same number in every input, and is otherwise
/// shaped like one request. Returns that number.
pub fn check_batched_inputs(specs: &[TensorSpec], inputs: &Tensors) -> Result<usize, EngineError> {
    let batch = specs
        .first()
        .and_then(|spec| inputs.get(&spec.name))
        .and_then(|tensor| tensor.shape().first().copied())
        .filter(|&n| (1..=MAX_BATCH_SIZE).contains(&n))
        .unwrap_or(1);
    let batched: Vec<TensorSpec> = specs.iter().map(|s| with_batch(s, batch)).collect();
    check_inputs(&batched, inputs)?;
    Ok(batch)
}

/// `spec` with `batch` on its first (batch) axis.
pub fn with_batch(spec: &TensorSpec, batch: usize) -> TensorSpec {
    let mut spec = spec.clone();
    if let Some(first) = spec.shape.first_mut() {
        *first = batch;
    }
    spec
}

/// Checks an engine's outputs against the manifest: a disagreement means the
/// model and its manifest do not belong together.
pub fn check_outputs(specs: &[TensorSpec], outputs: &Tensors) -> Result<(), EngineError> {
    for spec in specs {
        match outputs.get(&spec.name) {
            None => {
                return Err(EngineError::ManifestMismatch(format!(
                    "the model returned no output `{}`",
                    spec.name
                )));
            }
            Some(tensor) if tensor.shape() != spec.shape.as_slice() => {
                return Err(EngineError::ManifestMismatch(format!(
                    "output `{}` has shape {:?}, the manifest says {:?}",
                    spec.name,
                    tensor.shape(),
                    spec.shape
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A tensor of zeros shaped like `spec`, for warm-up and health checks.
pub fn zeros_like(spec: &TensorSpec) -> Tensor {
    Tensor::zeros(ndarray::IxDyn(&spec.shape))
}
