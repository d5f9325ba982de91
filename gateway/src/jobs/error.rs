//! `JobError`: why a job did not produce its result, whether running it
//! again may help, and the bounded label the job row and metrics carry.

use crate::infer::EngineError;
use crate::pixels::PixelError;
use crate::results::sr::SrError;
use crate::store::StoreError;

/// Why a job did not produce its result.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the job's source instances are no longer stored")]
    SourceGone,
    /// One source image cannot be read: the job fails for good (no other
    /// model would read it better, and a retry reads the same bytes).
    #[error("image {position} of {count}: {error}")]
    BadImage {
        /// 1-based, in the job's source order.
        position: usize,
        count: usize,
        #[source]
        error: PixelError,
    },
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("result: {0}")]
    Result(#[from] SrError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("index: {0}")]
    Index(#[from] rusqlite::Error),
    #[error("egress queue: {0}")]
    Egress(String),
    #[error("shadow run gave no result: {0}")]
    ShadowFailed(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl JobError {
    /// Whether running the same job later may succeed unchanged.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Engine(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Index(_) | Self::Egress(_) | Self::Internal(_) => true,
            Self::SourceGone | Self::BadImage { .. } | Self::Result(_) | Self::ShadowFailed(_) => {
                false
            }
        }
    }

    /// A bounded label for metrics and the job row.
    pub fn as_label(&self) -> &'static str {
        match self {
            Self::SourceGone => "source_gone",
            Self::BadImage { .. } => "bad_image",
            Self::Engine(e) => e.as_label(),
            Self::Result(_) => "result_invalid",
            Self::Store(_) => "store_error",
            Self::Index(_) => "index_error",
            Self::Egress(_) => "egress_error",
            Self::ShadowFailed(_) => "shadow_failed",
            Self::Internal(_) => "internal",
        }
    }
}
