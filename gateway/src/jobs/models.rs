//! Model versions in service for the pipeline: loaded (hash verified,
//! engine built and health-checked) on first use, then kept.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::infer::{EngineConfig, LoadError, LoadedModel};
use crate::models::{ModelId, ModelRepository};

/// Why a route's model cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ModelUnavailable {
    #[error("model {0} is not in the repository")]
    NotInRepository(ModelId),
    #[error(transparent)]
    Load(#[from] LoadError),
}

pub struct ModelCache {
    repository: Arc<ModelRepository>,
    engine: EngineConfig,
    loaded: Mutex<HashMap<ModelId, LoadedModel>>,
}

impl ModelCache {
    pub fn new(repository: Arc<ModelRepository>, engine: EngineConfig) -> Self {
        Self {
            repository,
            engine,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    pub fn repository(&self) -> &Arc<ModelRepository> {
        &self.repository
    }

    /// The model in service, loading it if needed. Loads are serialised: two
    /// jobs needing the same new model load it once.
    pub async fn get(&self, id: &ModelId) -> Result<LoadedModel, ModelUnavailable> {
        let mut loaded = self.loaded.lock().await;
        if let Some(model) = loaded.get(id) {
            return Ok(model.clone());
        }
        let entry = self
            .repository
            .get(&id.name, id.version)
            .ok_or_else(|| ModelUnavailable::NotInRepository(id.clone()))?;
        let model = LoadedModel::load(entry, &self.engine).await?;
        tracing::info!(model = %id, engine = model.engine_kind(), sha256 = %model.manifest().sha256, "model loaded");
        loaded.insert(id.clone(), model.clone());
        Ok(model)
    }
}
