//! What a result cache lookup costs, through the path the job runner uses
//! (`ResultCache::get`/`put`: key text, deadline, pool, JSON decode and
//! checks, metrics), for the Redis and the in-process backend, plus the
//! cost of deriving a key from an input tensor.
//!
//! ```text
//! cargo run --release -p dicom-gateway --example cache_bench -- \
//!     [--url redis://127.0.0.1:6379] [--ops 2000] [--concurrency 8]
//! ```
//!
//! Without `--url` it starts its own `redis-server` on a free loopback port
//! (no persistence) and stops it at the end. For each backend: `ops`
//! sequential puts, hits and misses (latency p50/p95/p99), then `ops` hits
//! from `concurrency` tasks at once (lookups/s). For Redis it also times a
//! bare GET on one multiplexed connection, to show what the pool's checkout
//! (deadpool recycles a connection with a PING) adds to a round trip.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_gateway::cache::{
    CacheConfig, CacheKey, CachedResult, InputDigest, ModelFingerprint, RedisConfig, ResultCache,
};
use dicom_gateway::infer::{Classification, LabelScore, Tensor};
use dicom_gateway::models::Manifest;

struct Args {
    url: Option<String>,
    ops: usize,
    concurrency: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: None,
        ops: 2000,
        concurrency: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = Some(value()?),
            "--ops" | "-n" => args.ops = value()?.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--concurrency" | "-c" => {
                args.concurrency = value()?.parse().map_err(|e| format!("{flag}: {e}"))?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// A redis-server of our own, killed on drop.
struct OwnRedis {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis() -> Result<(OwnRedis, String), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--protected-mode", "no"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server: {e}"))?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((OwnRedis { child, _dir: dir }, format!("redis://{addr}")))
}

fn manifest() -> Manifest {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/ct-hyperdensity/2.0.0/manifest.toml"
    );
    let text = std::fs::read_to_string(path).expect("demo manifest");
    Manifest::from_toml(&text).expect("valid manifest")
}

/// `n` distinct keys of the CT demo model.
fn keys(manifest: &Manifest, n: usize, offset: usize) -> Vec<CacheKey> {
    let fingerprint = ModelFingerprint::of(manifest);
    (0..n)
        .map(|i| {
            let tensor = Tensor::from_elem(vec![1, 4], (i + offset) as f32);
            fingerprint.key(&InputDigest::of_tensor("image", &tensor))
        })
        .collect()
}

fn result(key: &CacheKey) -> CachedResult {
    let classification = Classification {
        labels: vec![LabelScore {
            output: "score".into(),
            label: "hyperdensity".into(),
            score: 0.731_058_6,
            threshold: 0.5,
            positive: true,
        }],
    };
    CachedResult::new(key, classification, "onnx")
}

/// p50/p95/p99 and mean of `samples`, in microseconds.
fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len().max(1) as u32;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "  {name:<28} n={:<6} p50 {:>8.1} µs  p95 {:>8.1} µs  p99 {:>8.1} µs  mean {:>8.1} µs",
        samples.len(),
        us(at(0.50)),
        us(at(0.95)),
        us(at(0.99)),
        us(mean)
    );
}

async fn time_each<F, Fut>(keys: &[CacheKey], mut op: F) -> Vec<Duration>
where
    F: FnMut(CacheKey) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut samples = Vec::with_capacity(keys.len());
    for key in keys {
        let started = Instant::now();
        let ok = op(key.clone()).await;
        samples.push(started.elapsed());
        assert!(ok, "unexpected cache answer during the benchmark");
    }
    samples
}

