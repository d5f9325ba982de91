//! Latency and throughput of every model in a repository on the embedded
//! engines, tract (`onnx`) and ONNX Runtime (`onnxruntime`), side by side on
//! identical tensors, through the same path the gateway uses
//! (`LoadedModel::infer`: input checks, concurrency limit, blocking pool).
//!
//! ```text
//! ORT_DYLIB_PATH=.venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1 \
//! cargo run --release -p dicom-gateway --example engine_bench -- \
//!     [--models-dir models] [--iterations 200] [--concurrency 2] \
//!     [--engines onnx,onnxruntime] [--intra-threads 1]
//! ```
//!
//! For each model and engine: load time (SHA-256 check, parse, optimise,
//! warm-up run), then `iterations` sequential requests (latency p50/p95,
//! images/s), then the same number at once through `concurrency` running
//! slots (images/s). The last column is the largest difference between
//! the engine's outputs and the first engine's on the same inputs.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_gateway::infer::{
    EngineConfig, EngineLimits, LoadedModel, OnnxruntimeConfig, Tensor, Tensors,
};
use dicom_gateway::models::{ModelEntry, ModelRepository};

struct Args {
    models_dir: PathBuf,
    iterations: usize,
    concurrency: usize,
    engines: Vec<String>,
    intra_threads: NonZeroUsize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        models_dir: PathBuf::from("models"),
        iterations: 200,
        concurrency: std::thread::available_parallelism().map_or(2, NonZeroUsize::get),
        engines: vec!["onnx".into(), "onnxruntime".into()],
        intra_threads: NonZeroUsize::MIN,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--models-dir" => args.models_dir = PathBuf::from(value()?),
            "--iterations" | "-n" => {
                args.iterations = value()?.parse().map_err(|e| format!("{flag}: {e}"))?
            }
            "--concurrency" | "-c" => {
                args.concurrency = value()?.parse().map_err(|e| format!("{flag}: {e}"))?
            }
            "--engines" => args.engines = value()?.split(',').map(str::to_string).collect(),
            "--intra-threads" => {
                args.intra_threads = value()?.parse().map_err(|e| format!("{flag}: {e}"))?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.iterations == 0 || args.concurrency == 0 {
        return Err("--iterations and --concurrency must be at least 1".into());
    }
    if let Some(bad) = args
        .engines
        .iter()
        .find(|e| !["onnx", "onnxruntime"].contains(&e.as_str()))
    {
        return Err(format!(
            "--engines: unknown engine {bad} (onnx, onnxruntime)"
        ));
    }
    Ok(args)
}

/// The configuration for one engine kind; ONNX Runtime on its CPU provider
/// unless the library is a GPU build (then the default provider order).
fn engine_config(kind: &str, intra_threads: NonZeroUsize) -> EngineConfig {
    match kind {
        "onnxruntime" => EngineConfig::Onnxruntime(OnnxruntimeConfig {
            intra_threads,
            ..OnnxruntimeConfig::default()
        }),
        _ => EngineConfig::onnx(),
    }
}

/// The largest absolute difference between two sets of outputs.
fn max_abs_diff(a: &Tensors, b: &Tensors) -> f32 {
    a.iter()
        .zip(b.iter())
        .flat_map(|((_, x), (_, y))| x.iter().zip(y.iter()).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

/// Deterministic input values in a plausible range for the model (cost
/// does not depend on them, but NaN checks and branches see real numbers).
fn input_for(shape: &[usize], range: (f32, f32), seed: u64) -> Tensor {
    let mut state = seed | 1;
    Tensor::from_shape_fn(ndarray::IxDyn(shape), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        range.0 + (state >> 40) as f32 / (1u64 << 24) as f32 * (range.1 - range.0)
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Measured {
    load: Duration,
    p50: Duration,
    p95: Duration,
    sequential_rate: f64,
    concurrent_rate: f64,
    /// The outputs for each of the shared inputs, for the comparison.
    outputs: Vec<Tensors>,
}

async fn measure(
    entry: &ModelEntry,
    config: &EngineConfig,
    inputs: &[Tensor],
    args: &Args,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let name = entry.manifest().input.name.clone();
    let started = Instant::now();
    let model = LoadedModel::load(entry, config).await?;
    let load = started.elapsed();

    let mut outputs = Vec::with_capacity(inputs.len());
    for input in inputs {
        outputs.push(
            model
                .infer(Tensors::single(name.clone(), input.clone()))
                .await?,
        );
    }

    let mut latencies = Vec::with_capacity(args.iterations);
    let sequential = Instant::now();
    for i in 0..args.iterations {
        let request = Tensors::single(name.clone(), inputs[i % inputs.len()].clone());
        let started = Instant::now();
        model.infer(request).await?;
        latencies.push(started.elapsed());
    }
    let sequential = sequential.elapsed();
    latencies.sort();
    drop(model);

    let limits = EngineLimits {
        max_concurrent: NonZeroUsize::new(args.concurrency).unwrap_or(NonZeroUsize::MIN),
        max_queued: args.iterations,
    };
    let parallel = Arc::new(LoadedModel::load(entry, &config.clone().with_limits(limits)).await?);
    let concurrent = Instant::now();
    let requests = (0..args.iterations).map(|i| {
        let model = Arc::clone(&parallel);
        let request = Tensors::single(name.clone(), inputs[i % inputs.len()].clone());
        async move { model.infer(request).await }
    });
    for result in futures::future::join_all(requests).await {
        result?;
    }
    let concurrent = concurrent.elapsed();

    Ok(Measured {
        load,
        p50: percentile(&latencies, 0.50),
        p95: percentile(&latencies, 0.95),
        sequential_rate: args.iterations as f64 / sequential.as_secs_f64(),
        concurrent_rate: args.iterations as f64 / concurrent.as_secs_f64(),
        outputs,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let repository = ModelRepository::open(&args.models_dir)?;
    println!(
        "engines {}, {} sequential + {} concurrent requests per model, concurrency {}, \
         onnxruntime intra_threads {}, {} cores",
        args.engines.join(" vs "),
        args.iterations,
        args.iterations,
        args.concurrency,
        args.intra_threads,
        std::thread::available_parallelism().map_or(0, NonZeroUsize::get)
    );
    println!(
        "{:<24} {:<12} {:>9} {:>9} {:>9} {:>11} {:>13} {:>10}",
        "MODEL", "ENGINE", "LOAD ms", "p50 ms", "p95 ms", "seq img/s", "conc img/s", "max |d|"
    );
    for entry in repository.entries() {
        let manifest = entry.manifest();
        let range = if manifest.name.starts_with("ct-") {
            (-1000.0, 1000.0)
        } else {
            (0.0, 1.0)
        };
        // One set of tensors per model, shared by every engine.
        let inputs: Vec<Tensor> = (0..8)
            .map(|seed| input_for(&manifest.input.shape, range, seed))
            .collect();
        let mut reference: Option<Vec<Tensors>> = None;
        for kind in &args.engines {
            let config = engine_config(kind, args.intra_threads);
            let measured = measure(entry, &config, &inputs, &args).await?;
            let diff = reference.as_ref().map_or(0.0, |first| {
                first
                    .iter()
                    .zip(&measured.outputs)
                    .map(|(a, b)| max_abs_diff(a, b))
                    .fold(0.0, f32::max)
            });
            println!(
                "{:<24} {:<12} {:>9.1} {:>9.3} {:>9.3} {:>11.1} {:>13.1} {:>10.1e}",
                entry.id().to_string(),
                kind,
                ms(measured.load),
                ms(measured.p50),
                ms(measured.p95),
                measured.sequential_rate,
                measured.concurrent_rate,
                diff,
            );
            reference.get_or_insert(measured.outputs);
        }
    }
    Ok(())
}
