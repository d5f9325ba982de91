//! The `triton` engine's parts in isolation: message encoding, response
//! checks, metadata checks, status mapping and configuration. The engine
//! against a real server is in `server_tests.rs`.

use std::time::Duration;

use tonic::{Code, Status};

use super::codec::{FP32, decode_response, encode_request, raw_bytes};
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{InferTensorContents, ModelInferResponse, ModelMetadataResponse};
use super::*;
use crate::infer::{Fault, Tensor};
use crate::models::DataType;

fn spec(name: &str, shape: &[usize]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        shape: shape.to_vec(),
        dtype: DataType::Float32,
    }
}

fn target() -> TritonModel {
    TritonModel {
        model: "dx".into(),
        version: "3".into(),
    }
}

fn response(
    version: &str,
    name: &str,
    datatype: &str,
    shape: &[i64],
    raw: Vec<u8>,
) -> ModelInferResponse {
    ModelInferResponse {
        model_name: "dx".into(),
        model_version: version.into(),
        outputs: vec![InferOutputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            contents: None,
        }],
        raw_output_contents: vec![raw],
        ..ModelInferResponse::default()
    }
}

#[test]
fn requests_carry_raw_little_endian_contents_and_the_pinned_version() {
    let x = Tensor::from_shape_vec(ndarray::IxDyn(&[1, 2]), vec![1.0, -2.5]).unwrap();
    // A transposed view is encoded in logical order, not memory order.
    let t = Tensor::from_shape_vec(ndarray::IxDyn(&[2, 2]), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(
        raw_bytes(&t.t().to_owned()),
        raw_bytes(
            &Tensor::from_shape_vec(ndarray::IxDyn(&[2, 2]), vec![1.0, 3.0, 2.0, 4.0]).unwrap()
        )
    );
    let request = encode_request(
        &target(),
        "7".into(),
        &[spec("image", &[1, 2])],
        &Tensors::single("image", x),
        &[spec("probabilities", &[1, 3])],
    )
    .unwrap();
    assert_eq!(
        (request.model_name.as_str(), request.model_version.as_str()),
        ("dx", "3")
    );
    assert_eq!(request.inputs[0].datatype, FP32);
    assert_eq!(request.inputs[0].shape, [1, 2]);
    assert_eq!(
        request.raw_input_contents,
        [[0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0]]
    );
    assert_eq!(request.outputs[0].name, "probabilities");
}

#[test]
fn responses_are_checked_before_they_become_tensors() {
    let expected = [spec("p", &[1, 2])];
    let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    let ok = decode_response(
        &target(),
        response("3", "p", FP32, &[1, 2], bytes(&[0.25, 0.75])),
        &expected,
    )
    .unwrap();
    assert_eq!(ok.get("p").unwrap().as_slice().unwrap(), [0.25, 0.75]);
    // KServe answers without a version; typed contents instead of raw.
    let mut typed = response("", "p", FP32, &[1, 2], Vec::new());
    typed.raw_output_contents.clear();
    typed.outputs[0].contents = Some(InferTensorContents {
        fp32_contents: vec![0.5, 0.5],
    });
    assert!(decode_response(&target(), typed, &expected).is_ok());

    let cases = [
        (
            response("4", "p", FP32, &[1, 2], bytes(&[0.0, 1.0])),
            "version `4`",
        ),
        (
            response("3", "q", FP32, &[1, 2], bytes(&[0.0, 1.0])),
            "no output `p`",
        ),
        (
            response("3", "p", "FP16", &[1, 2], bytes(&[0.0, 1.0])),
            "is FP16",
        ),
        (
            response("3", "p", FP32, &[1, 3], bytes(&[0.0, 1.0, 2.0])),
            "has shape [1, 3]",
        ),
        (
            response("3", "p", FP32, &[1, -2], bytes(&[0.0, 1.0])),
            "has shape [1, -2]",
        ),
        (response("3", "p", FP32, &[1, 2], bytes(&[0.0])), "1 values"),
        (response("3", "p", FP32, &[1, 2], vec![0; 7]), "7 bytes"),
    ];
    for (response, complaint) in cases {
        let err = decode_response(&target(), response, &expected).unwrap_err();
        assert!(err.to_string().contains(complaint), "{complaint}: {err}");
        assert_ne!(err.fault(), Fault::Caller);
    }
}

fn metadata(
    versions: &[&str],
    input: (&str, &str, &[i64]),
    output: (&str, &[i64]),
) -> ModelMetadataResponse {
    let tensor = |name: &str, datatype: &str, shape: &[i64]| TensorMetadata {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
    };
    ModelMetadataResponse {
        name: "dx".into(),
        versions: versions.iter().map(|v| v.to_string()).collect(),
        platform: "tensorrt_plan".into(),
        inputs: vec![tensor(input.0, input.1, input.2)],
        outputs: vec![tensor(output.0, FP32, output.1)],
    }
}

#[test]
fn served_metadata_must_agree_with_the_manifest() {
    let inputs = [spec("image", &[1, 1, 8, 8])];
    let outputs = [spec("p", &[1, 3])];
    let check = |m: &ModelMetadataResponse, dynamic| {
        signature::check_metadata(m, &target(), &inputs, &outputs, dynamic)
    };
    // Triton with max_batch_size > 0 reports the batch axis as -1.
    let good = metadata(&["3"], ("image", FP32, &[-1, 1, 8, 8]), ("p", &[-1, 3]));
    check(&good, false).unwrap();
    check(&good, true).unwrap();
    check(
        &metadata(&[], ("image", FP32, &[1, 1, 8, 8]), ("p", &[1, 3])),
        false,
    )
    .unwrap();

    let cases = [
        (
            metadata(&["1", "2"], ("image", FP32, &[1, 1, 8, 8]), ("p", &[1, 3])),
            false,
            "not the pinned version 3",
        ),
        (
            metadata(&[], ("pixels", FP32, &[1, 1, 8, 8]), ("p", &[1, 3])),
            false,
            "inputs are [\"pixels\"]",
        ),
        (
            metadata(&[], ("image", "FP16", &[1, 1, 8, 8]), ("p", &[1, 3])),
            false,
            "declares FP16",
        ),
        (
            metadata(&[], ("image", FP32, &[1, 8, 8]), ("p", &[1, 3])),
            false,
            "3 dimensions",
        ),
        (
            metadata(&[], ("image", FP32, &[1, 1, 16, 16]), ("p", &[1, 3])),
            false,
            "size 16 on axis 2",
        ),
        (
            metadata(&[], ("image", FP32, &[1, 1, 8, 8]), ("q", &[1, 3])),
            false,
            "no output `p`",
        ),
        (
            metadata(&[], ("image", FP32, &[1, 1, 8, 8]), ("p", &[1, 3])),
            true,
            "dynamic batch",
        ),
    ];
    for (served, dynamic, complaint) in cases {
        let err = check(&served, dynamic).unwrap_err();
        assert!(matches!(err, EngineError::ManifestMismatch(_)), "{err:?}");
        assert!(err.to_string().contains(complaint), "{complaint}: {err}");
        assert_eq!(err.fault(), Fault::Configuration);
    }
}

#[test]
fn grpc_statuses_become_typed_engine_errors() {
    let deadline = Duration::from_millis(250);
    let map = |code| status::engine_error("ModelInfer `dx`", &Status::new(code, "why"), deadline);
    for code in [Code::Unavailable, Code::Cancelled, Code::ResourceExhausted] {
        let err = map(code);
        assert!(
            matches!(err, EngineError::Unavailable(_)),
            "{code:?}: {err:?}"
        );
        assert!(err.is_retryable() && err.fault() == Fault::Engine);
    }
    let late = map(Code::DeadlineExceeded);
    assert!(
        matches!(late, EngineError::DeadlineExceeded(d) if d == deadline),
        "{late:?}"
    );
    assert!(late.is_retryable() && late.fault() == Fault::Engine);
    assert!(matches!(map(Code::NotFound), EngineError::NotReady(_)));
    assert!(matches!(
        map(Code::InvalidArgument),
        EngineError::ManifestMismatch(_)
    ));
    assert_eq!(map(Code::PermissionDenied).fault(), Fault::Configuration);
    assert!(matches!(map(Code::Internal), EngineError::Execution(_)));
}

#[test]
fn triton_config_reads_durations_and_reports_every_problem() {
    let config: TritonConfig = toml::from_str(
        "url = \"https://triton:8001\"\ntimeout = \"250ms\"\ntls_ca = \"/ca.pem\"\nmax_concurrent = 8",
    )
    .unwrap();
    assert_eq!(config.timeout, Duration::from_millis(250));
    assert_eq!(config.connect_timeout, Duration::from_secs(2));
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    let bad: TritonConfig =
        toml::from_str("url = \"triton:8001\"\ntimeout = \"0s\"\ntls_domain = \"t\"").unwrap();
    assert_eq!(bad.problems().len(), 3, "{:?}", bad.problems());
    let https_without_ca = TritonConfig::new("https://triton:8001");
    assert_eq!(https_without_ca.problems().len(), 1);
    for text in [
        "url = \"http://t:1\"\ntimeout = \"soon\"",
        "url = \"http://t:1\"\nretries = 3",
    ] {
        assert!(toml::from_str::<TritonConfig>(text).is_err(), "{text}");
    }
}
