//! What only the ONNX Runtime engine does: library loading, execution
//! providers, the session pool, and agreement with tract. The shared
//! behaviour is in `infer/conformance.rs`.

use std::num::NonZeroUsize;
use std::sync::Arc;

use super::super::conformance::{demo_repository, input_for, onnxruntime_config};
use super::super::test_images::pseudo_random;
use super::*;
use crate::infer::{EngineConfig, Fault, LoadedModel, zeros_like};

/// The default configuration with `ORT_DYLIB_PATH` checked (fails, never
/// skips, when the library is absent).
fn config() -> OnnxruntimeConfig {
    match onnxruntime_config() {
        EngineConfig::Onnxruntime(config) => config,
        other => panic!("{other:?}"),
    }
}

fn verified(name: &str) -> VerifiedModel {
    demo_repository()
        .latest(name)
        .unwrap_or_else(|| panic!("{name}"))
        .load_verified()
        .unwrap()
}

fn load_error(model: &VerifiedModel, config: &OnnxruntimeConfig) -> EngineError {
    match OnnxruntimeEngine::load(model, config) {
        Err(e) => e,
        Ok(engine) => panic!("loaded: {engine:?}"),
    }
}

#[test]
fn on_a_host_without_gpu_providers_the_cpu_provider_serves() {
    let config = config();
    let engine = OnnxruntimeEngine::load(&verified("dx-exposure"), &config).unwrap();
    // With the CPU wheel (what scripts/test.sh installs) neither GPU
    // provider is compiled in, so the default list falls through to CPU.
    // Pointed at an onnxruntime-gpu build on a GPU host, a GPU one serves.
    if !providers::compiled_in(Provider::Tensorrt) && !providers::compiled_in(Provider::Cuda) {
        assert_eq!(engine.provider(), Provider::Cpu);
    }
    assert!(providers::compiled_in(Provider::Cpu));
    assert_eq!(engine.kind(), "onnxruntime");
}

#[test]
fn a_required_provider_that_cannot_register_fails_the_load() {
    if providers::compiled_in(Provider::Tensorrt) {
        // A GPU build: whether TensorRT registers depends on the host, and
        // the CPU-only statement below would not be tested.
        eprintln!("the loaded onnxruntime has TensorRT; the CPU-wheel case is not exercised");
        return;
    }
    let config = OnnxruntimeConfig {
        require_provider: Some(Provider::Tensorrt),
        ..config()
    };
    let err = load_error(&verified("dx-exposure"), &config);
    eprintln!("{err}");
    assert!(matches!(err, EngineError::Load(_)), "{err:?}");
    assert_eq!(err.fault(), Fault::Configuration);
    assert!(!err.is_retryable());
    let message = err.to_string();
    assert!(message.contains("`tensorrt` is required"), "{message}");
    assert!(message.contains("TensorRT 10"), "{message}");

    // Without the requirement the same host loads the model on CPU.
    let relaxed = OnnxruntimeConfig {
        require_provider: None,
        ..config
    };
    let engine = OnnxruntimeEngine::load(&verified("dx-exposure"), &relaxed).unwrap();
    assert_eq!(engine.provider(), Provider::Cpu);
}

#[test]
fn a_missing_or_foreign_library_is_a_typed_load_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("libonnxruntime.so.1.31.1");
    let foreign = dir.path().join("libnot-onnxruntime.so");
    std::fs::write(&foreign, b"\x7fELF but not really").unwrap();
    for library in [&missing, &foreign] {
        let config = OnnxruntimeConfig {
            library_path: Some(library.clone()),
            ..OnnxruntimeConfig::default()
        };
        let err = load_error(&verified("dx-exposure"), &config);
        eprintln!("{err}");
        assert!(matches!(err, EngineError::Load(_)), "{err:?}");
        assert_eq!(err.fault(), Fault::Configuration);
        // Either dlopen refuses the file, or (when another test loaded the
        // real library first) the one-library-per-process rule does; both
        // name the file asked for.
        assert!(
            err.to_string().contains(&*library.to_string_lossy()),
            "{err}"
        );
    }
}

#[test]
fn an_invalid_provider_list_reports_every_problem_at_once() {
    let config = OnnxruntimeConfig {
        providers: vec![Provider::Cuda, Provider::Cpu, Provider::Cuda],
        require_provider: Some(Provider::Tensorrt),
        ..OnnxruntimeConfig::default()
    };
    let err = load_error(&verified("dx-exposure"), &config);
    let message = err.to_string();
    assert!(message.contains("`cuda` is listed twice"), "{message}");
    assert!(message.contains("`tensorrt`, which is not in"), "{message}");
    assert_eq!(err.fault(), Fault::Configuration);
    let empty = OnnxruntimeConfig {
        providers: Vec::new(),
        ..OnnxruntimeConfig::default()
    };
    assert_eq!(empty.problems(), ["`providers` is empty"]);
}

