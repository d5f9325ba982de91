//! The model repository, beside the pipeline: `route` will pick a model by
//! name and version from here and `infer` loads it. Each version lives in
//! `models/<name>/<version>/` as a `manifest.toml` (what the model is, what
//! it takes and returns, its clinical status) and the model file, pinned by
//! SHA-256. Nothing runs a model file whose hash does not match: engines
//! build only from a [`VerifiedModel`].

mod baseline;
pub mod cli;
mod manifest;
mod repository;
mod validate;

pub use baseline::{RawBaseline, RawQuantityBaseline};
pub use manifest::{
    DataType, Label, Layout, Manifest, ManifestError, ModelId, Normalisation, OutputSpec, PerImage,
    Preprocessing, RawManifest, RawTriton, Task, TensorSpec, TritonModel, Version, Window,
};
pub use repository::{
    FileStatus, InvalidModel, MANIFEST_FILE, ModelEntry, ModelFileError, ModelRepository,
    RepositoryError, VerifiedModel,
};
pub use validate::{NOT_FOR_CLINICAL_USE, check_model_name};

#[cfg(test)]
mod tests;
