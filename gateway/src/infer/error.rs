//! `EngineError`: why an engine did not return outputs, whether trying
//! again may help, and whose fault it is.

use std::time::Duration;

/// Whose fault an [`EngineError`] is, which decides who has to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The tensors handed in do not fit the model: a bug or an unusable
    /// image upstream (preprocessing), never fixed by retrying.
    Caller,
    /// The model file, its manifest or the engine configuration: an
    /// operator has to fix the deployment.
    Configuration,
    /// The engine itself: overloaded, unreachable or failing at run time.
    Engine,
    /// A bug in the gateway (a panicked task).
    Internal,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Caller => "caller",
            Fault::Configuration => "configuration",
            Fault::Engine => "engine",
            Fault::Internal => "internal",
        }
    }
}

/// Why an engine refused or failed a request. One enum for every engine
/// kind; remote engines map their transport errors onto these variants.
/// `Clone`, so a batched call's failure reaches every request in the batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The tensors do not match what the model takes.
    #[error("invalid input: {0}")]
    InvalidInput(#[from] InputError),
    /// The model could not be parsed, optimised or prepared.
    #[error("cannot load model: {0}")]
    Load(String),
    /// The model file and its manifest disagree (names, shapes).
    #[error("model does not match its manifest: {0}")]
    ManifestMismatch(String),
    /// The engine kind named in the configuration is not built in.
    #[error("engine kind `{kind}` is not available in this build")]
    Unsupported { kind: &'static str },
    /// Every execution slot and every queue place is taken.
    #[error("engine is at capacity ({running} running, {queued} queued)")]
    Overloaded { running: usize, queued: usize },
    /// A remote engine cannot be reached or says it is not ready.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// A remote engine is up but the model (version) is not ready or not
    /// there: a deployment in progress, or one that went wrong.
    #[error("model not ready: {0}")]
    NotReady(String),
    /// A remote engine gave no answer within the per-request deadline.
    #[error("no answer from the engine within {}", humantime::format_duration(*.0))]
    DeadlineExceeded(Duration),
    /// The engine ran and failed.
    #[error("inference failed: {0}")]
    Execution(String),
    /// The blocking task running the model panicked or was cancelled.
    #[error("inference task failed: {0}")]
    Internal(String),
}

/// What is wrong with the tensors handed to an engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("missing input tensor `{name}`")]
    Missing { name: String },
    #[error("unexpected input tensor `{name}`")]
    Unexpected { name: String },
    #[error("input `{name}` has shape {actual:?}, the model takes {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("input `{name}` holds NaN or infinite values")]
    NonFinite { name: String },
}

impl EngineError {
    /// Whether the same request may succeed later without anyone changing
    /// anything (the caller may back off and retry, or fall back).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Overloaded { .. }
                | Self::Unavailable(_)
                | Self::NotReady(_)
                | Self::DeadlineExceeded(_)
        )
    }

    pub fn fault(&self) -> Fault {
        match self {
            Self::InvalidInput(_) => Fault::Caller,
            Self::Load(_) | Self::ManifestMismatch(_) | Self::Unsupported { .. } => {
                Fault::Configuration
            }
            Self::Overloaded { .. }
            | Self::Unavailable(_)
            | Self::NotReady(_)
            | Self::DeadlineExceeded(_)
            | Self::Execution(_) => Fault::Engine,
            Self::Internal(_) => Fault::Internal,
        }
    }

    /// A bounded label for metrics.
    pub fn as_label(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::Load(_) => "load_failed",
            Self::ManifestMismatch(_) => "manifest_mismatch",
            Self::Unsupported { .. } => "unsupported",
            Self::Overloaded { .. } => "overloaded",
            Self::Unavailable(_) => "unavailable",
            Self::NotReady(_) => "not_ready",
            Self::DeadlineExceeded(_) => "deadline_exceeded",
            Self::Execution(_) => "execution_failed",
            Self::Internal(_) => "internal",
        }
    }
}
