//! Durable store: every accepted instance is a file on disk and a row in the
//! index before anyone is told it was received.
//!
//! The path of an instance through here: [`Store::begin`] opens a temp file
//! (after the free-space check), the ingest stage streams the data set into
//! it, and [`Store::accept`] does the rest for every protocol alike: fsync,
//! validate and parse the header, check it against what the protocol
//! announced, then the group committer renames it into place, fsyncs the
//! directory and commits the index row. Only an `Ok` from `accept` may turn
//! into a Success for the sender.

mod accept;
pub mod activity;
mod attributes;
mod committer;
mod generated;
pub mod index;
mod layout;
mod reader;
mod reconcile;
mod staging;
pub mod uid;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTable, OpenFileOptions};
use tokio::sync::{mpsc, oneshot};

pub use accept::{AcceptedInstance, Announced};
pub use activity::record_arrival;
pub use attributes::IndexedAttributes;
pub use generated::GENERATED_PROTOCOL;
pub use index::IndexRow;
pub use layout::Layout;
pub use reader::IndexReader;
pub use reconcile::ReconcileReport;
pub use staging::{
    IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, StagedFile, StagingFile, file_meta,
};

use crate::config::StoreConfig;
use crate::telemetry::Metrics;

/// Commit requests that may wait for the committer; senders wait beyond that.
const COMMIT_QUEUE: usize = 256;

/// Why an instance was not stored. Each maps to one DIMSE status (and later
/// one STOW-RS failure reason); see `dimse::status`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "free space on the data volume ({available} bytes) is below the watermark ({required} bytes)"
    )]
    LowDiskSpace { available: u64, required: u64 },
    #[error("instance is larger than the {limit} byte limit")]
    TooLarge { limit: u64 },
    #[error("cannot write instance: {0}")]
    Write(#[source] std::io::Error),
    #[error("index error: {0}")]
    Index(#[source] rusqlite::Error),
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("data set cannot be parsed: {0}")]
    Unreadable(String),
    /// Parses, but names neither a SOP Class nor a SOP Instance: an empty
    /// data set, or garbage that reads as a few odd elements.
    #[error("no SOP Class or SOP Instance UID in the data set")]
    NoSopUids,
    /// The data set failed the bounded walk that runs before any parser.
    #[error("{0}")]
    Invalid(validate::Violation),
    /// The data set is not the instance the protocol announced, or lacks
    /// an identifier the index keys on.
    #[error("{0}")]
    Mismatch(String),
    #[error("a different object with this SOP Instance UID is already stored")]
    DuplicateConflict,
    #[error("store is shutting down")]
    ShuttingDown,
}

impl StoreError {
    /// Whether the sender may succeed by sending the same object again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::LowDiskSpace { .. }
                | Self::Write(_)
                | Self::Index(_)
                | Self::Commit(_)
                | Self::ShuttingDown
        )
    }

    /// A bounded label for metrics.
    pub fn as_label(&self) -> &'static str {
        match self {
            Self::LowDiskSpace { .. } => "low_disk_space",
            Self::TooLarge { .. } => "too_large",
            Self::Write(_) => "write_error",
            Self::Index(_) | Self::Commit(_) => "index_error",
            Self::Unreadable(_) => "unreadable",
            Self::Invalid(violation) => violation.as_label(),
            Self::NoSopUids => "no_sop_uids",
            Self::Mismatch(_) => "mismatch",
            Self::DuplicateConflict => "duplicate_conflict",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// New instance, now durable.
    Stored,
    /// Byte-identical to what we hold: nothing written, still a success.
    AlreadyStored,
    /// Replaced a different object with the same UID (policy `replace`).
    Replaced,
}

/// A durable, indexed instance.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    pub outcome: CommitOutcome,
    /// Relative to the data directory.
    pub path: PathBuf,
    pub sha256: String,
    pub file_size: u64,
}

/// Where an instance came from, recorded in its index row.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub site: String,
    pub calling_ae: String,
    /// `dimse` or `stow`.
    pub protocol: &'static str,
    pub transfer_syntax_uid: String,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    layout: Layout,
    config: StoreConfig,
    commits: mpsc::Sender<CommitRequest>,
    metrics: Metrics,
}

