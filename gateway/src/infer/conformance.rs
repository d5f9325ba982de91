//! The engine conformance suite: every engine kind runs [`check_engine`]
//! against the committed demo models. A new engine adds one test at the
//! bottom of this file naming its configuration.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;

use super::test_images::{chest_radiograph, ct_head, pseudo_random};
use super::triton::test_server::{KserveServer, triton_repository};
use super::*;
use crate::models::{ModelEntry, ModelRepository};

pub(super) fn demo_repository() -> ModelRepository {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let repo = ModelRepository::open(&root).expect("the demo model repository");
    assert!(repo.invalid().is_empty(), "{:#?}", repo.invalid());
    repo
}

fn limits(max_concurrent: usize, max_queued: usize) -> EngineLimits {
    EngineLimits {
        max_concurrent: NonZeroUsize::new(max_concurrent).unwrap(),
        max_queued,
    }
}

/// A valid input for `model`, deterministic per seed.
pub(super) fn input_for(model: &LoadedModel, seed: u64) -> Tensor {
    match model.manifest().name.as_str() {
        "ct-hyperdensity" => ct_head(6.0, seed),
        "dx-exposure" => chest_radiograph(1.0),
        _ => pseudo_random(&model.manifest().input.shape, seed),
    }
}

/// Runs the whole suite against the engine `config` builds, on the demo
/// models (with dynamic batching in front of the batch-dynamic ResNet).
async fn check_engine(config: EngineConfig) {
    check_engine_on(&demo_repository(), config).await;
}

/// [`check_engine`] on another copy of the demo models (the Triton suite
/// adds `[triton]` sections).
async fn check_engine_on(repo: &ModelRepository, config: EngineConfig) {
    let batching = BatchingConfig::enabled(
        NonZeroUsize::new(4).unwrap(),
        std::time::Duration::from_millis(5),
    );
    let settings = EngineSettings {
        batching,
        ..EngineSettings::from(&config)
    };
    let mut models = Vec::new();
    for entry in repo.entries() {
        let model = LoadedModel::load(entry, &settings)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", entry.id()));
        assert_eq!(model.engine_kind(), config.kind());
        models.push(model);
    }
    for model in &models {
        outputs_have_the_manifest_shapes(model).await;
        results_are_deterministic(model).await;
        bad_inputs_are_typed_caller_errors(model).await;
    }
    for model in models
        .iter()
        .filter(|m| m.manifest().name == "ct-hyperdensity")
    {
        ct_scores_a_hyperdense_blob_higher(model).await;
    }
    let dx = models.iter().find(|m| m.manifest().name == "dx-exposure");
    exposure_classes_follow_the_exposure(dx.expect("dx-exposure")).await;

    // The fixed-batch ResNet: batching has its own tests (infer/batch).
    let version = "1.0.0".parse().expect("a version");
    let resnet = repo.get("resnet18-demo", version).expect("resnet18-demo");
    concurrency_limit_is_respected(resnet, &config).await;
    excess_requests_are_refused_retryably(resnet, &config).await;
}

async fn outputs_have_the_manifest_shapes(model: &LoadedModel) {
    let outputs = model
        .infer(Tensors::single("image", input_for(model, 1)))
        .await;
    let outputs = outputs.unwrap_or_else(|e| panic!("{}: {e}", model.id()));
    assert_eq!(
        outputs.len(),
        model.manifest().outputs.len(),
        "{}",
        model.id()
    );
    for spec in &model.manifest().outputs {
        let tensor = outputs.get(&spec.tensor.name).expect("declared output");
        assert_eq!(
            tensor.shape(),
            spec.tensor.shape.as_slice(),
            "{}",
            model.id()
        );
        assert!(
            tensor.iter().all(|v| (0.0..=1.0).contains(v)),
            "{}: {tensor}",
            model.id()
        );
    }
}

async fn results_are_deterministic(model: &LoadedModel) {
    let input = input_for(model, 2);
    let first = model
        .infer(Tensors::single("image", input.clone()))
        .await
        .unwrap();
    let second = model.infer(Tensors::single("image", input)).await.unwrap();
    // Bit for bit, not approximately: same engine, same input.
    for ((name, a), (_, b)) in first.iter().zip(second.iter()) {
        let bits = |t: &Tensor| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b), "{} output {name}", model.id());
    }
}

