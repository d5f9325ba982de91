//! The `triton` engine: message encoding, metadata checks and status
//! mapping in isolation, then against a real KServe v2 server
//! ([`KserveServer`]): same outputs as tract, and each failure a typed error.

use std::time::{Duration, Instant};

use tonic::{Code, Status};

use super::codec::{FP32, decode_response, encode_request, raw_bytes};
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{InferTensorContents, ModelInferResponse, ModelMetadataResponse};
use super::test_server::{
    KserveServer, NOT_READY_MODEL, SLOW_MODEL, SLOW_SECONDS, triton_repository,
};
use super::*;
use crate::infer::conformance::{demo_repository, input_for};
use crate::infer::{EngineConfig, EngineSettings, Fault, LoadError, LoadedModel, Tensor};
use crate::models::{DataType, ModelEntry};

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

// ---------------------------------------------------------------------------
// Against the real KServe v2 server.

fn settings(url: String, timeout: Duration) -> EngineSettings {
    let mut triton = TritonConfig::new(url);
    triton.timeout = timeout;
    EngineSettings {
        engine: EngineConfig::onnx(),
        triton: Some(triton),
        batching: crate::infer::BatchingConfig::default(),
    }
}

fn entry<'a>(repo: &'a crate::models::ModelRepository, id: &str) -> &'a ModelEntry {
    repo.entries()
        .iter()
        .find(|e| e.id().to_string() == id)
        .unwrap_or_else(|| panic!("{id}"))
}

/// The same tensors through the server and through tract: the same
/// outputs on every demo model (ONNX Runtime on the server side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triton_matches_tract_on_every_demo_model() {
    let server = KserveServer::shared();
    let (_dir, served) = triton_repository(|name| name.to_string());
    let local = demo_repository();
    let settings = settings(server.url(), Duration::from_secs(20));
    for entry in served.entries() {
        let remote = LoadedModel::load(entry, &settings)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(remote.engine_kind(), "triton");
        let tract = LoadedModel::load(
            local
                .get(&entry.manifest().name, entry.manifest().version)
                .unwrap(),
            EngineConfig::onnx(),
        )
        .await
        .unwrap();
        for seed in [1, 2] {
            let input = Tensors::single("image", input_for(&tract, seed));
            let (a, b) = (
                remote.infer(input.clone()).await.unwrap(),
                tract.infer(input).await.unwrap(),
            );
            for (name, x) in b.iter() {
                let y = a
                    .get(name)
                    .unwrap_or_else(|| panic!("{} lacks {name}", entry.id()));
                assert_eq!(x.shape(), y.shape());
                let diff = x
                    .iter()
                    .zip(y.iter())
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                assert!(
                    diff < 1e-4,
                    "{} {name}: triton {y} vs tract {x}",
                    entry.id()
                );
            }
        }
    }
}

