//! Tensors ↔ KServe v2 messages. Tensors travel as raw contents: the
//! elements in row-major order as little-endian `f32`, one byte string per
//! tensor, which is what the specification calls `raw_input_contents` and
//! what Triton reads without a copy per element.

use super::proto::{ModelInferRequest, ModelInferResponse, model_infer_request};
use crate::infer::error::EngineError;
use crate::infer::tensor::{Tensor, Tensors};
use crate::models::{TensorSpec, TritonModel};

/// The protocol's name for `f32`.
pub const FP32: &str = "FP32";

/// A request for `target` with `inputs` (already checked against `specs`,
/// in that order) asking for exactly the manifest's `outputs`.
pub fn encode_request(
    target: &TritonModel,
    id: String,
    specs: &[TensorSpec],
    inputs: &Tensors,
    outputs: &[TensorSpec],
) -> Result<ModelInferRequest, EngineError> {
    let mut request = ModelInferRequest {
        model_name: target.model.clone(),
        model_version: target.version.clone(),
        id,
        ..ModelInferRequest::default()
    };
    for spec in specs {
        let tensor = inputs.get(&spec.name).ok_or_else(|| {
            EngineError::Internal(format!("checked input `{}` vanished", spec.name))
        })?;
        request.inputs.push(model_infer_request::InferInputTensor {
            name: spec.name.clone(),
            datatype: FP32.into(),
            shape: tensor.shape().iter().map(|&d| d as i64).collect(),
        });
        request.raw_input_contents.push(raw_bytes(tensor));
    }
    request.outputs = outputs
        .iter()
        .map(|spec| model_infer_request::InferRequestedOutputTensor {
            name: spec.name.clone(),
        })
        .collect();
    Ok(request)
}

/// Little-endian `f32` bytes in logical (row-major) order, whatever the
/// array's memory layout.
pub fn raw_bytes(tensor: &Tensor) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(tensor.len() * 4);
    for value in tensor.iter() {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// The manifest's outputs from a response, each checked for name, type,
/// shape (`expected`: the manifest's shapes, batch applied) and byte count.
/// Everything in the response is peer data: nothing here panics on it.
pub fn decode_response(
    target: &TritonModel,
    response: ModelInferResponse,
    expected: &[TensorSpec],
) -> Result<Tensors, EngineError> {
    let answered_by = |field: &str, value: &str, pinned: &str| {
        EngineError::Execution(format!(
            "the server answered from {field} `{value}`, the manifest pins `{pinned}`"
        ))
    };
    if !response.model_name.is_empty() && response.model_name != target.model {
        return Err(answered_by("model", &response.model_name, &target.model));
    }
    // KServe leaves the version empty; Triton fills it in, and then it must
    // be the pinned one, or the recorded hash would not name what ran.
    if !response.model_version.is_empty() && response.model_version != target.version {
        return Err(answered_by(
            "version",
            &response.model_version,
            &target.version,
        ));
    }
    let ModelInferResponse {
        outputs,
        raw_output_contents,
        ..
    } = response;
    let mut named = Tensors::new();
    for spec in expected {
        let Some(index) = outputs.iter().position(|o| o.name == spec.name) else {
            return Err(EngineError::ManifestMismatch(format!(
                "the server returned no output `{}`",
                spec.name
            )));
        };
        let output = &outputs[index];
        if output.datatype != FP32 {
            return Err(EngineError::ManifestMismatch(format!(
                "output `{}` is {}, the manifest says float32",
                spec.name, output.datatype
            )));
        }
        let shape: Option<Vec<usize>> = output
            .shape
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect();
        if shape.as_deref() != Some(spec.shape.as_slice()) {
            return Err(EngineError::ManifestMismatch(format!(
                "output `{}` has shape {:?}, the manifest says {:?}",
                spec.name, output.shape, spec.shape
            )));
        }
        let values = if raw_output_contents.is_empty() {
            output
                .contents
                .as_ref()
                .map(|c| c.fp32_contents.clone())
                .unwrap_or_default()
        } else {
            let raw = raw_output_contents.get(index).ok_or_else(|| {
                EngineError::Execution(format!("no raw contents for output `{}`", spec.name))
            })?;
            if raw.len() % 4 != 0 {
                return Err(EngineError::Execution(format!(
                    "output `{}` has {} bytes, not a whole number of float32",
                    spec.name,
                    raw.len()
                )));
            }
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        if values.len() != spec.element_count() {
            return Err(EngineError::Execution(format!(
                "output `{}` has {} values for shape {:?}",
                spec.name,
                values.len(),
                spec.shape
            )));
        }
        let tensor = Tensor::from_shape_vec(ndarray::IxDyn(&spec.shape), values)
            .map_err(|e| EngineError::Execution(format!("output `{}`: {e}", spec.name)))?;
        named.insert(spec.name.clone(), tensor);
    }
    Ok(named)
}
