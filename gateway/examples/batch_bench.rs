//! Dynamic batching, measured: throughput and latency of one batch-dynamic
//! model with and without batching, for several numbers of concurrent
//! callers, through the gateway's own path (`LoadedModel`, the engine's
//! concurrency limit, `BatchingEngine`). Optionally the same through the
//! `triton` engine against a KServe v2 server, for remote against embedded.
//!
//! ```text
//! cargo run --release -p dicom-gateway --example batch_bench -- \
//!     [--models-dir models] [--model resnet18-demo@1.1.0] [--engine onnx|onnxruntime] \
//!     [--requests 256] [--callers 1,8,16,32] [--max-batch 8] [--delay 5ms] \
//!     [--slots 1] [--triton-url http://127.0.0.1:8001]
//! ```
//!
//! Each caller sends its next request when the previous one is answered
//! (closed loop), `requests` in all per row. `--slots` is the engine's
//! `max_concurrent` (calls running at once); on the 2-core reference
//! machine tract keeps one core per call. With `--triton-url`, the server
//! must serve the model as `<name>-<version>` (as
//! `tests/python/kserve_onnx_server.py` does).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_gateway::infer::{
    BatchingConfig, BatchingEngine, EngineConfig, EngineLimits, EngineSettings, InferenceEngine,
    LoadedModel, Tensor, Tensors, TritonConfig,
};
use dicom_gateway::models::{MANIFEST_FILE, ModelEntry, ModelRepository};

