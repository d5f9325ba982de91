//! Drift monitor behaviour: a new scanner with shifted intensities drifts
//! while the baseline scanner stays stable; alerts once per crossing; bounds.

use std::time::Duration;

use prometheus::Registry;

use super::*;

/// Small, deterministic normal variates (xorshift + Box-Muller).
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self, mean: f64, std: f64) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        mean + std * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// The defaults (window 500, 200 observations before PSI, 10 bins), with
/// persistence out of the way.
fn config() -> DriftConfig {
    DriftConfig {
        persist_interval: Duration::from_secs(3600),
        ..DriftConfig::default()
    }
}

fn monitor(config: DriftConfig) -> (DriftHandle, Registry) {
    let registry = Registry::new();
    (DriftHandle::register(&registry, config), registry)
}

/// One CT series through the head model: intensities around `mean`.
fn observe(
    drift: &DriftHandle,
    noise: &mut Noise,
    site: &str,
    scanner: &str,
    mean: f64,
    kernel: &str,
) -> DriftOutcome {
    let input_mean = noise.normal(mean, 0.05);
    let score = (noise.normal(0.2, 0.1) + (mean - 0.3)).clamp(0.0, 1.0) as f32;
    let acquisition = AcquisitionParams {
        kvp: Some(120.0),
        slice_thickness: Some(if noise.uniform() < 0.5 { 1.0 } else { 5.0 }),
        pixel_spacing: Some(noise.normal(0.45, 0.03)),
        convolution_kernel: Some(kernel.to_string()),
    };
    drift.observe_at(
        &DriftObservation {
            site,
            scanner,
            model: "ct-hyperdensity",
            version: "2.0.0",
            scores: &[("hyperdensity", score)],
            acquisition: &acquisition,
            input: Some(InputStats {
                mean: input_mean,
                std: noise.normal(0.2, 0.02).abs(),
            }),
        },
        0,
    )
}

fn psi_of(drift: &DriftHandle, scanner: &str, quantity: &str) -> f64 {
    drift
        .rows(None)
        .into_iter()
        .find(|r| r.scanner == scanner && r.quantity == quantity)
        .and_then(|r| r.psi)
        .unwrap_or_else(|| panic!("no PSI for {scanner} {quantity}"))
}

#[test]
fn a_new_scanner_with_shifted_intensities_drifts_while_the_baseline_scanner_stays_stable() {
    // Several seeds, so that passing is not the luck of one noise sequence.
    for seed in [0x5eed, 1, 2, 3, 4, 5, 6, 7] {
        new_scanner_drifts(seed);
    }
}

fn new_scanner_drifts(seed: u64) {
    let (drift, registry) = monitor(config());
    let mut noise = Noise(seed);
    let mut events = Vec::new();
    // The first 500 observations (all from the known scanner) freeze the
    // baseline; 500 more fill its current distribution.
    for _ in 0..1000 {
        events.extend(observe(&drift, &mut noise, "north", "siemens_a", 0.3, "b30f").events);
    }
    assert!(
        events.is_empty(),
        "the baseline scanner alerted: {events:?}"
    );
    // A new scanner arrives with brighter images (and a new kernel).
    for _ in 0..300 {
        events.extend(observe(&drift, &mut noise, "north", "ge_new", 0.45, "standard").events);
        events.extend(observe(&drift, &mut noise, "north", "siemens_a", 0.3, "b30f").events);
    }
    for quantity in ["input_mean", "score:hyperdensity", "convolution_kernel"] {
        let new = psi_of(&drift, "ge_new", quantity);
        let old = psi_of(&drift, "siemens_a", quantity);
        assert!(new > 0.2, "{quantity}: new scanner PSI {new}");
        assert!(old < 0.1, "{quantity}: baseline scanner PSI {old}");
    }
    for quantity in ["kvp", "slice_thickness", "pixel_spacing", "input_std"] {
        let new = psi_of(&drift, "ge_new", quantity);
        assert!(new < 0.2, "{quantity} did not change but PSI is {new}");
    }
    // One alert per drifting quantity, all for the new scanner.
    let crossed: Vec<&DriftEvent> = events
        .iter()
        .filter(|e| e.kind == DriftEventKind::ThresholdCrossed)
        .collect();
    assert_eq!(crossed.len(), 3, "{crossed:#?}");
    assert!(crossed.iter().all(|e| e.key.scanner == "ge_new"));
    let entry = crossed[0].audit_entry();
    assert_eq!(entry.actor, "system:drift");
    assert_eq!(entry.action, "drift.threshold_crossed");
    assert_eq!(entry.detail["scanner"], "ge_new");

    let text = render(&registry);
    assert!(text.contains(
        "gateway_drift_psi{model=\"ct-hyperdensity\",quantity=\"input_mean\",scanner=\"ge_new\",site=\"north\",version=\"2.0.0\"}"
    ), "{text}");
    assert!(text.contains("gateway_drift_alerts_total{model=\"ct-hyperdensity\",quantity=\"input_mean\",scanner=\"ge_new\""));
    assert!(text.contains("gateway_drift_psi_threshold 0.2"));
}