use committer::{CommitRequest, Committer};

impl Store {
    /// Opens the data directory: creates it, reconciles files and index after
    /// an unclean stop, and starts the committer thread.
    pub fn open(
        data_dir: &Path,
        config: StoreConfig,
        metrics: Metrics,
    ) -> Result<(Self, ReconcileReport), StoreError> {
        let layout = Layout::new(data_dir);
        layout.create_dirs().map_err(StoreError::Write)?;
        let mut conn = index::open(&layout.index_path()).map_err(StoreError::Index)?;
        let report = reconcile::reconcile(&mut conn, &layout)?;
        let (commits, rx) = mpsc::channel(COMMIT_QUEUE);
        let committer = Committer {
            conn,
            layout: layout.clone(),
            policy: config.duplicate_policy,
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("store-committer".into())
            .spawn(move || committer.run(rx))
            .map_err(StoreError::Write)?;
        Ok((
            Self {
                inner: Arc::new(StoreInner {
                    layout,
                    config,
                    commits,
                    metrics,
                }),
            },
            report,
        ))
    }

    /// The validator's limits for a data set of at most `max_dataset_bytes`
    /// (the protocol's instance or body limit) under this store's depth cap.
    pub fn limits(&self, max_dataset_bytes: u64) -> validate::Limits {
        validate::Limits {
            max_depth: self.inner.config.max_nesting_depth,
            max_dataset_bytes,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// Read access to the index, for queries.
    pub fn reader(&self) -> IndexReader {
        IndexReader::new(self.inner.layout.index_path())
    }

    /// Refuses new work while the data volume is below the free-space watermark.
    pub fn check_free_space(&self) -> Result<(), StoreError> {
        let required = self.inner.config.min_free_space;
        let stat = nix::sys::statvfs::statvfs(self.inner.layout.root())
            .map_err(|e| StoreError::Write(std::io::Error::from(e)))?;
        let available =
            (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
        if available < required {
            return Err(StoreError::LowDiskSpace {
                available,
                required,
            });
        }
        Ok(())
    }

    /// Starts receiving one instance.
    pub async fn begin(
        &self,
        meta: &FileMetaTable,
        max_dataset_bytes: u64,
    ) -> Result<StagingFile, StoreError> {
        self.check_free_space()?;
        StagingFile::create(&self.inner.layout.tmp_dir(), meta, max_dataset_bytes).await
    }

    /// Makes a staged instance durable and indexed. Returns only when it is.
    /// Only [`Store::accept`] calls it, after every check has passed.
    async fn commit(
        &self,
        staged: StagedFile,
        attributes: IndexedAttributes,
        provenance: Provenance,
        received_at: Instant,
    ) -> Result<StoredInstance, StoreError> {
        let row = IndexRow {
            attributes,
            site: provenance.site,
            calling_ae: provenance.calling_ae,
            protocol: provenance.protocol.to_string(),
            received_at: crate::time::now_rfc3339(),
            transfer_syntax_uid: provenance.transfer_syntax_uid,
            file_size: 0,
            sha256: String::new(),
            path: String::new(),
        };
        let (reply, answer) = oneshot::channel();
        let request = CommitRequest {
            staged,
            row,
            received_at,
            reply,
        };
        self.inner
            .commits
            .send(request)
            .await
            .map_err(|_| StoreError::ShuttingDown)?;
        answer.await.map_err(|_| StoreError::ShuttingDown)?
    }
}

/// Reads the header (everything before Pixel Data) of a staged Part 10
/// file, after the bounded walk of the whole data set (see [`validate`]):
/// nesting depth, every declared length against the bytes present (Pixel
/// Data included), inflated size. Blocking: call it from `spawn_blocking`.
pub fn parse_header(
    staged: &StagedFile,
    transfer_syntax_uid: &str,
    limits: &validate::Limits,
) -> Result<IndexedAttributes, StoreError> {
    validate::validate_file(
        &staged.path,
        staged.dataset_offset,
        transfer_syntax_uid,
        limits,
    )
    .map_err(StoreError::Invalid)?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(&staged.path)
        .map_err(|e| StoreError::Unreadable(e.to_string()))?;
    Ok(IndexedAttributes::from_object(&obj))
}
