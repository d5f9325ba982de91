//! `LoadedModel`: a manifest and the engine running its verified file, and
//! the one place scores meet labels and operating points.

use std::sync::Arc;

use super::InferenceEngine;
use super::config::EngineConfig;
use super::error::EngineError;
use super::limit::EngineStats;
use super::tensor::{Tensor, Tensors};
use crate::models::{Manifest, ModelEntry, ModelFileError, ModelId, Task};

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
    /// Verifies the model file's SHA-256, builds the engine off the async
    /// runtime, and runs the engine's health check; only a model that
    /// passes all three is returned.
    pub async fn load(entry: &ModelEntry, config: &EngineConfig) -> Result<LoadedModel, LoadError> {
        let model = entry.id();
        let entry = entry.clone();
        let config = config.clone();
        let built = tokio::task::spawn_blocking(move || {
            let verified = entry.load_verified().map_err(|source| LoadError::File {
                model: entry.id(),
                source,
            })?;
            config
                .build(&verified)
                .map(|built| (verified, built, config.kind()))
                .map_err(|source| LoadError::Engine {
                    model: entry.id(),
                    source,
                })
        })
        .await
        .map_err(|e| LoadError::Engine {
            model: model.clone(),
            source: EngineError::Internal(format!("model loading task: {e}")),
        })??;
        let (verified, built, engine_kind) = built;
        built
            .healthcheck
            .await
            .map_err(|source| LoadError::Engine {
                model: model.clone(),
                source,
            })?;
        Ok(LoadedModel {
            manifest: Arc::clone(verified.manifest()),
            engine_kind,
            engine: built.engine,
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