#[test]
fn alerts_once_per_crossing_and_again_after_recovery() {
    let (drift, _) = monitor(config());
    let mut noise = Noise(7);
    let count = |events: &[DriftEvent], kind| {
        events
            .iter()
            .filter(|e| e.kind == kind && e.quantity == "input_mean")
            .count()
    };
    let mut events = Vec::new();
    for _ in 0..1000 {
        events.extend(observe(&drift, &mut noise, "s", "x", 0.3, "k").events);
    }
    for _ in 0..600 {
        events.extend(observe(&drift, &mut noise, "s", "x", 0.5, "k").events);
    }
    assert_eq!(count(&events, DriftEventKind::ThresholdCrossed), 1);
    for _ in 0..3000 {
        events.extend(observe(&drift, &mut noise, "s", "x", 0.3, "k").events);
    }
    assert_eq!(count(&events, DriftEventKind::Recovered), 1, "{events:#?}");
    for _ in 0..600 {
        events.extend(observe(&drift, &mut noise, "s", "x", 0.5, "k").events);
    }
    assert_eq!(count(&events, DriftEventKind::ThresholdCrossed), 2);
}

#[test]
fn memory_stays_bounded_under_many_keys() {
    let (drift, registry) = monitor(DriftConfig {
        max_tracked: 100,
        min_observations: 1,
        window: 10,
        ..config()
    });
    let mut noise = Noise(99);
    for i in 0..5_000 {
        let site = format!("site-{}", i % 50);
        let scanner = format!("scanner-{i}");
        observe(&drift, &mut noise, &site, &scanner, 0.3, "k");
    }
    assert_eq!(drift.tracked_keys(), 100);
    let text = render(&registry);
    assert!(
        text.contains("gateway_drift_evicted_keys_total 4900"),
        "{text}"
    );
    assert!(text.contains("gateway_drift_tracked_keys 100"));
    let series = text
        .lines()
        .filter(|l| l.starts_with("gateway_drift_psi{"))
        .count();
    assert!(series <= 100 * 8, "{series} PSI series for 100 keys");
    let observation_series = text
        .lines()
        .filter(|l| l.starts_with("gateway_drift_observations_total{"))
        .count();
    assert_eq!(observation_series, 100);
    // Many labels or kernels per key stay bounded too.
    let acquisition = AcquisitionParams::default();
    for i in 0..200 {
        let label = format!("label-{i}");
        let kernel = AcquisitionParams {
            convolution_kernel: Some(format!("k{i}")),
            ..acquisition.clone()
        };
        drift.observe_at(
            &DriftObservation {
                site: "s",
                scanner: "x",
                model: "many",
                version: "1.0.0",
                scores: &[(&label, 0.5)],
                acquisition: &kernel,
                input: None,
            },
            0,
        );
    }
    let quantities = drift
        .rows(None)
        .into_iter()
        .filter(|r| r.model == "many")
        .count();
    assert!(quantities <= MAX_SCORE_LABELS + 1, "{quantities}");
}

#[test]
fn manifest_baselines_are_used_and_manifest_mode_watches_only_them() {
    let (drift, _) = monitor(DriftConfig {
        baseline: BaselineMode::Manifest,
        ..config()
    });
    drift.register_manifest_baseline(
        "ct-hyperdensity",
        "2.0.0",
        &ManifestBaseline {
            quantities: vec![QuantityBaseline {
                quantity: Quantity::InputMean,
                layout: Layout::Edges(vec![0.2, 0.3, 0.4]),
                shares: vec![0.023, 0.477, 0.477, 0.023],
            }],
        },
    );
    let mut noise = Noise(3);
    for _ in 0..300 {
        observe(&drift, &mut noise, "s", "x", 0.3, "k");
    }
    let rows = drift.rows(None);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].quantity, "input_mean");
    assert_eq!(rows[0].baseline, "manifest");
    assert!(rows[0].psi.unwrap() < 0.2, "{rows:?}");
}

#[test]
fn state_and_alerts_are_written_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = crate::app::schema::open_index(&dir.path().join("index.sqlite")).unwrap();
    let (drift, _) = monitor(DriftConfig {
        persist_interval: Duration::from_millis(1),
        ..config()
    });
    let mut noise = Noise(11);
    let mut wrote_events = Vec::new();
    for i in 0..1200 {
        let (scanner, mean) = if i < 900 { ("a", 0.3) } else { ("b", 0.5) };
        let outcome = drift.observe_at(
            &DriftObservation {
                site: "s",
                scanner,
                model: "m",
                version: "1.0.0",
                scores: &[],
                acquisition: &AcquisitionParams::default(),
                input: Some(InputStats {
                    mean: noise.normal(mean, 0.05),
                    std: 0.1,
                }),
            },
            i * 10,
        );
        wrote_events.extend(outcome.events.clone());
        outcome.write(&mut conn).unwrap();
    }
    assert_eq!(wrote_events.len(), 1, "{wrote_events:#?}");
    let audited: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE actor = 'system:drift' AND action = 'drift.threshold_crossed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, 1);
    assert!(crate::audit::verify(&conn).unwrap().is_ok());

    let (restored, _) = monitor(config());
    assert_eq!(restored.restore(&conn).unwrap(), 2);
    assert_eq!(restored.rows(None), drift.rows(None));
    // A fresh database has nothing to restore.
    let empty = rusqlite::Connection::open_in_memory().unwrap();
    assert_eq!(restored.restore(&empty).unwrap(), 2);
}

#[test]
fn a_disabled_monitor_keeps_nothing() {
    let (drift, _) = monitor(DriftConfig {
        enabled: false,
        ..config()
    });
    let mut noise = Noise(5);
    for _ in 0..300 {
        assert!(observe(&drift, &mut noise, "s", "x", 0.3, "k").is_empty());
    }
    assert_eq!(drift.tracked_keys(), 0);
}

fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}
