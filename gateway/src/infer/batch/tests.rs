//! Dynamic batching against a counting fake engine (what each call
//! carried), and once against tract on the batch-dynamic demo ResNet.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use super::*;
use crate::infer::limit::{ConcurrencyLimit, EngineLimits};
use crate::infer::tensor::check_batched_inputs;
use crate::infer::{EngineConfig, EngineSettings, Fault, InputError, LoadedModel, Tensor};
use crate::models::DataType;

/// A fake engine taking `x: [N, 4]` and returning `y = 2x`, recording the
/// batch size of every call; it can be slowed down or made to fail.
struct CountingFakeEngine {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    calls: Mutex<Vec<usize>>,
    delay: Duration,
    fail: Option<EngineError>,
    limit: ConcurrencyLimit,
}

impl CountingFakeEngine {
    fn new(delay: Duration, fail: Option<EngineError>) -> Arc<Self> {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            shape: vec![1, 4],
            dtype: DataType::Float32,
        };
        Arc::new(CountingFakeEngine {
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
            calls: Mutex::default(),
            delay,
            fail,
            limit: ConcurrencyLimit::new(EngineLimits {
                max_concurrent: NonZeroUsize::new(2).unwrap(),
                max_queued: 0,
            }),
        })
    }

    fn calls(&self) -> Vec<usize> {
        self.calls.lock().unwrap().clone()
    }
}

impl InferenceEngine for CountingFakeEngine {
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn infer(&self, inputs: Tensors) -> BoxFuture<'_, Result<Tensors, EngineError>> {
        Box::pin(self.limit.run(async move {
            let batch = check_batched_inputs(&self.inputs, &inputs)?;
            self.calls.lock().unwrap().push(batch);
            tokio::time::sleep(self.delay).await;
            if let Some(error) = &self.fail {
                return Err(error.clone());
            }
            let x = inputs.get("x").expect("checked");
            Ok(Tensors::single("y", x * 2.0))
        }))
    }
    fn health(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async { Ok(()) })
    }
    fn stats(&self) -> EngineStats {
        self.limit.stats()
    }
}

fn policy(max_batch_size: usize, delay_ms: u64, max_queued: usize) -> BatchPolicy {
    BatchPolicy {
        max_batch_size,
        max_queue_delay: Duration::from_millis(delay_ms),
        max_queued,
    }
}

fn request(value: f32) -> Tensors {
    Tensors::single("x", Tensor::from_elem(ndarray::IxDyn(&[1, 4]), value))
}

fn batching(fake: &Arc<CountingFakeEngine>, policy: BatchPolicy) -> BatchingEngine {
    BatchingEngine::new(
        Arc::clone(fake) as Arc<dyn InferenceEngine>,
        policy,
        NonZeroUsize::new(2).unwrap(),
    )
}

#[tokio::test]
async fn requests_arriving_together_share_one_call_and_each_gets_its_own_outputs() {
    let fake = CountingFakeEngine::new(Duration::ZERO, None);
    let engine = batching(&fake, policy(8, 200, 64));
    let requests = (0..8).map(|i| engine.infer(request(i as f32)));
    let results = futures::future::join_all(requests).await;
    for (i, result) in results.into_iter().enumerate() {
        let y = result.unwrap().remove("y").unwrap();
        assert_eq!(y.shape(), [1, 4]);
        assert!(y.iter().all(|&v| v == 2.0 * i as f32), "request {i}: {y}");
    }
    assert_eq!(
        fake.calls(),
        [8],
        "one full batch, sent without waiting the delay"
    );
    let stats = engine.batch_stats();
    assert_eq!((stats.batches, stats.requests, stats.largest), (1, 8, 8));
    assert_eq!(engine.stats().peak_in_flight, 8);
}

