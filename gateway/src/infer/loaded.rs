//! `LoadedModel`: a manifest and the engine running it, and the one place
//! scores meet labels and operating points. Loading picks the engine from
//! the manifest: a `[triton]` section means the Triton server, anything
//! else the configured local engine on the verified file; a dynamic batch
//! axis adds the batching wrapper.

use std::sync::Arc;

use super::InferenceEngine;
use super::batch::{BatchingConfig, BatchingEngine};
use super::config::{BuiltEngine, EngineConfig};
use super::error::EngineError;
use super::limit::EngineStats;
use super::tensor::{Tensor, Tensors};
use super::triton::TritonConfig;
use crate::models::{FileStatus, Manifest, ModelEntry, ModelFileError, ModelId, Task};

/// Everything needed to put any model version into service: the engine for
/// local model files, the server for Triton-served manifests, and dynamic
/// batching. `From<&EngineConfig>` gives the local engine alone (no Triton
/// server, default batching).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// `[pipeline.engine]`: runs manifests without a `[triton]` section.
    pub engine: EngineConfig,
    /// `[pipeline.triton]`: serves manifests with one.
    pub triton: Option<TritonConfig>,
    /// `[pipeline.batching]`: for manifests with a dynamic batch axis.
    pub batching: BatchingConfig,
}

impl From<&EngineConfig> for EngineSettings {
    fn from(engine: &EngineConfig) -> Self {
        EngineSettings::from(engine.clone())
    }
}

impl From<EngineConfig> for EngineSettings {
    fn from(engine: EngineConfig) -> Self {
        EngineSettings {
            engine,
            triton: None,
            batching: BatchingConfig::default(),
        }
    }
}

impl From<&EngineSettings> for EngineSettings {
    fn from(settings: &EngineSettings) -> Self {
        settings.clone()
    }
}

impl EngineSettings {
    /// The Triton server: `[pipeline.triton]`, or the engine itself when
    /// `[pipeline.engine]` is `kind = "triton"`.
    pub fn triton(&self) -> Option<&TritonConfig> {
        match (&self.triton, &self.engine) {
            (Some(triton), _) | (None, EngineConfig::Triton(triton)) => Some(triton),
            (None, _) => None,
        }
    }
}

/// Why a model version could not be put into service.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model {model}: {source}")]
    File {
        model: ModelId,
        #[source]
        source: ModelFileError,
    },
    #[error("model {model}: {source}")]
    Engine {
        model: ModelId,
        #[source]
        source: EngineError,
    },
}

/// A model version in service: its manifest and the engine running it.
#[derive(Clone)]
pub struct LoadedModel {
    manifest: Arc<Manifest>,
    engine_kind: &'static str,
    engine: Arc<dyn InferenceEngine>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("model", &self.manifest.id().to_string())
            .field("engine", &self.engine_kind)
            .finish_non_exhaustive()
    }
}

/// The scores of one classification, label by label.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    pub labels: Vec<LabelScore>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LabelScore {
    /// The output tensor the score came from.
    pub output: String,
    pub label: String,
    pub score: f32,
    /// The operating point from the manifest.
    pub threshold: f32,
    /// `score >= threshold`.
    pub positive: bool,
}

impl Classification {
    pub fn get(&self, label: &str) -> Option<&LabelScore> {
        self.labels.iter().find(|l| l.label == label)
    }

    pub fn positives(&self) -> impl Iterator<Item = &LabelScore> {
        self.labels.iter().filter(|l| l.positive)
    }
}

impl LoadedModel {
    /// Puts `entry` into service: the engine its manifest asks for (see
    /// [`EngineSettings`]), built, health-checked (for Triton: server and
    /// model ready, metadata matching the manifest), and wrapped in dynamic
    /// batching when the manifest has a batch axis and its policy allows
    /// more than one request per call. A local model file runs only if its
    /// SHA-256 is the manifest's.
    pub async fn load(
        entry: &ModelEntry,
        settings: impl Into<EngineSettings>,
    ) -> Result<LoadedModel, LoadError> {
        let settings = settings.into();
        let model = entry.id();
        let engine_error = |source| LoadError::Engine {
            model: model.clone(),
            source,
        };
        let manifest = Arc::clone(entry.manifest());
        let (built, engine_kind, concurrency) = if manifest.triton.is_some() {
            let config = settings.triton().ok_or_else(|| {
                engine_error(EngineError::Load(
                    "its manifest says it is served by Triton ([triton]), and the \
                     configuration has no [pipeline.triton] server"
                        .into(),
                ))
            })?;
            check_deployed_artifact(entry).await?;
            let built = config.build(&manifest).map_err(engine_error)?;
            (built, "triton", config.max_concurrent)
        } else {
            let config = settings.engine.clone();
            let concurrency = config.limits().max_concurrent;
            let (built, kind) = build_local(entry, config).await?;
            (built, kind, concurrency)
        };
        built.healthcheck.await.map_err(engine_error)?;
        let mut engine = built.engine;
        let policy = settings.batching.policy_for(&model);
        if manifest.dynamic_batch && policy.max_batch_size > 1 {
            engine = Arc::new(BatchingEngine::new(engine, policy, concurrency));
        }
        Ok(LoadedModel {
            manifest,
            engine_kind,
            engine,
        })
    }