struct Args {
    models_dir: PathBuf,
    model: String,
    engine: String,
    requests: usize,
    callers: Vec<usize>,
    max_batch: usize,
    delay: Duration,
    slots: NonZeroUsize,
    triton_url: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        models_dir: PathBuf::from("models"),
        model: "resnet18-demo@1.1.0".into(),
        engine: "onnx".into(),
        requests: 256,
        callers: vec![1, 8, 16, 32],
        max_batch: 8,
        delay: Duration::from_millis(5),
        slots: NonZeroUsize::MIN,
        triton_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| text.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--models-dir" => args.models_dir = PathBuf::from(value()?),
            "--model" => args.model = value()?,
            "--engine" => args.engine = value()?,
            "--requests" | "-n" => args.requests = number(value()?)?,
            "--callers" => {
                args.callers = value()?
                    .split(',')
                    .map(|c| c.parse().map_err(|e| format!("--callers: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--max-batch" => args.max_batch = number(value()?)?,
            "--delay" => {
                args.delay =
                    humantime::parse_duration(&value()?).map_err(|e| format!("--delay: {e}"))?
            }
            "--slots" => args.slots = value()?.parse().map_err(|e| format!("--slots: {e}"))?,
            "--triton-url" => args.triton_url = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.requests == 0 || args.callers.contains(&0) || args.max_batch < 2 {
        return Err("--requests and --callers at least 1, --max-batch at least 2".into());
    }
    Ok(args)
}

/// One row: `callers` closed-loop callers sharing `requests` requests.
struct Row {
    throughput: f64,
    p50: Duration,
    p95: Duration,
    mean_batch: Option<f64>,
}

async fn measure(
    engine: Arc<dyn InferenceEngine>,
    input: &Tensor,
    requests: usize,
    callers: usize,
) -> Row {
    let name = engine.inputs()[0].name.clone();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (engine, next, input, name) = (
                Arc::clone(&engine),
                Arc::clone(&next),
                input.clone(),
                name.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                    let sent = Instant::now();
                    engine
                        .infer(Tensors::single(name.clone(), input.clone()))
                        .await
                        .expect("inference");
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("caller task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Row {
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p95: at(0.95),
        mean_batch: None,
    }
}

/// The model's engine without batching, its limit big enough that no
/// caller is refused (the queue is what is measured).
async fn unbatched_engine(
    entry: &ModelEntry,
    settings: &EngineSettings,
) -> Arc<dyn InferenceEngine> {
    let mut settings = settings.clone();
    settings.batching = BatchingConfig::disabled();
    let model = LoadedModel::load(entry, &settings)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Arc::clone(model.engine())
}

async fn bench(label: &str, entry: &ModelEntry, settings: &EngineSettings, args: &Args) {
    let input = Tensor::from_elem(ndarray::IxDyn(&entry.manifest().input.shape), 0.25);
    let inner = unbatched_engine(entry, settings).await;
    for &callers in &args.callers {
        let plain = measure(Arc::clone(&inner), &input, args.requests, callers).await;
        let policy = dicom_gateway::infer::BatchPolicy {
            max_batch_size: args.max_batch,
            max_queue_delay: args.delay,
            max_queued: 1024,
        };
        let batching = Arc::new(BatchingEngine::new(Arc::clone(&inner), policy, args.slots));
        let mut batched = measure(batching.clone(), &input, args.requests, callers).await;
        let stats = batching.batch_stats();
        batched.mean_batch = Some(stats.requests as f64 / stats.batches.max(1) as f64);
        for (mode, row) in [("off", plain), ("on", batched)] {
            println!(
                "{label:<22} {callers:>7} {mode:>8} {:>9.1} {:>9.2} {:>9.2} {:>10}",
                row.throughput,
                row.p50.as_secs_f64() * 1e3,
                row.p95.as_secs_f64() * 1e3,
                row.mean_batch.map_or("-".into(), |b| format!("{b:.1}")),
            );
        }
    }
}

/// A one-version repository copy whose manifest is served by Triton as
/// `<name>-<version>`, version 1.
fn triton_copy(entry: &ModelEntry) -> (tempfile::TempDir, ModelRepository) {
    let root = tempfile::tempdir().expect("temp dir");
    let m = entry.manifest();
    let dir = root.path().join(&m.name).join(m.version.to_string());
    std::fs::create_dir_all(&dir).expect("folder");
    std::fs::copy(entry.model_path(), dir.join(&m.model_file)).expect("model");
    let text = std::fs::read_to_string(entry.dir().join(MANIFEST_FILE)).expect("manifest");
    let text = format!(
        "{text}\n[triton]\nmodel = \"{}-{}\"\nversion = \"1\"\n",
        m.name, m.version
    );
    std::fs::write(dir.join(MANIFEST_FILE), text).expect("manifest");
    let repo = ModelRepository::open(root.path()).expect("repository");
    (root, repo)
}

fn find<'a>(repo: &'a ModelRepository, id: &str) -> &'a ModelEntry {
    repo.entries()
        .iter()
        .find(|e| e.id().to_string() == id)
        .unwrap_or_else(|| panic!("{id} is not in {}", repo.root().display()))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("batch_bench: {e}");
        std::process::exit(64)
    });
    let repo = ModelRepository::open(&args.models_dir).expect("model repository");
    let entry = find(&repo, &args.model);
    assert!(
        entry.manifest().dynamic_batch,
        "{} has no dynamic batch axis",
        args.model
    );
    let limits = EngineLimits {
        max_concurrent: args.slots,
        max_queued: 1024,
    };
    let engine = match args.engine.as_str() {
        "onnx" => EngineConfig::onnx(),
        "onnxruntime" => EngineConfig::onnxruntime(),
        other => panic!("--engine {other}: onnx or onnxruntime"),
    }
    .with_limits(limits);
    println!(
        "{} on {} slot(s), {} requests per row, batching: up to {} per call, {:?} delay",
        args.model, args.slots, args.requests, args.max_batch, args.delay
    );
    println!(
        "{:<22} {:>7} {:>8} {:>9} {:>9} {:>9} {:>10}",
        "engine", "callers", "batching", "img/s", "p50 ms", "p95 ms", "mean batch"
    );
    bench(
        &args.engine,
        entry,
        &EngineSettings::from(engine.clone()),
        &args,
    )
    .await;

    if let Some(url) = &args.triton_url {
        let (_dir, copy) = triton_copy(entry);
        let mut triton = TritonConfig::new(url.clone());
        triton.max_concurrent = args.slots;
        triton.max_queued = 1024;
        triton.timeout = Duration::from_secs(60);
        let settings = EngineSettings {
            engine,
            triton: Some(triton),
            batching: BatchingConfig::default(),
        };
        bench("triton", find(&copy, &args.model), &settings, &args).await;
    }
}
