//! Memory and cost of the drift monitor at the scale issue 6 asks about:
//! 50 sites × 10 scanners × 5 model versions = 2,500 keys, each with its
//! score, acquisition and input-statistics quantities past their baselines,
//! so that every key holds running distributions and PSI gauges.
//!
//! ```sh
//! cargo run --release -p dicom-gateway --example drift_bench
//! ```
//!
//! Prints the monitor's own bytes (from the sizes of what it stores), the
//! resident-set growth of the process (monitor plus its Prometheus series),
//! the persisted size, and the time per `observe`.

use std::time::Instant;

use dicom_gateway::config::DriftConfig;
use dicom_gateway::telemetry::Metrics;
use dicom_gateway::telemetry::drift::{AcquisitionParams, DriftObservation, InputStats};

const SITES: usize = 50;
const SCANNERS: usize = 10;
const MODELS: usize = 5;

/// Resident set size of this process, from /proc (Linux), in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn main() {
    let config = DriftConfig::default();
    let per_key = config.min_observations + 20;
    let sites: Vec<String> = (0..SITES).map(|i| format!("site-{i:02}")).collect();
    let scanners: Vec<String> = (0..SCANNERS).map(|i| format!("vendor_model-{i}")).collect();
    let models: Vec<String> = (0..MODELS).map(|i| format!("model-{i}")).collect();
    let kernels = ["b30f", "b45f", "fc13", "standard", "bone"];

    let rss_before = rss_bytes().unwrap_or(0);
    let metrics = Metrics::with_drift(config.clone());
    let drift = metrics.drift.clone();
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let observe = |site: &str, scanner: &str, model: &str, noise: &mut Noise| {
        let acquisition = AcquisitionParams {
            kvp: Some(if noise.next() < 0.8 { 120.0 } else { 100.0 }),
            slice_thickness: Some(if noise.next() < 0.5 { 1.0 } else { 5.0 }),
            pixel_spacing: Some(0.4 + 0.2 * noise.next()),
            convolution_kernel: Some(kernels[(noise.next() * 5.0) as usize % 5].to_string()),
        };
        let scores = [
            ("finding-a", noise.next() as f32),
            ("finding-b", noise.next() as f32),
        ];
        drift.observe_at(
            &DriftObservation {
                site,
                scanner,
                model,
                version: "1.0.0",
                scores: &scores,
                acquisition: &acquisition,
                input: Some(InputStats {
                    mean: 0.3 + 0.1 * noise.next(),
                    std: 0.2 + 0.05 * noise.next(),
                }),
            },
            0,
        )
    };

    // Baselines: the first `window` observations of each model version.
    for model in &models {
        for _ in 0..config.window {
            observe(&sites[0], &scanners[0], model, &mut noise);
        }
    }
    let started = Instant::now();
    let mut observations = 0_u64;
    for _ in 0..per_key {
        for site in &sites {
            for scanner in &scanners {
                for model in &models {
                    observe(site, scanner, model, &mut noise);
                    observations += 1;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let rss_after = rss_bytes().unwrap_or(0);
    let keys = drift.tracked_keys();
    let rows = drift.rows(None);
    let with_psi = rows.iter().filter(|r| r.psi.is_some()).count();
    let monitor_bytes = drift.estimated_bytes();
    let psi_series = metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("gateway_drift_psi{"))
        .count();
    let persisted = drift.take_dirty();
    let persisted_bytes: usize = persisted.keys.iter().map(|(_, s)| s.len()).sum::<usize>()
        + persisted.models.iter().map(|(_, s)| s.len()).sum::<usize>();

    // Steady-state cost, all keys warm.
    let started = Instant::now();
    let mut steady = 0_u64;
    for site in &sites {
        for scanner in &scanners {
            for model in &models {
                observe(site, scanner, model, &mut noise);
                steady += 1;
            }
        }
    }
    let steady_ns = started.elapsed().as_nanos() as f64 / steady as f64;

    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "keys                      {keys} ({SITES} sites x {SCANNERS} scanners x {MODELS} models)"
    );
    println!(
        "quantities per key        {:.1} ({} rows, {} with PSI)",
        rows.len() as f64 / keys.max(1) as f64,
        rows.len(),
        with_psi
    );
    println!("PSI gauge series          {psi_series}");
    println!(
        "monitor state (sizes)     {:.2} MiB ({:.0} bytes per key)",
        mib(monitor_bytes as f64),
        monitor_bytes as f64 / keys.max(1) as f64
    );
    println!(
        "RSS growth (with metrics) {:.2} MiB ({:.0} bytes per key)",
        mib(rss_after.saturating_sub(rss_before) as f64),
        rss_after.saturating_sub(rss_before) as f64 / keys.max(1) as f64
    );
    println!(
        "persisted state (JSON)    {:.2} MiB ({} key rows, {} model rows)",
        mib(persisted_bytes as f64),
        persisted.keys.len(),
        persisted.models.len()
    );
    println!(
        "observe() while filling   {:.2} us ({observations} observations in {:.2} s)",
        elapsed.as_secs_f64() * 1e6 / observations as f64,
        elapsed.as_secs_f64()
    );
    println!("observe() steady state    {:.2} us", steady_ns / 1000.0);
}
