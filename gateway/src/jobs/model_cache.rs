//! `ModelCache`: the runners' cache of loaded model versions (hash
//! verified, engine built and health-checked) on first use, then kept, and
//! swapped for a rescanned repository on reload. Every load and unload is
//! audited, so the trail says which file served when.
//!
//! It lives in `jobs`, not `models/` or `cache/`: `models/` is the
//! repository on disk and sits below `infer` (which this builds engines
//! with), and `cache/` is the result cache keyed by input tensor. This is
//! what the attempt chain loads models from, what `model_health` probes,
//! and what `app::Control` lists and reloads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;
use tokio::sync::{Mutex, OnceCell};

use super::model_health::{HealthBook, HealthState, ModelHealth, Probe};
use crate::audit::{self, AuditEntry};
use crate::infer::{EngineError, EngineSettings, LoadError, LoadedModel};
use crate::models::{ModelId, ModelRepository};

/// Why a route's model cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ModelUnavailable {
    #[error("model {0} is not in the repository")]
    NotInRepository(ModelId),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// A model version in service, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedSummary {
    pub model: String,
    pub version: String,
    pub engine: &'static str,
    pub sha256: String,
}

pub struct ModelCache {
    /// Replaced whole by a reload; readers clone the `Arc`.
    repository: RwLock<Arc<ModelRepository>>,
    /// The local engine, the Triton server and the batching policy.
    engine: EngineSettings,
    /// One cell per version: a load holds only its own cell, so jobs on
    /// other models go on while a new version loads (a pin or promote
    /// loads before traffic moves).
    loaded: Mutex<HashMap<ModelId, Arc<OnceCell<LoadedModel>>>>,
    /// Last load failure or probe per version, for route views.
    health: HealthBook,
    /// The index database the audit trail lives in; `None` in unit tests.
    audit_db: Option<PathBuf>,
}

impl ModelCache {
    pub fn new(repository: Arc<ModelRepository>, engine: impl Into<EngineSettings>) -> Self {
        Self {
            repository: RwLock::new(repository),
            engine: engine.into(),
            loaded: Mutex::new(HashMap::new()),
            health: HealthBook::default(),
            audit_db: None,
        }
    }

    /// Records model loads and unloads in the audit trail of this index.
    pub fn with_audit(mut self, index_path: PathBuf) -> Self {
        self.audit_db = Some(index_path);
        self
    }

