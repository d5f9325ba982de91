//! Keys, values and the memory backend. The Redis backend is tested
//! against a real redis-server in `tests/tests/cache.rs`.

use std::time::Duration;

use super::*;
use crate::infer::{Classification, LabelScore, Tensor};
use crate::models::{Manifest, Normalisation, Version, Window};

const CT_V2: &str = include_str!("../../../models/ct-hyperdensity/2.0.0/manifest.toml");

fn manifest() -> Manifest {
    Manifest::from_toml(CT_V2).unwrap()
}

fn tensor(seed: f32) -> Tensor {
    Tensor::from_shape_fn(ndarray::IxDyn(&[1, 1, 8, 8]), |i| {
        seed + (i[2] * 8 + i[3]) as f32
    })
}

fn key_of(manifest: &Manifest, tensor: &Tensor) -> CacheKey {
    ModelFingerprint::of(manifest).key(&InputDigest::of_tensor(&manifest.input.name, tensor))
}

fn classification(score: f32) -> Classification {
    Classification {
        labels: vec![LabelScore {
            output: "score".into(),
            label: "hyperdensity".into(),
            score,
            threshold: 0.5,
            positive: score >= 0.5,
        }],
    }
}

#[test]
fn same_input_and_model_give_the_same_key() {
    let a = key_of(&manifest(), &tensor(1.0));
    let b = key_of(&manifest(), &tensor(1.0));
    assert_eq!(a, b);
    assert_eq!(a.text("dgw"), b.text("dgw"));
}

