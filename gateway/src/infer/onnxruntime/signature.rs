//! The model file's declared inputs and outputs against its manifest,
//! checked once when the session is built, so a mismatch is a
//! configuration error at load instead of a failure on the first image.
//! The wording follows the tract engine's, so operators read one language.

use ort::value::{Outlet, TensorElementType, ValueType};

use super::super::error::EngineError;
use crate::models::TensorSpec;

/// Exactly the manifest's one input, float32, with every concrete
/// dimension equal to the manifest's (a symbolic batch is fine).
pub fn check_inputs(declared: &[Outlet], spec: &TensorSpec) -> Result<(), EngineError> {
    let names: Vec<&str> = declared.iter().map(Outlet::name).collect();
    if names != [spec.name.as_str()] {
        return Err(EngineError::ManifestMismatch(format!(
            "the model's inputs are {names:?}, the manifest declares [{:?}]",
            spec.name
        )));
    }
    check_tensor(&declared[0], spec).map_err(|what| {
        EngineError::ManifestMismatch(format!(
            "input `{}`: the model declares {what}, the manifest says {:?} float32",
            spec.name, spec.shape
        ))
    })
}

/// Every manifest output exists among the model's outputs, float32, with
/// compatible dimensions (outputs the manifest does not name are computed
/// and dropped, as with tract).
pub fn check_outputs(declared: &[Outlet], specs: &[TensorSpec]) -> Result<(), EngineError> {
    for spec in specs {
        let Some(outlet) = declared.iter().find(|o| o.name() == spec.name) else {
            let names: Vec<&str> = declared.iter().map(Outlet::name).collect();
            return Err(EngineError::ManifestMismatch(format!(
                "the model has no output `{}` (its outputs are {names:?})",
                spec.name
            )));
        };
        check_tensor(outlet, spec).map_err(|what| {
            EngineError::ManifestMismatch(format!(
                "output `{}`: the model declares {what}, the manifest says {:?} float32",
                spec.name, spec.shape
            ))
        })?;
    }
    Ok(())
}

/// `Err` describes what the model declares that the manifest contradicts.
fn check_tensor(outlet: &Outlet, spec: &TensorSpec) -> Result<(), String> {
    let ValueType::Tensor { ty, shape, .. } = outlet.dtype() else {
        return Err(format!("a {}", outlet.dtype()));
    };
    if *ty != TensorElementType::Float32 {
        return Err(format!("{ty}"));
    }
    if shape.len() != spec.shape.len() {
        return Err(format!("{} dimensions", shape.len()));
    }
    for (axis, (&size, &expected)) in shape.iter().zip(&spec.shape).enumerate() {
        // ONNX Runtime reports a symbolic or unknown dimension as -1.
        if size >= 0 && usize::try_from(size).ok() != Some(expected) {
            return Err(format!("size {size} on axis {axis}"));
        }
    }
    Ok(())
}