async fn bad_inputs_are_typed_caller_errors(model: &LoadedModel) {
    let mut shape = model.manifest().input.shape.clone();
    *shape.last_mut().unwrap() += 1;
    let wrong_shape = Tensors::single("image", Tensor::zeros(ndarray::IxDyn(&shape)));
    let mut nan = input_for(model, 3);
    nan[[0, 0, 5, 5]] = f32::NAN;
    let mut extra = Tensors::single("image", input_for(model, 3));
    extra.insert("mask", Tensor::zeros(ndarray::IxDyn(&[1])));
    let cases = [
        (wrong_shape, "shape"),
        (Tensors::single("pixels", input_for(model, 3)), "missing"),
        (extra, "unexpected"),
        (Tensors::single("image", nan), "non-finite"),
    ];
    for (inputs, case) in cases {
        let err = model.infer(inputs).await.expect_err(case);
        let typed = match (&err, case) {
            (EngineError::InvalidInput(InputError::Shape { expected, .. }), "shape") => {
                *expected == model.manifest().input.shape
            }
            (EngineError::InvalidInput(InputError::Missing { name }), "missing") => name == "image",
            (EngineError::InvalidInput(InputError::Unexpected { name }), "unexpected") => {
                name == "mask"
            }
            (EngineError::InvalidInput(InputError::NonFinite { .. }), "non-finite") => true,
            _ => false,
        };
        assert!(typed, "{} {case}: {err:?}", model.id());
        assert_eq!(err.fault(), Fault::Caller);
        assert!(!err.is_retryable());
    }
}

async fn ct_scores_a_hyperdense_blob_higher(model: &LoadedModel) {
    let score = |radius: f32| async move {
        let result = model.classify(ct_head(radius, 11)).await.unwrap();
        result.get("hyperdensity").expect("label").clone()
    };
    let (none, small, large) = (score(0.0).await, score(5.0).await, score(10.0).await);
    assert!(!none.positive, "{} without a blob: {none:?}", model.id());
    assert!(large.positive, "{} with a blob: {large:?}", model.id());
    assert!(
        none.score < small.score && small.score < large.score,
        "{}: {} < {} < {}",
        model.id(),
        none.score,
        small.score,
        large.score
    );
}

async fn exposure_classes_follow_the_exposure(model: &LoadedModel) {
    for (exposure, expected) in [(0.25, "underexposed"), (1.0, "ok"), (1.9, "overexposed")] {
        let result = model.classify(chest_radiograph(exposure)).await.unwrap();
        let best = result
            .labels
            .iter()
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .unwrap();
        assert_eq!(best.label, expected, "exposure {exposure}: {result:?}");
        assert!(best.positive);
        let total: f32 = result.labels.iter().map(|l| l.score).sum();
        assert!((total - 1.0).abs() < 1e-4, "softmax sums to {total}");
    }
}

/// Sixteen requests at once through a limit of two running, all admitted:
/// never more than two run, all succeed.
async fn concurrency_limit_is_respected(entry: &ModelEntry, config: &EngineConfig) {
    let config = config.clone().with_limits(limits(2, 64));
    let model = Arc::new(LoadedModel::load(entry, &config).await.unwrap());
    let requests = (0..16).map(|seed| {
        let model = Arc::clone(&model);
        async move { model.classify(input_for(&model, seed)).await }
    });
    let results = futures::future::join_all(requests).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let stats = model.stats();
    assert_eq!(stats.peak_in_flight, 2, "{stats:?}");
    assert_eq!((stats.in_flight, stats.waiting, stats.rejected), (0, 0, 0));
}