    /// The repository in force (a reload may replace it).
    pub fn repository(&self) -> Arc<ModelRepository> {
        Arc::clone(
            &self
                .repository
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// What models are built with: local engine, Triton, batching.
    pub fn engine_settings(&self) -> &EngineSettings {
        &self.engine
    }

    /// The model in service, loading it if needed. Two jobs needing the
    /// same new version load it once; a failed load is tried again by the
    /// next caller, and is what the version's health says until then.
    pub async fn get(&self, id: &ModelId) -> Result<LoadedModel, ModelUnavailable> {
        let cell = Arc::clone(self.loaded.lock().await.entry(id.clone()).or_default());
        let loaded = cell.get_or_try_init(|| self.load(id)).await.cloned();
        if let Err(e) = &loaded {
            let was = self
                .health
                .record(id, HealthState::Unavailable, Some(e.to_string()));
            if was != HealthState::Unavailable {
                tracing::warn!(model = %id, error = %e, "model unavailable");
            }
        }
        loaded
    }

    /// What is known of a version's ability to serve: its last load
    /// failure, or its last health probe since it loaded.
    pub fn health(&self, id: &ModelId) -> ModelHealth {
        self.health.get(id)
    }

    /// Runs every loaded version's health check (each within `timeout`, all
    /// at once) and records the results.
    pub async fn probe_loaded(&self, timeout: std::time::Duration) -> Vec<Probe> {
        let loaded: Vec<LoadedModel> = self
            .loaded
            .lock()
            .await
            .values()
            .filter_map(|cell| cell.get().cloned())
            .collect();
        let checks = loaded.iter().map(|model| async move {
            let result = match tokio::time::timeout(timeout, model.engine().health()).await {
                Ok(result) => result,
                Err(_) => Err(EngineError::DeadlineExceeded(timeout)),
            };
            let id = model.id();
            let (state, detail) = match &result {
                Ok(()) => (HealthState::Ready, None),
                Err(e) => (HealthState::NotReady, Some(e.to_string())),
            };
            let was = self.health.record(&id, state, detail);
            Probe {
                model: id,
                engine: model.engine_kind(),
                result,
                was,
            }
        });
        futures::future::join_all(checks).await
    }

    async fn load(&self, id: &ModelId) -> Result<LoadedModel, ModelUnavailable> {
        let repository = self.repository();
        let entry = repository
            .get(&id.name, id.version)
            .ok_or_else(|| ModelUnavailable::NotInRepository(id.clone()))?;
        let model = LoadedModel::load(entry, &self.engine).await?;
        self.health.record(id, HealthState::Ready, None);
        tracing::info!(model = %id, engine = model.engine_kind(), sha256 = %model.manifest().sha256, "model loaded");
        self.audit("model.loaded", &model).await;
        Ok(model)
    }

    /// The versions in service now.
    pub async fn loaded(&self) -> Vec<LoadedSummary> {
        let mut list: Vec<LoadedSummary> = self
            .loaded
            .lock()
            .await
            .values()
            .filter_map(|cell| cell.get())
            .map(|m| LoadedSummary {
                model: m.id().name,
                version: m.id().version.to_string(),
                engine: m.engine_kind(),
                sha256: m.manifest().sha256.clone(),
            })
            .collect();
        list.sort_by(|a, b| (&a.model, &a.version).cmp(&(&b.model, &b.version)));
        list
    }

    /// Puts a rescanned repository in force. Versions no longer in it, or
    /// whose manifest now names another file hash, are unloaded (jobs
    /// holding them finish first: they hold their own `Arc`). Returns the
    /// unloaded versions.
    pub async fn replace_repository(&self, repository: Arc<ModelRepository>) -> Vec<ModelId> {
        let mut loaded = self.loaded.lock().await;
        let gone: Vec<ModelId> = loaded
            .iter()
            .filter(|(id, cell)| {
                cell.get().is_some_and(|model| {
                    repository
                        .get(&id.name, id.version)
                        .is_none_or(|entry| entry.manifest().sha256 != model.manifest().sha256)
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        // A failed load may succeed against the new repository: its next
        // use tells.
        self.health.retain(|id| {
            loaded.get(id).is_some_and(|cell| cell.initialized()) && !gone.contains(id)
        });
        for id in &gone {
            if let Some(model) = loaded.remove(id).and_then(|cell| cell.get().cloned()) {
                tracing::info!(model = %id, "model unloaded");
                self.audit("model.unloaded", &model).await;
            }
        }
        *self
            .repository
            .write()
            .unwrap_or_else(PoisonError::into_inner) = repository;
        gone
    }

    /// Records that `model` (name, version, SHA-256, engine) was loaded or
    /// unloaded.
    async fn audit(&self, action: &'static str, model: &LoadedModel) {
        let Some(path) = self.audit_db.clone() else {
            return;
        };
        let id = model.id();
        let entry = AuditEntry {
            actor: "system:models".into(),
            action: action.into(),
            detail: serde_json::json!({
                "model": id.name,
                "version": id.version.to_string(),
                "sha256": model.manifest().sha256,
                "engine": model.engine_kind(),
            }),
        };
        let written =
            tokio::task::spawn_blocking(move || audit::append_to(&path, &entry).map(drop)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, action, "cannot audit a model change"),
            Err(e) => tracing::error!(error = %e, action, "cannot audit a model change"),
        }
    }
}
