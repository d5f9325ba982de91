//! The instance file to forward: its file meta (what to propose and what to
//! name in the command) and where its data set starts, so the data set can
//! be streamed from disk as stored, without decoding or transcoding.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use dicom_object::FileMetaTable;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::ForwardError;

/// Preamble (128 bytes) plus `DICM`.
const PREAMBLE_AND_MAGIC: usize = 132;
/// The (0002,0000) element in explicit VR LE: tag, VR, 2-byte length, UL value.
const GROUP_LENGTH_ELEMENT: usize = 12;
/// A file meta group is a few hundred bytes; more is not a file we wrote.
const MAX_META_GROUP: u32 = 64 * 1024;

/// A Part 10 file ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedInstance {
    pub path: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    /// Byte offset of the data set (just after the file meta group).
    pub dataset_offset: u64,
    /// Bytes of the data set, up to the end of the file.
    pub dataset_len: u64,
}

impl PreparedInstance {
    /// Reads and checks the file meta group of the file at `path`.
    pub async fn open(path: &Path) -> Result<Self, ForwardError> {
        let file_error = |source| ForwardError::File {
            path: path.to_path_buf(),
            source,
        };
        let not_dicom = |detail: String| ForwardError::NotDicom {
            path: path.to_path_buf(),
            detail,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(file_error)?;
        let file_len = file.metadata().await.map_err(file_error)?.len();
        let mut head = vec![0u8; PREAMBLE_AND_MAGIC + GROUP_LENGTH_ELEMENT];
        if file_len < head.len() as u64 {
            return Err(not_dicom(format!("only {file_len} bytes long")));
        }
        file.read_exact(&mut head).await.map_err(file_error)?;
        if &head[128..132] != b"DICM" {
            return Err(not_dicom("no DICM prefix after the preamble".into()));
        }
        if head[132..138] != [0x02, 0x00, 0x00, 0x00, b'U', b'L'] {
            return Err(not_dicom(
                "file meta group does not start with its length".into(),
            ));
        }
        let group_length = u32::from_le_bytes([head[140], head[141], head[142], head[143]]);
        if group_length > MAX_META_GROUP {
            return Err(not_dicom(format!(
                "file meta group length {group_length} is implausible"
            )));
        }
        let dataset_offset =
            (PREAMBLE_AND_MAGIC + GROUP_LENGTH_ELEMENT) as u64 + group_length as u64;
        if dataset_offset > file_len {
            return Err(not_dicom("file ends inside the file meta group".into()));
        }
        head.resize(dataset_offset as usize, 0);
        file.seek(SeekFrom::Start(
            (PREAMBLE_AND_MAGIC + GROUP_LENGTH_ELEMENT) as u64,
        ))
        .await
        .map_err(file_error)?;
        file.read_exact(&mut head[PREAMBLE_AND_MAGIC + GROUP_LENGTH_ELEMENT..])
            .await
            .map_err(file_error)?;
        let meta = FileMetaTable::from_reader(&head[128..])
            .map_err(|e| not_dicom(format!("unreadable file meta group: {e}")))?;
        let trim = |uid: &str| uid.trim_end_matches(['\0', ' ']).to_string();
        let prepared = PreparedInstance {
            path: path.to_path_buf(),
            sop_class_uid: trim(meta.media_storage_sop_class_uid()),
            sop_instance_uid: trim(meta.media_storage_sop_instance_uid()),
            transfer_syntax_uid: trim(meta.transfer_syntax()),
            dataset_offset,
            dataset_len: file_len - dataset_offset,
        };
        if prepared.sop_class_uid.is_empty()
            || prepared.sop_instance_uid.is_empty()
            || prepared.transfer_syntax_uid.is_empty()
        {
            return Err(not_dicom(
                "file meta lacks a SOP class, instance or transfer syntax".into(),
            ));
        }
        Ok(prepared)
    }
}
