//! The server's model metadata against the manifest, checked at load so a
//! wrong deployment (another model under that name, other tensor names or
//! shapes) is a configuration error before any image, in the same words
//! as the embedded engines use.

use super::codec::FP32;
use super::proto::ModelMetadataResponse;
use super::proto::model_metadata_response::TensorMetadata;
use crate::infer::error::EngineError;
use crate::models::{TensorSpec, TritonModel};

/// Checks versions, inputs and outputs. `dynamic_batch`: the manifest
/// stacks requests on axis 0, so the server must take any size there (-1).
pub fn check_metadata(
    metadata: &ModelMetadataResponse,
    target: &TritonModel,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
    dynamic_batch: bool,
) -> Result<(), EngineError> {
    // Triton lists the versions it serves; KServe lists none.
    if !metadata.versions.is_empty() && !metadata.versions.contains(&target.version) {
        return Err(EngineError::ManifestMismatch(format!(
            "the server serves `{}` in versions {:?}, not the pinned version {}",
            target.model, metadata.versions, target.version
        )));
    }
    let names: Vec<&str> = metadata.inputs.iter().map(|t| t.name.as_str()).collect();
    let declared: Vec<&str> = inputs.iter().map(|t| t.name.as_str()).collect();
    if names != declared {
        return Err(EngineError::ManifestMismatch(format!(
            "the served model's inputs are {names:?}, the manifest declares {declared:?}"
        )));
    }
    for (served, spec) in metadata.inputs.iter().zip(inputs) {
        check_tensor(served, spec, dynamic_batch).map_err(|what| {
            EngineError::ManifestMismatch(format!(
                "input `{}`: the server declares {what}, the manifest says {:?} float32",
                spec.name, spec.shape
            ))
        })?;
    }
    for spec in outputs {
        let Some(served) = metadata.outputs.iter().find(|t| t.name == spec.name) else {
            let names: Vec<&str> = metadata.outputs.iter().map(|t| t.name.as_str()).collect();
            return Err(EngineError::ManifestMismatch(format!(
                "the served model has no output `{}` (its outputs are {names:?})",
                spec.name
            )));
        };
        check_tensor(served, spec, dynamic_batch).map_err(|what| {
            EngineError::ManifestMismatch(format!(
                "output `{}`: the server declares {what}, the manifest says {:?} float32",
                spec.name, spec.shape
            ))
        })?;
    }
    Ok(())
}

/// `Err` says what the server declares that the manifest contradicts.
fn check_tensor(
    served: &TensorMetadata,
    spec: &TensorSpec,
    dynamic_batch: bool,
) -> Result<(), String> {
    if served.datatype != FP32 {
        return Err(served.datatype.clone());
    }
    if served.shape.len() != spec.shape.len() {
        return Err(format!("{} dimensions", served.shape.len()));
    }
    for (axis, (&size, &expected)) in served.shape.iter().zip(&spec.shape).enumerate() {
        if dynamic_batch && axis == 0 {
            if size != -1 {
                return Err(format!(
                    "a fixed size {size} on axis 0, where the manifest has a dynamic batch"
                ));
            }
            continue;
        }
        // -1: a variable size, which takes the manifest's.
        if size != -1 && usize::try_from(size).ok() != Some(expected) {
            return Err(format!("size {size} on axis {axis}"));
        }
    }
    Ok(())
}