/// A strided (non-contiguous) input runs like its contiguous copy: ONNX
/// Runtime reads raw buffers, so the engine must hand it standard layout.
#[tokio::test]
async fn a_non_contiguous_input_gives_the_same_outputs() {
    let engine = OnnxruntimeEngine::load(&verified("dx-exposure"), &config()).unwrap();
    let contiguous = pseudo_random(&[1, 1, 256, 256], 5);
    // The transpose stored contiguously, viewed transposed back: the same
    // values, with swapped strides.
    let strided = contiguous
        .clone()
        .permuted_axes(ndarray::IxDyn(&[0, 1, 3, 2]))
        .as_standard_layout()
        .into_owned()
        .permuted_axes(ndarray::IxDyn(&[0, 1, 3, 2]));
    assert!(!strided.is_standard_layout());
    assert_eq!(strided, contiguous);
    let a = engine
        .infer(Tensors::single("image", contiguous))
        .await
        .unwrap();
    let b = engine
        .infer(Tensors::single("image", strided))
        .await
        .unwrap();
    assert_eq!(a, b);
}

/// Each concurrent request gets its own session and gives it back, also
/// when requests are refused: the pool ends as full as it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_go_back_to_the_pool() {
    let config = OnnxruntimeConfig {
        max_concurrent: NonZeroUsize::new(2).unwrap(),
        max_queued: 2,
        ..config()
    };
    let engine = Arc::new(OnnxruntimeEngine::load(&verified("ct-hyperdensity"), &config).unwrap());
    assert_eq!(engine.sessions.idle(), 2);
    let spec = engine.inputs()[0].clone();
    let requests = (0..12).map(|_| {
        let engine = Arc::clone(&engine);
        let input = zeros_like(&spec);
        async move { engine.infer(Tensors::single("image", input)).await }
    });
    let results = futures::future::join_all(requests).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(ok >= 4, "{results:?}");
    let stats = engine.stats();
    // Never more sessions at once than the pool holds. Whether two
    // requests overlap at all is up to the scheduler: on a busy machine
    // join_all can see each one finish before the next starts (seen in CI
    // with peak 1, 12 completed, none rejected).
    assert!((1..=2).contains(&stats.peak_in_flight), "{stats:?}");
    assert_eq!(stats.completed as usize, ok);
    assert_eq!(engine.sessions.idle(), 2);
}

/// Going through `EngineConfig::build` gives the same engine kind and
/// runs its health check (one inference on zeros).
#[tokio::test]
async fn build_returns_a_healthy_engine() {
    let built = onnxruntime_config()
        .build(&verified("ct-hyperdensity"))
        .unwrap();
    assert_eq!(built.engine.kind(), "onnxruntime");
    built.healthcheck.await.unwrap();
    assert_eq!(built.engine.stats().completed, 1);
}

/// The loaded model's outputs line up with tract's through the public path
/// too (labels and operating points), not only as raw tensors.
#[tokio::test]
async fn classifications_agree_with_tract() {
    let entry = demo_repository().latest("ct-hyperdensity").unwrap().clone();
    let tract = LoadedModel::load(&entry, &EngineConfig::onnx())
        .await
        .unwrap();
    let ort = LoadedModel::load(&entry, &onnxruntime_config())
        .await
        .unwrap();
    for seed in 0..3 {
        let input = input_for(&tract, seed);
        let a = tract.classify(input.clone()).await.unwrap();
        let b = ort.classify(input).await.unwrap();
        for (x, y) in a.labels.iter().zip(&b.labels) {
            assert_eq!((&x.label, x.positive), (&y.label, y.positive));
            assert!((x.score - y.score).abs() <= 1e-4, "{x:?} {y:?}");
        }
    }
}

/// The same tensors through tract and ONNX Runtime give the same outputs
/// on every demo model: the engines are interchangeable. The tolerance is
/// 1e-4 on probabilities; both engines compute in f32 and differ only in
/// summation order and kernels (im2col/GEMM vs tract's), which moves the
/// ResNet's softmax inputs by ~1e-6 relative.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnxruntime_matches_tract_on_every_demo_model() {
    const TOLERANCE: f32 = 1e-4;
    let repo = demo_repository();
    let ort_config = onnxruntime_config();
    let mut compared = Vec::new();
    for entry in repo.entries() {
        let tract = LoadedModel::load(entry, &EngineConfig::onnx())
            .await
            .unwrap();
        let ort = LoadedModel::load(entry, &ort_config)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", entry.id()));
        let mut inputs: Vec<Tensor> = (0..4).map(|seed| input_for(&tract, seed)).collect();
        inputs.push(pseudo_random(&entry.manifest().input.shape, 99));
        inputs.push(zeros_like(&entry.manifest().input));
        let mut worst = 0.0f32;
        for input in inputs {
            let a = tract
                .infer(Tensors::single("image", input.clone()))
                .await
                .unwrap();
            let b = ort.infer(Tensors::single("image", input)).await.unwrap();
            assert_eq!(
                a.names().collect::<Vec<_>>(),
                b.names().collect::<Vec<_>>(),
                "{}",
                entry.id()
            );
            for ((name, x), (_, y)) in a.iter().zip(b.iter()) {
                assert_eq!(x.shape(), y.shape(), "{} {name}", entry.id());
                let diff = x
                    .iter()
                    .zip(y.iter())
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0f32, f32::max);
                worst = worst.max(diff);
            }
        }
        assert!(
            worst <= TOLERANCE,
            "{}: max abs diff {worst:e} > {TOLERANCE:e}",
            entry.id()
        );
        compared.push((entry.id().to_string(), worst));
    }
    // Every demo model took part.
    assert_eq!(
        compared.len(),
        demo_repository().entries().len(),
        "{compared:?}"
    );
    assert!(compared.len() >= 5, "{compared:?}");
    eprintln!("tract vs onnxruntime, max abs diff per model: {compared:?}");
}