/// Eight requests at once through one running and one queued place: the
/// excess is refused at once, retryably, and never runs.
async fn excess_requests_are_refused_retryably(entry: &ModelEntry, config: &EngineConfig) {
    let config = config.clone().with_limits(limits(1, 1));
    let model = LoadedModel::load(entry, &config).await.unwrap();
    let before = model.stats().completed;
    let requests = (0..8).map(|seed| model.classify(input_for(&model, seed)));
    let results = futures::future::join_all(requests).await;
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(!refused.is_empty(), "nothing was refused");
    for err in &refused {
        assert!(
            matches!(
                err,
                EngineError::Overloaded {
                    running: 1,
                    queued: 1
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert_eq!(err.fault(), Fault::Engine);
    }
    let stats = model.stats();
    assert_eq!(stats.rejected as usize, refused.len());
    assert_eq!(stats.completed - before, (8 - refused.len()) as u64);
    assert_eq!(stats.peak_in_flight, 1);
}

// ---------------------------------------------------------------------------
// One line per engine kind.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_tract_engine_conforms() {
    check_engine(EngineConfig::onnx()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnxruntime_engine_conforms() {
    check_engine(onnxruntime_config()).await;
}

/// The real KServe v2 server (kserve's servicer, ONNX Runtime underneath)
/// serving every demo model, reached over gRPC by the `triton` engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triton_engine_conforms() {
    let server = KserveServer::shared();
    let (_dir, repo) = triton_repository(|name| name.to_string());
    let mut config = TritonConfig::new(server.url());
    config.timeout = std::time::Duration::from_secs(30);
    check_engine_on(&repo, EngineConfig::Triton(config)).await;
}

/// ONNX Runtime with its library from `ORT_DYLIB_PATH`; a missing library
/// fails the test (never skips it) and says how to get one.
pub(super) fn onnxruntime_config() -> EngineConfig {
    let library = std::env::var_os(onnxruntime::LIBRARY_ENV).unwrap_or_else(|| {
        panic!(
            "{} is not set: run the tests through scripts/test.sh, which installs the \
             onnxruntime wheel into .venv and exports it",
            onnxruntime::LIBRARY_ENV
        )
    });
    assert!(
        Path::new(&library).is_file(),
        "{}={library:?} is not a file: run scripts/test.sh",
        onnxruntime::LIBRARY_ENV
    );
    EngineConfig::onnxruntime()
}

// ---------------------------------------------------------------------------
// Configuration and loading, independent of the engine kind.

#[test]
fn engine_config_is_a_closed_tagged_enum() {
    let parse = |text: &str| toml::from_str::<EngineConfig>(text);
    let onnx = parse("kind = \"onnx\"").unwrap();
    assert_eq!(onnx, EngineConfig::onnx());
    assert_eq!(onnx.limits(), EngineLimits::default());
    let tuned = parse("kind = \"onnx\"\nmax_concurrent = 3\nmax_queued = 0").unwrap();
    assert_eq!(tuned.limits(), limits(3, 0));
    let triton = parse("kind = \"triton\"\nurl = \"http://triton:8001\"").unwrap();
    assert_eq!(triton.kind(), "triton");
    let ort = parse("kind = \"onnxruntime\"").unwrap();
    assert_eq!(ort, EngineConfig::onnxruntime());
    let EngineConfig::Onnxruntime(defaults) = &ort else {
        panic!("{ort:?}")
    };
    assert_eq!(
        defaults.providers,
        [Provider::Tensorrt, Provider::Cuda, Provider::Cpu]
    );
    assert_eq!(
        (defaults.require_provider, defaults.intra_threads.get()),
        (None, 1)
    );
    let gpu = parse(
        "kind = \"onnxruntime\"\nlibrary_path = \"/opt/ort/libonnxruntime.so\"\n\
         providers = [\"tensorrt\", \"cpu\"]\nrequire_provider = \"tensorrt\"\n\
         intra_threads = 2\ndevice_id = 1\nmax_concurrent = 2\n\
         [tensorrt]\nfp16 = true\nengine_cache_path = \"/cache/trt\"\n\
         timing_cache_path = \"/cache/timing\"",
    )
    .unwrap();
    let EngineConfig::Onnxruntime(gpu) = gpu else {
        panic!("{gpu:?}")
    };
    assert_eq!(gpu.providers, [Provider::Tensorrt, Provider::Cpu]);
    assert_eq!(gpu.require_provider, Some(Provider::Tensorrt));
    assert_eq!((gpu.intra_threads.get(), gpu.device_id), (2, 1));
    assert!(gpu.tensorrt.fp16);
    assert_eq!(
        gpu.tensorrt.engine_cache_path.as_deref(),
        Some(Path::new("/cache/trt"))
    );
    assert!(gpu.problems().is_empty(), "{:?}", gpu.problems());

    for bad in [
        "kind = \"tensorflow\"",
        "kind = \"onnx\"\nthreads = 4",
        "kind = \"onnx\"\nmax_concurrent = 0",
        "kind = \"onnxruntime\"\nproviders = [\"rocm\"]",
        "kind = \"onnxruntime\"\nintra_threads = 0",
        "kind = \"onnxruntime\"\n[tensorrt]\nint8 = true",
        "kind = \"triton\"",
        "max_concurrent = 1",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn the_triton_engine_serves_only_manifests_that_name_a_triton_model() {
    let repo = demo_repository();
    let verified = repo.entries()[0].load_verified().unwrap();
    let text = "kind = \"triton\"\nurl = \"http://t:8001\"";
    let config: EngineConfig = toml::from_str(text).unwrap();
    match config.build(&verified) {
        Err(e @ EngineError::Load(_)) => {
            assert_eq!(e.fault(), Fault::Configuration);
            assert!(e.to_string().contains("no [triton] section"), "{e}");
        }
        Err(e) => panic!("{text}: {e}"),
        Ok(_) => panic!("{text}: built an engine for a local model"),
    }
}

/// A manifest that disagrees with its model file is refused at load, with a
/// configuration fault, not on the first image, by every embedded engine.
#[tokio::test]
async fn a_manifest_that_disagrees_with_the_model_is_refused_at_load() {
    for config in [EngineConfig::onnx(), onnxruntime_config()] {
        manifest_mismatch_is_refused_at_load(&config).await;
    }
}

async fn manifest_mismatch_is_refused_at_load(config: &EngineConfig) {
    let demo = demo_repository();
    let source = demo.latest("dx-exposure").unwrap();
    let manifest_text = std::fs::read_to_string(source.dir().join("manifest.toml")).unwrap();
    for (from, to, complaint) in [
        ("name = \"image\"", "name = \"pixels\"", "inputs are"),
        (
            "name = \"probabilities\"",
            "name = \"logits\"",
            "no output `logits`",
        ),
        (
            "shape = [1, 1, 256, 256]",
            "shape = [1, 1, 128, 128]",
            "size 256 on axis 2",
        ),
    ] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("dx-exposure/1.0.0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(source.model_path(), dir.join("model.onnx")).unwrap();
        let mut text = manifest_text.replace(from, to);
        if from.starts_with("shape") {
            text = text.replace("resize = [256, 256]", "resize = [128, 128]");
        }
        std::fs::write(dir.join("manifest.toml"), text).unwrap();
        let repo = ModelRepository::open(root.path()).unwrap();
        let entry = repo
            .entries()
            .first()
            .unwrap_or_else(|| panic!("{:?}", repo.invalid()));
        match LoadedModel::load(entry, config).await {
            Err(LoadError::Engine { source, .. }) => {
                let kind = config.kind();
                assert_eq!(
                    source.fault(),
                    Fault::Configuration,
                    "{kind} {to}: {source}"
                );
                assert!(
                    source.to_string().contains(complaint),
                    "{kind} {to}: {source}"
                );
            }
            other => panic!("{} {to}: {other:?}", config.kind()),
        }
    }
}

#[tokio::test]
async fn a_tampered_model_file_is_never_loaded() {
    let demo = demo_repository();
    let source = demo.latest("ct-hyperdensity").unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ct-hyperdensity/2.0.0");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        source.dir().join("manifest.toml"),
        dir.join("manifest.toml"),
    )
    .unwrap();
    let mut bytes = std::fs::read(source.model_path()).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(dir.join("model.onnx"), bytes).unwrap();
    let repo = ModelRepository::open(root.path()).unwrap();
    match LoadedModel::load(&repo.entries()[0], &EngineConfig::onnx()).await {
        Err(LoadError::File {
            source: crate::models::ModelFileError::Sha256Mismatch { .. },
            model,
        }) => assert_eq!(model.to_string(), "ct-hyperdensity@2.0.0"),
        other => panic!("{other:?}"),
    }
}