async fn bench_backend(name: &str, cache: &ResultCache, manifest: &Manifest, args: &Args) {
    println!("{name}:");
    let stored = keys(manifest, args.ops, 0);
    let absent = keys(manifest, args.ops, 10 * args.ops);
    let puts = time_each(&stored, |k| async move {
        cache.put(&k, &result(&k)).await;
        true
    })
    .await;
    summary("put", puts);
    let hits = time_each(&stored, |k| async move { cache.get(&k).await.is_some() }).await;
    summary("get (hit)", hits);
    let misses = time_each(&absent, |k| async move { cache.get(&k).await.is_none() }).await;
    summary("get (miss)", misses);

    let started = Instant::now();
    let per_task = args.ops / args.concurrency.max(1);
    let tasks: Vec<_> = (0..args.concurrency.max(1))
        .map(|t| {
            let cache = cache.clone();
            let mine = stored[t * per_task..(t + 1) * per_task].to_vec();
            tokio::spawn(async move {
                for key in mine {
                    assert!(cache.get(&key).await.is_some());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("lookup task");
    }
    let total = per_task * args.concurrency.max(1);
    println!(
        "  {} hits from {} tasks at once: {:.0} lookups/s",
        total,
        args.concurrency,
        total as f64 / started.elapsed().as_secs_f64()
    );
}

/// A bare GET on one multiplexed connection: the network and Redis alone.
async fn bench_bare_get(url: &str, key: &CacheKey, ops: usize) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let text = key.text("dgw");
    let mut samples = Vec::with_capacity(ops);
    for _ in 0..ops {
        let started = Instant::now();
        let value: Option<Vec<u8>> = redis::cmd("GET").arg(&text).query_async(&mut conn).await?;
        samples.push(started.elapsed());
        assert!(value.is_some());
    }
    summary("bare GET, one connection", samples);
    Ok(())
}

fn bench_keys(manifest: &Manifest) {
    println!("key derivation (SHA-256 over the input tensor):");
    let fingerprint = ModelFingerprint::of(manifest);
    for side in [256usize, 512] {
        let tensor = Tensor::from_shape_fn(ndarray::IxDyn(&[1, 1, side, side]), |i| {
            (i[2] * side + i[3]) as f32 * 0.5
        });
        let samples = (0..50)
            .map(|_| {
                let started = Instant::now();
                let key = fingerprint.key(&InputDigest::of_tensor("image", &tensor));
                std::hint::black_box(key);
                started.elapsed()
            })
            .collect();
        summary(&format!("1x1x{side}x{side} f32"), samples);
    }
    let started = Instant::now();
    for _ in 0..1000 {
        std::hint::black_box(ModelFingerprint::of(manifest));
    }
    println!(
        "  model fingerprint (once per job): {:.1} µs",
        started.elapsed().as_secs_f64() * 1e6 / 1000.0
    );
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse_args()?;
    let manifest = manifest();
    let (own, url) = match &args.url {
        Some(url) => (None, url.clone()),
        None => {
            let (own, url) = start_redis()?;
            (Some(own), url)
        }
    };
    println!(
        "cache_bench: {} ops, {} concurrent tasks, redis at {url}\n",
        args.ops, args.concurrency
    );
    bench_keys(&manifest);

    let mut redis = RedisConfig::new(url.clone());
    redis.timeout = Duration::from_millis(200);
    let config = CacheConfig {
        backend: dicom_gateway::cache::CacheBackendConfig::Redis(redis),
        ttl: Duration::from_secs(600),
        key_prefix: "dgw".into(),
    };
    let cache =
        ResultCache::build(&config, &prometheus::Registry::new()).map_err(|e| e.to_string())?;
    bench_backend(
        "redis (ResultCache: pool checkout + GET + decode)",
        &cache,
        &manifest,
        &args,
    )
    .await;
    let first = keys(&manifest, 1, 0).remove(0);
    bench_bare_get(&url, &first, args.ops)
        .await
        .map_err(|e| e.to_string())?;

    let memory = ResultCache::build(
        &CacheConfig::memory(100_000, Duration::from_secs(600)),
        &prometheus::Registry::new(),
    )
    .map_err(|e| e.to_string())?;
    println!();
    bench_backend("memory (moka)", &memory, &manifest, &args).await;
    drop(own);
    Ok(())
}
