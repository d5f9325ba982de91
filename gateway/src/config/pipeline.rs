//! The `[pipeline]` section: models, routes, assembly and job runners.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::Problems;
use crate::infer::{
    BatchingConfig, CircuitConfig, CircuitPolicy, EngineConfig, EngineSettings, TritonConfig,
};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawPipeline {
    pub enabled: bool,
    pub models_dir: String,
    /// Empty: the routes compiled into the binary (`config/routes.toml`).
    pub routes_file: String,
    pub routes_reload_interval: String,
    pub stable_time: String,
    pub workers: usize,
    pub max_attempts: u32,
    pub retry_delay: String,
    pub uid_root: String,
    /// Default longest time one model may take on one job before the
    /// route's next step runs (a route's own `timeout` overrides it).
    pub attempt_timeout: String,
    /// How often loaded model versions are health-checked (for Triton,
    /// ModelReady), so a route reports a dropped model before a series
    /// fails on it.
    pub health_interval: String,
    pub engine: EngineConfig,
    /// When an engine's breaker opens and how it recovers.
    pub circuit: CircuitConfig,
    /// The Triton server for manifests with a `[triton]` section.
    pub triton: Option<TritonConfig>,
    pub batching: BatchingConfig,
}

impl Default for RawPipeline {
    fn default() -> Self {
        Self {
            enabled: true,
            models_dir: "models".into(),
            routes_file: String::new(),
            routes_reload_interval: "2s".into(),
            stable_time: "5s".into(),
            workers: 2,
            max_attempts: 3,
            retry_delay: "5s".into(),
            uid_root: DEFAULT_UID_ROOT.into(),
            attempt_timeout: "30s".into(),
            health_interval: "15s".into(),
            engine: EngineConfig::onnx(),
            circuit: CircuitConfig::default(),
            triton: None,
            batching: BatchingConfig::default(),
        }
    }
}

/// The validated `[pipeline]` section.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub enabled: bool,
    pub models_dir: PathBuf,
    pub routes_file: Option<PathBuf>,
    pub routes_reload_interval: Duration,
    pub stable_time: Duration,
    pub workers: usize,
    pub max_attempts: u32,
    pub retry_delay: Duration,
    pub uid_root: String,
    pub attempt_timeout: Duration,
    pub health_interval: Duration,
    pub engine: EngineConfig,
    pub circuit: CircuitPolicy,
    pub triton: Option<TritonConfig>,
    pub batching: BatchingConfig,
}

impl PipelineConfig {
    /// What `LoadedModel::load` needs to serve any model version: the local
    /// engine, the Triton server and the batching policy.
    pub fn engine_settings(&self) -> EngineSettings {
        EngineSettings {
            engine: self.engine.clone(),
            triton: self.triton.clone(),
            batching: self.batching.clone(),
        }
    }
}

/// Result UIDs are `<root>.<decimal hash>`; this default (a 2.25 root
/// drawn once for this product) keeps 28 digits of hash. Sites should set
/// their organisation's own root.
pub const DEFAULT_UID_ROOT: &str = "2.25.2236158483771461863985";

/// Longest UID root that leaves room for the derived part of result UIDs.
const MAX_UID_ROOT: usize = 43;

