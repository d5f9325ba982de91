//! The ONNX Runtime library and its environment, loaded once per process
//! the first time an `onnxruntime` engine is built.
//!
//! ort's own lazy loading panics on a missing or foreign library, so the
//! gateway never lets it: the path is resolved and checked here, the load
//! and environment creation run under `catch_unwind`, and every failure is
//! an [`EngineError::Load`] naming the file. A failed load is not
//! remembered, so a corrected path works without a restart; a successful
//! one is, because ONNX Runtime allows one environment per process.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;

use super::super::error::EngineError;

/// The environment variable naming the library when the configuration
/// does not (ort's own convention; `scripts/test.sh` exports it).
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

/// The loaded library and the process's one environment.
pub struct Runtime {
    pub environment: Environment,
    /// The library file as configured (not canonicalised), for messages.
    pub library: PathBuf,
    /// ONNX Runtime's build description (branch, commit, build type).
    pub build_info: String,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .field("build_info", &self.build_info)
            .finish_non_exhaustive()
    }
}

/// Set once a library has loaded; the mutex also serialises first loads,
/// so two models built at once cannot race ONNX Runtime's initialisation.
static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

/// The process's runtime, loading `configured` (else `ORT_DYLIB_PATH`) the
/// first time.
pub fn runtime(configured: Option<&Path>) -> Result<Arc<Runtime>, EngineError> {
    let library = resolve_library(configured, std::env::var_os(LIBRARY_ENV).map(PathBuf::from))?;
    let mut loaded = RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(runtime) = loaded.as_ref() {
        if same_file(&runtime.library, &library) {
            return Ok(Arc::clone(runtime));
        }
        return Err(EngineError::Load(format!(
            "onnxruntime is already loaded from {} in this process; cannot also load {} \
             (give every model the same `library_path`)",
            runtime.library.display(),
            library.display()
        )));
    }
    let runtime = Arc::new(load(&library)?);
    tracing::info!(
        library = %runtime.library.display(),
        build = %runtime.build_info,
        "onnxruntime loaded"
    );
    *loaded = Some(Arc::clone(&runtime));
    Ok(runtime)
}

/// The configured path wins over the environment; the file must exist and
/// be a regular file (dlopen's own message for a missing file is vaguer).
fn resolve_library(
    configured: Option<&Path>,
    from_env: Option<PathBuf>,
) -> Result<PathBuf, EngineError> {
    let library = match (configured, from_env) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(path)) if !path.as_os_str().is_empty() => path,
        _ => {
            return Err(EngineError::Load(format!(
                "no onnxruntime library: set `library_path` in the engine configuration or \
                 {LIBRARY_ENV} to libonnxruntime.so.* (scripts/test.sh installs the \
                 onnxruntime wheel and exports {LIBRARY_ENV})"
            )));
        }
    };
    match std::fs::metadata(&library) {
        Ok(meta) if meta.is_file() => Ok(library),
        Ok(_) => Err(EngineError::Load(format!(
            "onnxruntime library {} is not a file",
            library.display()
        ))),
        Err(e) => Err(EngineError::Load(format!(
            "onnxruntime library {}: {e} (run scripts/test.sh, or point `library_path` or \
             {LIBRARY_ENV} at libonnxruntime.so.*)",
            library.display()
        ))),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn load(library: &Path) -> Result<Runtime, EngineError> {
    let failed = |what: String| {
        EngineError::Load(format!(
            "cannot load onnxruntime from {}: {what}",
            library.display()
        ))
    };
    let attempt = catch_unwind(AssertUnwindSafe(|| {
        let builder = ort::init_from(library).map_err(|e| e.to_string())?;
        let build_info = ort::info().to_string();
        let environment = builder
            .with_name("dicom-gateway")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((environment, build_info))
    }));
    match attempt {
        Ok(Ok((environment, build_info))) => Ok(Runtime {
            environment,
            library: library.to_path_buf(),
            build_info,
        }),
        Ok(Err(message)) => Err(failed(message)),
        Err(panic) => Err(failed(panic_message(panic.as_ref()))),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked while loading".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_path_wins_over_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let configured = dir.path().join("configured.so");
        std::fs::write(&configured, b"").unwrap();
        let from_env = dir.path().join("from-env.so");
        let chosen = resolve_library(Some(&configured), Some(from_env)).unwrap();
        assert_eq!(chosen, configured);
    }

    #[test]
    fn no_library_anywhere_says_how_to_get_one() {
        for from_env in [None, Some(PathBuf::new())] {
            let err = resolve_library(None, from_env).unwrap_err();
            assert!(matches!(err, EngineError::Load(_)), "{err:?}");
            let message = err.to_string();
            assert!(message.contains(LIBRARY_ENV), "{message}");
            assert!(message.contains("scripts/test.sh"), "{message}");
        }
    }

    #[test]
    fn a_missing_file_or_a_directory_is_refused_before_dlopen() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("libonnxruntime.so.0");
        let err = resolve_library(None, Some(missing.clone())).unwrap_err();
        assert!(
            err.to_string().contains(&*missing.to_string_lossy()),
            "{err}"
        );
        let err = resolve_library(Some(dir.path()), None).unwrap_err();
        assert!(err.to_string().contains("is not a file"), "{err}");
    }
}
