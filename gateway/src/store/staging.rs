//! Receiving an instance into a temp file, hashing as it streams.
//!
//! A receive writes the Part 10 preamble and file meta first, then the data
//! set bytes exactly as they arrive, so memory stays flat whatever the
//! instance size. Nothing here is durable yet: [`StagingFile::finish`]
//! fsyncs the file, and the committer renames and indexes it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dicom_object::FileMetaTable;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::StoreError;

/// Write buffer: big enough that a 512 KiB CT slice costs a handful of writes.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// Our implementation class UID (PS3.7 D.3.3.2), written into file meta.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.223615848377146186398384519536327040201";
/// Our implementation version name (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = "DICOMGW_0_1";

static NEXT_STAGING_ID: AtomicU64 = AtomicU64::new(0);

/// An instance being received. Dropped without [`finish`](Self::finish)
/// (a peer aborted, a request timed out), it deletes its temp file.
pub struct StagingFile {
    path: PathBuf,
    /// `None` once finished or discarded.
    writer: Option<BufWriter<tokio::fs::File>>,
    hasher: Sha256,
    dataset_bytes: u64,
    total_bytes: u64,
    max_dataset_bytes: u64,
}

/// A received, fsynced temp file, ready for the committer.
#[derive(Debug)]
pub struct StagedFile {
    pub path: PathBuf,
    /// SHA-256 of the whole Part 10 file as stored.
    pub sha256: String,
    pub file_size: u64,
    pub dataset_size: u64,
    /// Where the data set starts (after preamble and file meta).
    pub dataset_offset: u64,
    /// The size limit the receiving protocol set; a deflated data set may
    /// not inflate past it either.
    pub max_dataset_bytes: u64,
}

impl StagingFile {
    /// Creates a temp file in `tmp_dir` and writes preamble, `DICM` and `meta`.
    ///
    /// The file meta deliberately carries no Source AE title: an identical
    /// re-send from another AE then produces a byte-identical file, which is
    /// what makes re-sends idempotent by hash. The calling AE is in the index.
    pub async fn create(
        tmp_dir: &Path,
        meta: &FileMetaTable,
        max_dataset_bytes: u64,
    ) -> Result<Self, StoreError> {
        let id = NEXT_STAGING_ID.fetch_add(1, Ordering::Relaxed);
        let path = tmp_dir.join(format!("{}-{id}.part", crate::time::unix_nanos()));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(StoreError::Write)?;
        let mut header = vec![0u8; 128];
        header.extend_from_slice(b"DICM");
        meta.write(&mut header)
            .map_err(|e| StoreError::Write(std::io::Error::other(e.to_string())))?;
        let mut staging = Self {
            path,
            writer: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
            hasher: Sha256::new(),
            dataset_bytes: 0,
            total_bytes: 0,
            max_dataset_bytes,
        };
        staging.write_raw(&header).await?;
        Ok(staging)
    }

    /// Appends data set bytes; refuses (without writing) past the size cap.
    pub async fn write_dataset(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        if self.dataset_bytes + bytes.len() as u64 > self.max_dataset_bytes {
            return Err(StoreError::TooLarge {
                limit: self.max_dataset_bytes,
            });
        }
        self.dataset_bytes += bytes.len() as u64;
        self.write_raw(bytes).await
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(bytes);
        self.total_bytes += bytes.len() as u64;
        match self.writer.as_mut() {
            Some(writer) => writer.write_all(bytes).await.map_err(StoreError::Write),
            None => Err(StoreError::Write(std::io::Error::other(
                "staging file already closed",
            ))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dataset_bytes(&self) -> u64 {
        self.dataset_bytes
    }

    /// Flushes and fsyncs the data (not yet the directory entry).
    pub async fn finish(mut self) -> Result<StagedFile, StoreError> {
        let mut writer = self.writer.take().ok_or_else(|| {
            StoreError::Write(std::io::Error::other("staging file already closed"))
        })?;
        let synced = async {
            writer.flush().await?;
            writer.into_inner().sync_data().await
        };
        if let Err(e) = synced.await {
            remove_quietly(&self.path);
            return Err(StoreError::Write(e));
        }
        Ok(StagedFile {
            path: std::mem::take(&mut self.path),
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
            file_size: self.total_bytes,
            dataset_size: self.dataset_bytes,
            dataset_offset: self.total_bytes - self.dataset_bytes,
            max_dataset_bytes: self.max_dataset_bytes,
        })
    }

    /// Drops a receive that will not be stored.
    pub async fn discard(mut self) {
        drop(self.writer.take());
        if let Err(e) = tokio::fs::remove_file(&self.path).await {
            tracing::warn!(error = %e, "cannot remove discarded temp file");
        }
    }
}

impl Drop for StagingFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            remove_quietly(&self.path);
        }
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(error = %e, "cannot remove temp file");
    }
}

/// File meta for an instance received over the network.
pub fn file_meta(
    sop_class_uid: &str,
    sop_instance_uid: &str,
    transfer_syntax_uid: &str,
) -> Result<FileMetaTable, StoreError> {
    dicom_object::meta::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class_uid)
        .media_storage_sop_instance_uid(sop_instance_uid)
        .transfer_syntax(transfer_syntax_uid)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .build()
        .map_err(|e| StoreError::Write(std::io::Error::other(e.to_string())))
}