pub(super) fn validate_pipeline(raw: &RawPipeline, p: &mut Problems) -> PipelineConfig {
    if raw.workers == 0 {
        p.push("pipeline.workers: must be at least 1".into());
    }
    if raw.max_attempts == 0 {
        p.push("pipeline.max_attempts: must be at least 1".into());
    }
    if raw.models_dir.trim().is_empty() {
        p.push("pipeline.models_dir: must not be empty".into());
    }
    let root = raw.uid_root.trim();
    if let Err(e) = crate::store::uid::validate_uid(root) {
        p.push(format!(
            "pipeline.uid_root: `{root}` is not a valid UID: {e}"
        ));
    } else if root.len() > MAX_UID_ROOT {
        p.push(format!(
            "pipeline.uid_root: {} characters; at most {MAX_UID_ROOT}, so result UIDs fit in 64",
            root.len()
        ));
    }
    if let Some(triton) = &raw.triton {
        for problem in triton.problems() {
            p.push(format!("pipeline.triton: {problem}"));
        }
    }
    if let EngineConfig::Triton(triton) = &raw.engine {
        for problem in triton.problems() {
            p.push(format!("pipeline.engine: {problem}"));
        }
    }
    for problem in raw.batching.problems() {
        p.push(format!("pipeline.batching.{problem}"));
    }
    let health_interval = p.duration("pipeline.health_interval", &raw.health_interval);
    if health_interval < Duration::from_secs(1) {
        p.push(format!(
            "pipeline.health_interval: `{}` is too short; at least 1s",
            raw.health_interval
        ));
    }
    PipelineConfig {
        enabled: raw.enabled,
        models_dir: PathBuf::from(&raw.models_dir),
        routes_file: (!raw.routes_file.trim().is_empty()).then(|| PathBuf::from(&raw.routes_file)),
        routes_reload_interval: p.duration(
            "pipeline.routes_reload_interval",
            &raw.routes_reload_interval,
        ),
        stable_time: p.duration("pipeline.stable_time", &raw.stable_time),
        workers: raw.workers.max(1),
        max_attempts: raw.max_attempts.max(1),
        retry_delay: p.duration("pipeline.retry_delay", &raw.retry_delay),
        uid_root: root.to_string(),
        attempt_timeout: p.duration("pipeline.attempt_timeout", &raw.attempt_timeout),
        health_interval,
        engine: raw.engine.clone(),
        circuit: raw
            .circuit
            .validate("pipeline.circuit")
            .unwrap_or_else(|problems| {
                for problem in problems {
                    p.push(problem);
                }
                CircuitPolicy::default()
            }),
        triton: raw.triton.clone(),
        batching: raw.batching.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{CliOverrides, EMBEDDED_DEFAULT, load_from_str};
    use crate::infer::EngineConfig;

    fn load(extra: &str) -> Result<crate::config::GatewayConfig, Vec<String>> {
        let text = format!("{EMBEDDED_DEFAULT}\n{extra}");
        load_from_str(
            &text,
            Vec::<(String, String)>::new(),
            &CliOverrides::default(),
        )
        .map_err(|e| e.0)
    }

    #[test]
    fn triton_server_and_batching_are_read_into_the_engine_settings() {
        let config = load(
            "[pipeline.triton]\nurl = \"http://triton:8001\"\ntimeout = \"750ms\"\n\
             [pipeline.batching.models.\"resnet18-demo\"]\nmax_batch_size = 16\n",
        )
        .unwrap();
        let settings = config.pipeline.engine_settings();
        assert_eq!(
            settings.engine,
            EngineConfig::onnx().with_limits(settings.engine.limits())
        );
        let triton = settings.triton().expect("a triton server");
        assert_eq!(triton.timeout, Duration::from_millis(750));
        let id = crate::models::ModelId {
            name: "resnet18-demo".into(),
            version: "1.1.0".parse().unwrap(),
        };
        let policy = settings.batching.policy_for(&id);
        assert_eq!(policy.max_batch_size, 16);
        assert_eq!(policy.max_queue_delay, Duration::from_millis(5));
        // The effective configuration renders and reads back the same.
        let rendered = config.to_toml();
        assert!(rendered.contains("max_queue_delay = \"5ms\""), "{rendered}");
        assert!(rendered.contains("timeout = \"750ms\""), "{rendered}");
        assert!(
            load_from_str(
                &rendered,
                Vec::<(String, String)>::new(),
                &CliOverrides::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn bad_triton_and_batching_keys_are_all_reported() {
        let problems = load(
            "[pipeline.triton]\nurl = \"triton:8001\"\ntls_domain = \"t\"\n\
             [pipeline.batching.models.\"resnet18-demo\"]\nmax_batch_size = 1000\n",
        )
        .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(
            problems.iter().all(|p| p.starts_with("pipeline.")),
            "{problems:#?}"
        );
        let unknown = load("[pipeline.triton]\nurl = \"http://t:1\"\nretries = 2\n").unwrap_err();
        assert!(
            unknown.iter().any(|p| p.contains("retries")),
            "{unknown:#?}"
        );
    }
}
