//! Latency and throughput of every model in a repository on the embedded
//! ONNX (tract) engine, through the same path the gateway uses
//! (`LoadedModel::infer`: input checks, concurrency limit, blocking pool).
//!
//! ```text
//! cargo run --release -p dicom-gateway --example engine_bench -- \
//!     [--models-dir models] [--iterations 200] [--concurrency 2]
//! ```
//!
//! For each model: load time (SHA-256 check, parse, optimise, warm-up run),
//! then `iterations` sequential requests (latency p50/p99, images/s), then
//! the same number at once through `concurrency` running slots (images/s).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_gateway::infer::{EngineConfig, EngineLimits, LoadedModel, Tensor, Tensors};
use dicom_gateway::models::ModelRepository;

struct Args {
    models_dir: PathBuf,
    iterations: usize,
    concurrency: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        models_dir: PathBuf::from("models"),
        iterations: 200,
        concurrency: std::thread::available_parallelism().map_or(2, NonZeroUsize::get),
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
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.iterations == 0 || args.concurrency == 0 {
        return Err("--iterations and --concurrency must be at least 1".into());
    }
    Ok(args)
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let repository = ModelRepository::open(&args.models_dir)?;
    println!(
        "engine onnx (tract), {} sequential + {} concurrent requests per model, concurrency {}, {} cores",
        args.iterations,
        args.iterations,
        args.concurrency,
        std::thread::available_parallelism().map_or(0, NonZeroUsize::get)
    );
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>9} {:>11} {:>13}",
        "MODEL", "LOAD ms", "p50 ms", "p99 ms", "mean ms", "seq img/s", "conc img/s"
    );
    for entry in repository.entries() {
        let manifest = entry.manifest();
        let range = if manifest.name.starts_with("ct-") {
            (-1000.0, 1000.0)
        } else {
            (0.0, 1.0)
        };
        let shape = manifest.input.shape.clone();
        let name = manifest.input.name.clone();
        let inputs: Vec<Tensor> = (0..8).map(|seed| input_for(&shape, range, seed)).collect();

        let started = Instant::now();
        let model = LoadedModel::load(entry, &EngineConfig::onnx()).await?;
        let load = started.elapsed();

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
        let mean = sequential / args.iterations as u32;

        let limits = EngineLimits {
            max_concurrent: NonZeroUsize::new(args.concurrency).unwrap_or(NonZeroUsize::MIN),
            max_queued: args.iterations,
        };
        let parallel =
            Arc::new(LoadedModel::load(entry, &EngineConfig::onnx().with_limits(limits)).await?);
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

        println!(
            "{:<24} {:>9.1} {:>9.3} {:>9.3} {:>9.3} {:>11.1} {:>13.1}",
            entry.id().to_string(),
            ms(load),
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
            ms(mean),
            args.iterations as f64 / sequential.as_secs_f64(),
            args.iterations as f64 / concurrent.as_secs_f64(),
        );
    }
    Ok(())
}