#[test]
fn key_text_is_a_prefix_and_a_digest_only() {
    let text = key_of(&manifest(), &tensor(1.0)).text("dgw");
    let digest = text.strip_prefix("dgw:v1:result:").expect("prefix");
    assert_eq!(digest.len(), 64);
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn any_change_of_model_or_contract_changes_the_key() {
    let base = manifest();
    let reference = key_of(&base, &tensor(1.0));
    let mut variants: Vec<(&str, Manifest)> = Vec::new();
    let mut m = base.clone();
    m.name = "ct-hyperdensity-b".into();
    variants.push(("name", m));
    let mut m = base.clone();
    m.version = "2.0.1".parse::<Version>().unwrap();
    variants.push(("version", m));
    let mut m = base.clone();
    m.sha256 = "0".repeat(64);
    variants.push(("sha256", m));
    let mut m = base.clone();
    m.preprocessing.modality_lut = false;
    variants.push(("modality_lut", m));
    let mut m = base.clone();
    m.preprocessing.window = Window::Fixed {
        center: 40.0,
        width: 80.0,
    };
    variants.push(("window", m));
    let mut m = base.clone();
    m.preprocessing.normalisation = Normalisation::Scale {
        scale: 1.0,
        offset: 0.0,
    };
    variants.push(("normalisation", m));
    let mut m = base.clone();
    m.preprocessing.resize = [128, 128];
    variants.push(("resize", m));
    let mut m = base.clone();
    m.input.name = "pixels".into();
    variants.push(("input name", m));
    let mut m = base.clone();
    m.outputs[0].labels[0].threshold = 0.6;
    variants.push(("threshold", m));
    for (what, variant) in variants {
        assert_ne!(
            key_of(&variant, &tensor(1.0)),
            reference,
            "changing {what} must change the key"
        );
    }
}

#[test]
fn any_change_of_the_input_changes_the_key() {
    let m = manifest();
    let reference = key_of(&m, &tensor(1.0));
    let mut one_pixel = tensor(1.0);
    one_pixel[[0, 0, 3, 3].as_slice()] += f32::EPSILON * 16.0;
    assert_ne!(key_of(&m, &one_pixel), reference, "one value");
    let reshaped = tensor(1.0)
        .into_shape_with_order(ndarray::IxDyn(&[1, 1, 4, 16]))
        .unwrap();
    assert_ne!(key_of(&m, &reshaped), reference, "same values, other shape");
    assert_ne!(key_of(&m, &tensor(2.0)), reference, "other image");
}

#[test]
fn the_input_digest_ignores_memory_layout() {
    let standard = tensor(1.0);
    let mut transposed_storage = standard
        .clone()
        .reversed_axes()
        .as_standard_layout()
        .into_owned();
    transposed_storage = transposed_storage.reversed_axes();
    assert!(!transposed_storage.is_standard_layout());
    assert_eq!(
        InputDigest::of_tensor("image", &standard),
        InputDigest::of_tensor("image", &transposed_storage)
    );
}

#[test]
fn values_round_trip_bit_for_bit() {
    let key = key_of(&manifest(), &tensor(1.0));
    for score in [0.0f32, 0.1, 0.5, 0.499_999_97, 1.0, 1e-30, 0.123_456_79] {
        let value = CachedResult::new(&key, classification(score), "onnx");
        let decoded = value::decode(&key, &value::encode(&value)).unwrap();
        assert_eq!(decoded, value);
        assert_eq!(
            decoded.classification.labels[0].score.to_bits(),
            score.to_bits()
        );
    }
}

#[test]
fn unknown_schema_corrupt_or_foreign_values_are_not_used() {
    let key = key_of(&manifest(), &tensor(1.0));
    let value = CachedResult::new(&key, classification(0.7), "onnx");
    let mut json: serde_json::Value = serde_json::from_slice(&value::encode(&value)).unwrap();

    json["schema"] = 2.into();
    let err = value::decode(&key, json.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.as_label(), "schema");

    json["schema"] = 1.into();
    json["labels"][0]["positive"] = false.into();
    let err = value::decode(&key, json.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        err.as_label(),
        "corrupt",
        "positive must follow the threshold"
    );

    let other = key_of(&manifest(), &tensor(1.0));
    let mut other_model = manifest();
    other_model.version = "1.0.0".parse().unwrap();
    let foreign = key_of(&other_model, &tensor(1.0));
    let bytes = value::encode(&CachedResult::new(&other, classification(0.7), "onnx"));
    assert_eq!(
        value::decode(&foreign, &bytes).unwrap_err().as_label(),
        "mismatch"
    );
    assert_eq!(
        value::decode(&key, b"not json").unwrap_err().as_label(),
        "corrupt"
    );
}

fn memory_cache(max_entries: u64, ttl: Duration) -> (ResultCache, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let config = CacheConfig::memory(max_entries, ttl);
    (ResultCache::build(&config, &registry).unwrap(), registry)
}

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
async fn memory_backend_hits_misses_and_counts() {
    let (cache, registry) = memory_cache(100, Duration::from_secs(60));
    let key = key_of(&manifest(), &tensor(1.0));
    assert_eq!(cache.get(&key).await, None);
    let value = CachedResult::new(&key, classification(0.9), "onnx");
    cache.put(&key, &value).await;
    assert_eq!(cache.get(&key).await, Some(value));
    let hits = [("backend", "memory"), ("outcome", "hit")];
    let misses = [("backend", "memory"), ("outcome", "miss")];
    assert_eq!(counter(&registry, "gateway_cache_requests_total", &hits), 1);
    assert_eq!(
        counter(&registry, "gateway_cache_requests_total", &misses),
        1
    );
    assert_eq!(counter(&registry, "gateway_cache_writes_total", &[]), 1);
}

#[tokio::test]
async fn memory_backend_expires_after_the_ttl() {
    let (cache, _registry) = memory_cache(100, Duration::from_millis(200));
    let key = key_of(&manifest(), &tensor(1.0));
    cache
        .put(&key, &CachedResult::new(&key, classification(0.9), "onnx"))
        .await;
    assert!(cache.get(&key).await.is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(cache.get(&key).await, None, "expired");
}

#[tokio::test]
async fn memory_backend_stays_within_its_bound() {
    let memory = MemoryCache::new(50, Duration::from_secs(60));
    let m = manifest();
    for i in 0..500 {
        let key = key_of(&m, &tensor(i as f32));
        memory
            .put(
                key.text("dgw"),
                CachedResult::new(&key, classification(0.1), "onnx"),
            )
            .await;
    }
    assert!(memory.entry_count().await <= 50);
}

#[tokio::test]
async fn a_disabled_cache_never_hits() {
    let cache = ResultCache::disabled();
    let key = key_of(&manifest(), &tensor(1.0));
    cache
        .put(&key, &CachedResult::new(&key, classification(0.9), "onnx"))
        .await;
    assert_eq!(cache.get(&key).await, None);
    assert!(!cache.is_enabled());
}

#[test]
fn the_trouble_log_warns_once_per_interval_and_reason() {
    let log = TroubleLog::new("redis", "bypassed", Duration::from_secs(60));
    assert!(log.trouble("get", "unavailable", &"refused"));
    assert!(!log.trouble("get", "unavailable", &"refused"));
    assert!(!log.trouble("put", "unavailable", &"refused"));
    assert!(log.trouble("get", "timeout", &"slow"), "another reason");
}

fn validate_toml(text: &str) -> Result<CacheConfig, Vec<String>> {
    let raw: RawCacheConfig = toml::from_str(text).unwrap();
    validate(&raw)
}

#[test]
fn the_default_is_a_bounded_memory_cache_for_a_week() {
    let config = validate(&RawCacheConfig::default()).unwrap();
    assert_eq!(
        config.backend,
        CacheBackendConfig::Memory {
            max_entries: 100_000
        }
    );
    assert_eq!(config.ttl, Duration::from_secs(7 * 24 * 3600));
}

#[test]
fn redis_settings_are_typed() {
    let config = validate_toml(
        r#"
        kind = "redis"
        ttl = "1h"
        [redis]
        url = "rediss://cache.example:6380/2"
        username = "gateway"
        password_env = "GW_REDIS_PASSWORD"
        ca_file = "/etc/gateway/redis-ca.pem"
        pool_size = 4
        timeout = "25ms"
        replica_id = "gw-a"
        "#,
    )
    .unwrap();
    let redis = config.redis().unwrap();
    assert!(redis.tls());
    assert_eq!(redis.username.as_deref(), Some("gateway"));
    assert_eq!(
        redis.password,
        Some(RedisPassword::Env("GW_REDIS_PASSWORD".into()))
    );
    assert_eq!(redis.timeout, Duration::from_millis(25));
    assert_eq!(redis.pool_size, 4);
    assert_eq!(config.ttl, Duration::from_secs(3600));
    assert!(!format!("{:?}", RedisPassword::Inline("hunter2".into())).contains("hunter2"));
}

#[test]
fn every_cache_problem_is_reported_at_once() {
    let problems = validate_toml(
        r#"
        kind = "redis"
        ttl = "forever"
        key_prefix = "Bad Prefix"
        [redis]
        url = "redis://:secret@localhost:6379"
        password = "x"
        password_env = "Y"
        ca_file = "ca.pem"
        pool_size = 0
        timeout = "1m"
        replica_id = "Not OK"
        "#,
    )
    .unwrap_err();
    for expected in [
        "cache.ttl",
        "cache.key_prefix",
        "cache.redis.url: must not carry credentials",
        "either password or password_env",
        "cache.redis.ca_file",
        "cache.redis.pool_size",
        "cache.redis.timeout",
        "cache.redis.replica_id",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "missing {expected}: {problems:#?}"
        );
    }
    let problems = validate_toml("kind = \"disk\"").unwrap_err();
    assert!(problems[0].contains("cache.kind"), "{problems:?}");
}

#[test]
fn a_score_read_back_one_f64_ulp_off_is_still_the_engines_value() {
    let key = key_of(&manifest(), &tensor(1.0));
    let value = CachedResult::new(&key, classification(0.7), "onnx");
    let original = value.classification.labels[0].score;
    let mut json: serde_json::Value = serde_json::from_slice(&value::encode(&value)).unwrap();
    let off = f64::from_bits(f64::from(original).to_bits() + 1);
    json["labels"][0]["score"] = serde_json::json!(off);
    let decoded = value::decode(&key, json.to_string().as_bytes()).unwrap();
    assert_eq!(
        decoded.classification.labels[0].score.to_bits(),
        original.to_bits()
    );
}