#[tokio::test]
async fn a_lone_request_waits_at_most_the_queue_delay() {
    let fake = CountingFakeEngine::new(Duration::ZERO, None);
    let engine = batching(&fake, policy(8, 30, 64));
    let started = std::time::Instant::now();
    engine.infer(request(1.0)).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(30), "{waited:?}");
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    assert_eq!(fake.calls(), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_never_exceed_max_batch_size_and_lose_no_request() {
    let fake = CountingFakeEngine::new(Duration::from_millis(20), None);
    let engine = Arc::new(batching(&fake, policy(4, 5, 64)));
    let requests = (0..22).map(|i| {
        let engine = Arc::clone(&engine);
        async move { engine.infer(request(i as f32)).await }
    });
    let results = futures::future::join_all(requests).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let calls = fake.calls();
    assert!(calls.iter().all(|&n| (1..=4).contains(&n)), "{calls:?}");
    assert_eq!(calls.iter().sum::<usize>(), 22, "{calls:?}");
    // The engine is busy 20 ms per call, so requests pile up: most calls
    // leave full.
    assert!(calls.iter().filter(|&&n| n == 4).count() >= 4, "{calls:?}");
    let stats = engine.stats();
    assert_eq!(
        (stats.in_flight, stats.waiting, stats.completed),
        (0, 0, 22)
    );
    assert!(stats.peak_in_flight <= 8, "two slots of four: {stats:?}");
}

#[tokio::test]
async fn a_failed_call_fails_every_request_in_its_batch() {
    let unavailable = EngineError::Unavailable("server gone".into());
    let fake = CountingFakeEngine::new(Duration::ZERO, Some(unavailable));
    let engine = batching(&fake, policy(8, 100, 64));
    let results = futures::future::join_all((0..5).map(|i| engine.infer(request(i as f32)))).await;
    assert_eq!(fake.calls(), [5]);
    for result in results {
        let err = result.unwrap_err();
        assert!(matches!(err, EngineError::Unavailable(_)), "{err:?}");
        assert!(err.is_retryable());
        assert_eq!(err.fault(), Fault::Engine);
    }
}

#[tokio::test]
async fn a_bad_request_fails_alone_before_it_can_join_a_batch() {
    let fake = CountingFakeEngine::new(Duration::ZERO, None);
    let engine = batching(&fake, policy(8, 50, 64));
    let wrong = Tensors::single("x", Tensor::zeros(ndarray::IxDyn(&[2, 4])));
    let (good, bad) = futures::join!(engine.infer(request(3.0)), engine.infer(wrong));
    assert!(good.is_ok(), "{good:?}");
    assert!(
        matches!(
            bad,
            Err(EngineError::InvalidInput(InputError::Shape { .. }))
        ),
        "{bad:?}"
    );
    assert_eq!(fake.calls(), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_the_excess_at_once_retryably() {
    let fake = CountingFakeEngine::new(Duration::from_millis(200), None);
    // Two slots of one request each, two places in the queue: of eight
    // requests at once, at most four are admitted.
    let engine = Arc::new(batching(&fake, policy(1, 0, 2)));
    let requests = (0..8).map(|i| {
        let engine = Arc::clone(&engine);
        async move { engine.infer(request(i as f32)).await }
    });
    let results = futures::future::join_all(requests).await;
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(refused.len() >= 4, "{results:?}");
    for err in &refused {
        assert!(
            matches!(err, EngineError::Overloaded { queued: 2, .. }),
            "{err:?}"
        );
        assert!(err.is_retryable());
    }
    assert_eq!(engine.stats().rejected as usize, refused.len());
}

#[test]
fn batching_config_overrides_by_name_then_version() {
    let config: BatchingConfig = toml::from_str(
        "max_batch_size = 8\nmax_queue_delay = \"5ms\"\n\
         [models.\"resnet18-demo\"]\nmax_batch_size = 16\n\
         [models.\"resnet18-demo@1.1.0\"]\nmax_queue_delay = \"2ms\"",
    )
    .unwrap();
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    let id = |text: &str| {
        let (name, version) = text.split_once('@').unwrap();
        crate::models::ModelId {
            name: name.into(),
            version: version.parse().unwrap(),
        }
    };
    assert_eq!(
        config.policy_for(&id("resnet18-demo@1.1.0")),
        policy(16, 2, 64)
    );
    assert_eq!(
        config.policy_for(&id("resnet18-demo@1.0.0")),
        policy(16, 5, 64)
    );
    assert_eq!(
        config.policy_for(&id("ct-hyperdensity@2.0.0")),
        policy(8, 5, 64)
    );
    // Off unless configured.
    assert_eq!(
        BatchingConfig::default().policy_for(&id("x@1.0.0")),
        policy(1, 5, 64)
    );

    let bad: BatchingConfig = toml::from_str(
        "max_batch_size = 1000\nmax_queue_delay = \"2s\"\n[models.\"Bad Name\"]\nmax_queued = 3",
    )
    .unwrap();
    assert_eq!(bad.problems().len(), 3, "{:?}", bad.problems());
    for text in [
        "max_batch_size = 0",
        "max_queue_delay = \"soon\"",
        "batch = 4",
    ] {
        assert!(toml::from_str::<BatchingConfig>(text).is_err(), "{text}");
    }
}

/// The batch-dynamic demo ResNet (1.1.0) on tract: four requests at once
/// become one call, and each gets what the fixed-batch version (1.0.0, the
/// same weights) gives it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tract_batches_of_the_dynamic_resnet_match_single_requests() {
    let repo = crate::infer::conformance::demo_repository();
    let v = |text: &str| text.parse().unwrap();
    let dynamic = repo
        .get("resnet18-demo", v("1.1.0"))
        .expect("resnet18-demo 1.1.0");
    let fixed = repo
        .get("resnet18-demo", v("1.0.0"))
        .expect("resnet18-demo 1.0.0");
    assert!(dynamic.manifest().dynamic_batch && !fixed.manifest().dynamic_batch);

    let mut settings = EngineSettings::from(EngineConfig::onnx());
    settings.batching.max_queue_delay = Duration::from_millis(500);
    settings.batching.max_batch_size = NonZeroUsize::new(4).unwrap();
    let batched = LoadedModel::load(dynamic, &settings).await.unwrap();
    let single = LoadedModel::load(fixed, &settings).await.unwrap();

    let inputs: Vec<Tensor> = (0..4)
        .map(|seed| crate::infer::test_images::pseudo_random(&[1, 3, 224, 224], seed))
        .collect();
    let together = inputs
        .iter()
        .map(|x| batched.infer(Tensors::single("image", x.clone())));
    let together = futures::future::join_all(together).await;
    for (x, result) in inputs.iter().zip(together) {
        let got = result.unwrap();
        let alone = single
            .infer(Tensors::single("image", x.clone()))
            .await
            .unwrap();
        let (a, b) = (
            &got.get("probabilities").unwrap(),
            &alone.get("probabilities").unwrap(),
        );
        assert_eq!(a.shape(), [1, 2]);
        let diff = a
            .iter()
            .zip(b.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-4, "batched {a} vs alone {b}");
    }
    let stats = batched.stats();
    assert_eq!(stats.completed, 4);
    assert_eq!(
        stats.peak_in_flight, 4,
        "one call carried all four: {stats:?}"
    );
}