    /// Pairs a manifest with an engine built elsewhere (tests, custom set-ups).
    pub fn from_engine(
        manifest: Arc<Manifest>,
        engine_kind: &'static str,
        engine: Arc<dyn InferenceEngine>,
    ) -> LoadedModel {
        LoadedModel {
            manifest,
            engine_kind,
            engine,
        }
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    pub fn id(&self) -> ModelId {
        self.manifest.id()
    }

    /// The engine kind, a bounded metric label.
    pub fn engine_kind(&self) -> &'static str {
        self.engine_kind
    }

    pub fn engine(&self) -> &Arc<dyn InferenceEngine> {
        &self.engine
    }

    pub fn stats(&self) -> EngineStats {
        self.engine.stats()
    }

    /// Runs the model on named input tensors.
    pub async fn infer(&self, inputs: Tensors) -> Result<Tensors, EngineError> {
        self.engine.infer(inputs).await
    }

    /// Runs the model on its single input and reads the outputs as one
    /// score per label, each against its operating point.
    pub async fn classify(&self, input: Tensor) -> Result<Classification, EngineError> {
        let outputs = self
            .infer(Tensors::single(self.manifest.input.name.clone(), input))
            .await?;
        self.classification(&outputs)
    }

    /// Reads outputs (as returned by [`Self::infer`]) as a classification.
    pub fn classification(&self, outputs: &Tensors) -> Result<Classification, EngineError> {
        match self.manifest.task {
            Task::Classification => {}
        }
        let mut labels = Vec::new();
        for spec in &self.manifest.outputs {
            let tensor = outputs.get(&spec.tensor.name).ok_or_else(|| {
                EngineError::ManifestMismatch(format!("no output `{}`", spec.tensor.name))
            })?;
            // Validation guarantees one element per label.
            if tensor.len() != spec.labels.len() {
                return Err(EngineError::ManifestMismatch(format!(
                    "output `{}` has {} values for {} labels",
                    spec.tensor.name,
                    tensor.len(),
                    spec.labels.len()
                )));
            }
            for (label, &score) in spec.labels.iter().zip(tensor.iter()) {
                labels.push(LabelScore {
                    output: spec.tensor.name.clone(),
                    label: label.name.clone(),
                    score,
                    threshold: label.threshold,
                    positive: score >= label.threshold,
                });
            }
        }
        Ok(Classification { labels })
    }
}

/// Verifies the file's SHA-256 and builds a local engine off the async
/// runtime (parsing and optimising is CPU-heavy).
async fn build_local(
    entry: &ModelEntry,
    config: EngineConfig,
) -> Result<(BuiltEngine, &'static str), LoadError> {
    let entry = entry.clone();
    let model = entry.id();
    tokio::task::spawn_blocking(move || {
        let verified = entry.load_verified().map_err(|source| LoadError::File {
            model: entry.id(),
            source,
        })?;
        config
            .build(&verified)
            .map(|built| (built, config.kind()))
            .map_err(|source| LoadError::Engine {
                model: entry.id(),
                source,
            })
    })
    .await
    .map_err(|e| LoadError::Engine {
        model,
        source: EngineError::Internal(format!("model loading task: {e}")),
    })?
}

/// A Triton-served version's `model_file` is the artifact deployed on the
/// server, and its `sha256` is declared, not checked by the gateway, which
/// never sees that file. If a copy is in the version folder anyway, it must
/// match: a folder that contradicts its manifest is refused.
async fn check_deployed_artifact(entry: &ModelEntry) -> Result<(), LoadError> {
    let checked = entry.clone();
    let status = tokio::task::spawn_blocking(move || checked.check_file())
        .await
        .map_err(|e| LoadError::Engine {
            model: entry.id(),
            source: EngineError::Internal(format!("model hashing task: {e}")),
        })?;
    let source = match status {
        FileStatus::Ok | FileStatus::Missing => return Ok(()),
        FileStatus::Mismatch { actual } => ModelFileError::Sha256Mismatch {
            path: entry.model_path(),
            expected: entry.manifest().sha256.clone(),
            actual,
        },
        FileStatus::Unreadable(why) => ModelFileError::Unreadable {
            path: entry.model_path(),
            source: std::io::Error::other(why),
        },
    };
    Err(LoadError::File {
        model: entry.id(),
        source,
    })
}
