//! Execution providers: registered on a session builder in the configured
//! order (TensorRT → CUDA → CPU by default), so ONNX Runtime gives each node
//! to the first provider that can run it.
//!
//! ort's `with_execution_providers` swallows a failed registration (or,
//! with `error_on_failure()`, stops at it) without telling the caller which
//! provider took the session. The gateway registers each provider itself
//! through the same `ExecutionProviderDispatch::register` call, so it knows
//! the first one that registered (logged, and reported by the engine), and
//! applies the `error_on_failure()` contract to `require_provider`: its
//! failure fails the load.

use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::session::builder::SessionBuilder;

use super::super::config::{OnnxruntimeConfig, Provider};
use super::super::error::EngineError;

/// Registers the configured providers on `builder` and returns the one
/// that serves the session: the first that registered. ONNX Runtime still
/// runs on CPU any node that provider cannot take.
pub fn register(
    builder: &mut SessionBuilder,
    config: &OnnxruntimeConfig,
    model: &str,
) -> Result<Provider, EngineError> {
    let mut serving = None;
    for &provider in &config.providers {
        let required = config.require_provider == Some(provider);
        let mut dispatch = dispatch(provider, config);
        if required {
            dispatch = dispatch.error_on_failure();
        }
        match dispatch.register(builder) {
            Ok(()) => {
                serving.get_or_insert(provider);
            }
            Err(e) if required => {
                return Err(EngineError::Load(format!(
                    "execution provider `{}` is required (`require_provider`) but could not be \
                     registered: {e}{}",
                    provider.as_str(),
                    missing_hint(provider)
                )));
            }
            Err(e) => {
                // Not compiled into this library (the CPU wheel) is the normal
                // case on a CPU host; compiled in but failing means the host's
                // GPU stack is incomplete, which an operator should hear about.
                if compiled_in(provider) {
                    tracing::warn!(
                        model,
                        provider = provider.as_str(),
                        error = %e,
                        "onnxruntime execution provider failed to register; trying the next"
                    );
                } else {
                    tracing::info!(
                        model,
                        provider = provider.as_str(),
                        "onnxruntime execution provider not in this library; trying the next"
                    );
                }
            }
        }
    }
    // No provider registered at all: ONNX Runtime's built-in CPU provider
    // runs everything, which is what the session will do.
    Ok(serving.unwrap_or(Provider::Cpu))
}

/// Whether the loaded library was built with `provider` (the CPU wheel has
/// neither CUDA nor TensorRT). Needs the runtime to be loaded.
pub fn compiled_in(provider: Provider) -> bool {
    let available = match provider {
        Provider::Tensorrt => ep::TensorRT::is_available(),
        Provider::Cuda => ep::CUDA::is_available(),
        Provider::Cpu => ep::CPU::is_available(),
    };
    available.unwrap_or(false)
}

fn dispatch(provider: Provider, config: &OnnxruntimeConfig) -> ExecutionProviderDispatch {
    // ONNX Runtime takes the device as a C int; ids past i32::MAX do not exist.
    let device_id = i32::try_from(config.device_id).unwrap_or(i32::MAX);
    match provider {
        Provider::Tensorrt => {
            let options = &config.tensorrt;
            let mut trt = ep::TensorRT::default()
                .with_device_id(device_id)
                .with_fp16(options.fp16);
            if let Some(path) = &options.engine_cache_path {
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(path.display());
            }
            if let Some(path) = &options.timing_cache_path {
                trt = trt
                    .with_timing_cache(true)
                    .with_timing_cache_path(path.display());
            }
            trt.build()
        }
        Provider::Cuda => ep::CUDA::default().with_device_id(device_id).build(),
        // The arena is ONNX Runtime's own default; ort's `CPU::default()`
        // turns it off, which costs an allocation per tensor per run.
        Provider::Cpu => ep::CPU::default().with_arena_allocator(true).build(),
    }
}

/// What to check when a GPU provider will not register.
fn missing_hint(provider: Provider) -> &'static str {
    match provider {
        Provider::Tensorrt => {
            " (the library must be the onnxruntime-gpu build, and the host needs TensorRT 10, \
             CUDA and cuDNN 9 on the library path)"
        }
        Provider::Cuda => {
            " (the library must be the onnxruntime-gpu build, and the host needs CUDA and \
             cuDNN 9 on the library path)"
        }
        Provider::Cpu => "",
    }
}