#[tokio::test]
async fn a_server_that_is_down_is_a_retryable_engine_fault() {
    // Nothing listens there: the load fails, typed, without a panic.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_dir, served) = triton_repository(|name| name.to_string());
    let dx = entry(&served, "dx-exposure@1.0.0");
    match LoadedModel::load(
        dx,
        settings(format!("http://{closed}"), Duration::from_secs(5)),
    )
    .await
    {
        Err(LoadError::Engine { source, .. }) => {
            assert!(matches!(source, EngineError::Unavailable(_)), "{source:?}");
            assert!(source.is_retryable() && source.fault() == Fault::Engine);
        }
        other => panic!("{other:?}"),
    }

    // A server that goes away after the load: inference and health say so.
    let mut server = KserveServer::start(&[]);
    let model = LoadedModel::load(dx, settings(server.url(), Duration::from_secs(5)))
        .await
        .unwrap();
    server.kill();
    let err = model.classify(input_for(&model, 1)).await.unwrap_err();
    assert!(matches!(err, EngineError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable() && err.fault() == Fault::Engine);
    let health = model.engine().health().await.unwrap_err();
    assert!(matches!(health, EngineError::Unavailable(_)), "{health:?}");
}

#[tokio::test]
async fn a_slow_server_runs_into_the_deadline() {
    let server = KserveServer::shared();
    let (_dir, served) = triton_repository(|name| {
        if name == "dx-exposure-1.0.0" {
            SLOW_MODEL.to_string()
        } else {
            name.to_string()
        }
    });
    let dx = entry(&served, "dx-exposure@1.0.0");
    let deadline = Duration::from_millis(300);
    let config = settings(server.url(), deadline).triton.unwrap();
    let engine = TritonEngine::new(dx.manifest(), &config).unwrap();
    engine.check_deployment().await.unwrap();
    let started = Instant::now();
    let zeros = Tensors::single("image", crate::infer::zeros_like(&dx.manifest().input));
    let err = engine.infer(zeros).await.unwrap_err();
    assert!(
        matches!(err, EngineError::DeadlineExceeded(d) if d == deadline),
        "{err:?}"
    );
    assert!(err.is_retryable() && err.fault() == Fault::Engine);
    assert!(
        started.elapsed() < Duration::from_secs_f32(SLOW_SECONDS),
        "{:?}",
        started.elapsed()
    );
    // At load, the warm-up inference hits the same deadline.
    match LoadedModel::load(dx, settings(server.url(), deadline)).await {
        Err(LoadError::Engine {
            source: EngineError::DeadlineExceeded(_),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_model_that_is_not_ready_is_reported_at_load_and_by_health() {
    let server = KserveServer::shared();
    let (_dir, served) = triton_repository(|name| {
        if name == "dx-exposure-1.0.0" {
            NOT_READY_MODEL.to_string()
        } else {
            name.to_string()
        }
    });
    let dx = entry(&served, "dx-exposure@1.0.0");
    match LoadedModel::load(dx, settings(server.url(), Duration::from_secs(5))).await {
        Err(LoadError::Engine { source, .. }) => {
            assert!(matches!(source, EngineError::NotReady(_)), "{source:?}");
            assert!(source.to_string().contains(NOT_READY_MODEL), "{source}");
            assert!(source.is_retryable() && source.fault() == Fault::Engine);
        }
        other => panic!("{other:?}"),
    }
    let config = settings(server.url(), Duration::from_secs(5))
        .triton
        .unwrap();
    let engine = TritonEngine::new(dx.manifest(), &config).unwrap();
    assert!(matches!(
        engine.health().await,
        Err(EngineError::NotReady(_))
    ));
    // A name the server does not know at all is not ready either.
    let (_dir, unknown) = triton_repository(|name| format!("unknown-{name}"));
    let engine =
        TritonEngine::new(entry(&unknown, "dx-exposure@1.0.0").manifest(), &config).unwrap();
    assert!(matches!(
        engine.health().await,
        Err(EngineError::NotReady(_))
    ));
}

/// The served model is another model than the manifest describes: refused
/// at load as a configuration fault, before any image.
#[tokio::test]
async fn a_served_model_unlike_its_manifest_is_refused_at_load() {
    let server = KserveServer::shared();
    let (_dir, served) = triton_repository(|name| {
        if name == "dx-exposure-1.0.0" {
            "resnet18-demo-1.0.0".to_string()
        } else {
            name.to_string()
        }
    });
    match LoadedModel::load(
        entry(&served, "dx-exposure@1.0.0"),
        settings(server.url(), Duration::from_secs(5)),
    )
    .await
    {
        Err(LoadError::Engine { source, .. }) => {
            assert!(
                matches!(source, EngineError::ManifestMismatch(_)),
                "{source:?}"
            );
            assert!(source.to_string().contains("size 3 on axis 1"), "{source}");
            assert_eq!(source.fault(), Fault::Configuration);
        }
        other => panic!("{other:?}"),
    }
    // And a Triton manifest without a configured server says what is missing.
    match LoadedModel::load(entry(&served, "dx-exposure@1.0.0"), EngineConfig::onnx()).await {
        Err(LoadError::Engine { source, .. }) => {
            assert!(source.to_string().contains("[pipeline.triton]"), "{source}");
        }
        other => panic!("{other:?}"),
    }
}

/// Dynamic batching in front of the remote engine: the batch-dynamic
/// ResNet served by KServe takes stacked requests in one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_travel_to_the_server_as_one_request() {
    let server = KserveServer::shared();
    let (_dir, served) = triton_repository(|name| name.to_string());
    let mut settings = settings(server.url(), Duration::from_secs(20));
    settings.batching.max_queue_delay = Duration::from_millis(500);
    settings.batching.max_batch_size = std::num::NonZeroUsize::new(4).unwrap();
    let model = LoadedModel::load(entry(&served, "resnet18-demo@1.1.0"), &settings)
        .await
        .unwrap();
    let requests = (0..4).map(|seed| model.classify(input_for(&model, seed)));
    let results = futures::future::join_all(requests).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(model.stats().peak_in_flight, 4, "{:?}", model.stats());
}

/// TLS with the site's own CA (rustls, ring): the server's certificate is
/// checked against `tls_ca`, and a server the CA did not sign is refused.
#[tokio::test]
async fn tls_to_the_server_is_checked_against_the_configured_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (
        certs.path().join("server.pem"),
        certs.path().join("server.key"),
    );
    let files = crate::certs::write_dev_certs(&cert, &key, &[]).unwrap();
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let server = KserveServer::start(&["--tls-cert", &cert_arg, "--tls-key", &key_arg]);
    let url = server.url().replace("http://", "https://");
    let (_dir, served) = triton_repository(|name| name.to_string());
    let dx = entry(&served, "dx-exposure@1.0.0");

    let mut secure = settings(url.clone(), Duration::from_secs(5));
    if let Some(triton) = secure.triton.as_mut() {
        triton.tls_ca = Some(files.ca_cert.clone());
    }
    let model = LoadedModel::load(dx, &secure).await.unwrap();
    model.classify(input_for(&model, 1)).await.unwrap();

    // Another CA: the handshake fails, and the load with it.
    let other = tempfile::tempdir().unwrap();
    let other_files = crate::certs::write_dev_certs(
        &other.path().join("server.pem"),
        &other.path().join("server.key"),
        &[],
    )
    .unwrap();
    let mut wrong = settings(url, Duration::from_secs(5));
    if let Some(triton) = wrong.triton.as_mut() {
        triton.tls_ca = Some(other_files.ca_cert);
    }
    match LoadedModel::load(dx, &wrong).await {
        Err(LoadError::Engine { source, .. }) => {
            assert!(matches!(source, EngineError::Unavailable(_)), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
}
