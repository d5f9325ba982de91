//! The result cache against a real redis-server: hits and misses, TTLs,
//! ACL and TLS, and Redis killed and restarted under a live cache (bypass,
//! then recovery without rebuilding anything). Shared route state between
//! two replicas is in `cache/route_sync.rs`.

#[path = "cache/route_sync.rs"]
mod route_sync;

use std::time::{Duration, Instant};

use dicom_gateway::cache::{
    CacheBackendConfig, CacheConfig, CacheError, CacheKey, CachedResult, InputDigest,
    ModelFingerprint, RedisConfig, RedisPassword, ResultCache,
};
use dicom_gateway::infer::{Classification, LabelScore, Tensor};
use dicom_gateway::models::Manifest;
use gateway_e2e::redis::{RedisOptions, RedisServer, RedisTls};

fn manifest() -> Manifest {
    let path = gateway_e2e::repo_models_dir().join("ct-hyperdensity/2.0.0/manifest.toml");
    Manifest::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A distinct input per `seed`, shaped like the model's input.
fn key(seed: u32) -> CacheKey {
    let m = manifest();
    let tensor = Tensor::from_elem(m.input.shape.clone(), seed as f32);
    ModelFingerprint::of(&m).key(&InputDigest::of_tensor(&m.input.name, &tensor))
}

fn result_for(key: &CacheKey, score: f32) -> CachedResult {
    let classification = Classification {
        labels: vec![LabelScore {
            output: "score".into(),
            label: "hyperdensity".into(),
            score,
            threshold: 0.5,
            positive: score >= 0.5,
        }],
    };
    CachedResult::new(key, classification, "onnx")
}

fn redis_cache(redis: RedisConfig, ttl: Duration) -> (ResultCache, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let config = CacheConfig {
        key_prefix: redis.key_prefix.clone(),
        backend: CacheBackendConfig::Redis(redis),
        ttl,
    };
    let cache = ResultCache::build_with_warn_interval(&config, &registry, Duration::from_secs(1))
        .expect("build cache");
    (cache, registry)
}

fn plain(server: &RedisServer) -> RedisConfig {
    let mut config = RedisConfig::new(server.url());
    config.timeout = Duration::from_millis(200);
    config
}

/// The sum of a counter's samples whose labels include all of `labels`.
fn counter(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[tokio::test]
async fn redis_misses_then_hits_with_the_very_value_stored() {
    let server = RedisServer::start();
    let (cache, registry) = redis_cache(plain(&server), Duration::from_secs(3600));
    let key = key(1);
    assert_eq!(cache.get(&key).await, None);
    let stored = result_for(&key, 0.73);
    cache.put(&key, &stored).await;
    assert_eq!(cache.get(&key).await, Some(stored));
    assert_eq!(cache.get(&self::key(2)).await, None, "another input misses");

    let text = key.text("dgw");
    let ttl_ms: i64 = server.cli(&["PTTL", &text]).parse().unwrap();
    assert!(ttl_ms > 3_500_000 && ttl_ms <= 3_600_000, "PTTL {ttl_ms}");
    let keys = server.cli(&["KEYS", "*"]);
    assert_eq!(keys, text, "one key, named by digest only");
    let outcome = |o| counter(&registry, "gateway_cache_requests_total", &[("outcome", o)]);
    assert_eq!(
        (outcome("hit"), outcome("miss"), outcome("bypass")),
        (1, 2, 0)
    );
}

#[tokio::test]
async fn redis_entries_expire_after_the_ttl() {
    let server = RedisServer::start();
    let (cache, _registry) = redis_cache(plain(&server), Duration::from_millis(300));
    let key = key(1);
    cache.put(&key, &result_for(&key, 0.2)).await;
    assert!(cache.get(&key).await.is_some());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(cache.get(&key).await, None, "expired");
}

#[tokio::test]
async fn values_of_another_schema_or_garbage_are_misses() {
    let server = RedisServer::start();
    let (cache, registry) = redis_cache(plain(&server), Duration::from_secs(60));
    let key = key(1);
    server.cli(&["SET", &key.text("dgw"), "not json"]);
    assert_eq!(cache.get(&key).await, None);
    let future = r#"{"schema":2,"labels":"whatever"}"#;
    server.cli(&["SET", &key.text("dgw"), future]);
    assert_eq!(cache.get(&key).await, None);
    let rejected = |r| counter(&registry, "gateway_cache_rejected_total", &[("reason", r)]);
    assert_eq!((rejected("corrupt"), rejected("schema")), (1, 1));
    // The model runs again and its result replaces the entry.
    cache.put(&key, &result_for(&key, 0.9)).await;
    assert!(cache.get(&key).await.is_some());
}

#[tokio::test]
async fn redis_killed_mid_run_is_a_bypass_and_the_cache_recovers_by_itself() {
    let mut server = RedisServer::start();
    let (cache, registry) = redis_cache(plain(&server), Duration::from_secs(60));
    let before = key(1);
    cache.put(&before, &result_for(&before, 0.6)).await;
    assert!(cache.get(&before).await.is_some());

    server.kill();
    let started = Instant::now();
    for seed in 0..20 {
        let key = key(seed);
        assert_eq!(cache.get(&key).await, None, "bypass reads as a miss");
        cache.put(&key, &result_for(&key, 0.1)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "40 bypassed operations took {:?}: each must fail fast",
        started.elapsed()
    );
    let bypass = |op| counter(&registry, "gateway_cache_bypass_total", &[("op", op)]);
    assert!(bypass("get") >= 20, "get bypasses: {}", bypass("get"));
    assert!(bypass("put") >= 20, "put bypasses: {}", bypass("put"));
    assert_eq!(
        counter(
            &registry,
            "gateway_cache_requests_total",
            &[("outcome", "bypass")]
        ),
        20
    );

    // Same port, empty data set; the same cache object, nothing rebuilt.
    server.restart();
    let after = key(99);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        cache.put(&after, &result_for(&after, 0.8)).await;
        if cache.get(&after).await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the cache did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cache.get(&before).await, None, "redis lost its data");
}

#[tokio::test]
async fn a_hung_redis_costs_at_most_the_timeout_per_operation() {
    let server = RedisServer::start();
    let (cache, registry) = redis_cache(plain(&server), Duration::from_secs(60));
    let key = key(1);
    cache.put(&key, &result_for(&key, 0.6)).await;
    server.pause();
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(cache.get(&key).await, None);
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(600),
            "a lookup took {took:?} (timeout 200 ms)"
        );
    }
    let timeouts = counter(
        &registry,
        "gateway_cache_bypass_total",
        &[("reason", "timeout")],
    );
    assert_eq!(timeouts, 3);
    server.resume();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.get(&key).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the cache did not recover after the pause"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_down_at_start_is_not_a_start_up_failure() {
    let mut server = RedisServer::start();
    server.kill();
    let (cache, registry) = redis_cache(plain(&server), Duration::from_secs(60));
    let key = key(1);
    assert_eq!(cache.get(&key).await, None);
    assert!(
        counter(
            &registry,
            "gateway_cache_bypass_total",
            &[("reason", "unavailable")]
        ) >= 1
    );
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        cache.put(&key, &result_for(&key, 0.8)).await;
        if cache.get(&key).await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the cache did not start working");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_acl_user_and_password() {
    let options = RedisOptions {
        acl_user: Some(("gateway".into(), "s3cret-pass".into())),
        tls: None,
    };
    let server = RedisServer::start_with(options);
    let mut config = plain(&server);
    config.username = Some("gateway".into());
    config.password = Some(RedisPassword::Inline("s3cret-pass".into()));
    let (cache, _registry) = redis_cache(config.clone(), Duration::from_secs(60));
    let key = key(1);
    cache.put(&key, &result_for(&key, 0.4)).await;
    assert!(cache.get(&key).await.is_some(), "authenticated");

    config.password = Some(RedisPassword::Inline("wrong".into()));
    let (wrong, registry) = redis_cache(config.clone(), Duration::from_secs(60));
    assert_eq!(wrong.get(&key).await, None, "a wrong password is a bypass");
    assert_eq!(counter(&registry, "gateway_cache_bypass_total", &[]), 1);

    config.password = Some(RedisPassword::Env("DGW_TEST_UNSET_REDIS_PASSWORD".into()));
    let config = CacheConfig {
        key_prefix: "dgw".into(),
        backend: CacheBackendConfig::Redis(config),
        ttl: Duration::from_secs(60),
    };
    let err = ResultCache::build(&config, &prometheus::Registry::new()).err();
    assert!(
        matches!(err, Some(CacheError::Config(ref why)) if why.contains("DGW_TEST_UNSET_REDIS_PASSWORD")),
        "a missing password variable fails at start-up: {err:?}"
    );
}

#[tokio::test]
async fn redis_over_tls_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let files = dicom_gateway::certs::write_dev_certs(
        &certs.path().join("server.pem"),
        &certs.path().join("server.key"),
        &[],
    )
    .unwrap();
    let server = RedisServer::start_with(RedisOptions {
        acl_user: None,
        tls: Some(RedisTls {
            cert: files.server_cert.clone(),
            key: files.server_key.clone(),
            ca: files.ca_cert.clone(),
        }),
    });
    let mut config = plain(&server);
    config.ca_file = Some(files.ca_cert.clone());
    let (cache, _registry) = redis_cache(config.clone(), Duration::from_secs(60));
    let key = key(1);
    cache.put(&key, &result_for(&key, 0.4)).await;
    assert!(cache.get(&key).await.is_some(), "TLS with our CA");

    config.ca_file = None;
    let (untrusted, registry) = redis_cache(config, Duration::from_secs(60));
    assert_eq!(untrusted.get(&key).await, None, "an unknown CA is a bypass");
    assert_eq!(counter(&registry, "gateway_cache_bypass_total", &[]), 1);
}
