//! The `triton` engine against a real KServe v2 server ([`KserveServer`]:
//! kserve's own servicer, ONNX Runtime underneath): the same outputs as
//! tract, and every failure a typed error.

use std::time::{Duration, Instant};

use super::test_server::{
    KserveServer, NOT_READY_MODEL, SLOW_MODEL, SLOW_SECONDS, triton_repository,
};
use super::*;
use crate::infer::conformance::{demo_repository, input_for};
use crate::infer::{EngineConfig, EngineSettings, Fault, LoadError, LoadedModel};
use crate::models::ModelEntry;

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
