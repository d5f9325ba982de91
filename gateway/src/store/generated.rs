//! Objects the gateway makes itself (result SRs) go into the store through
//! the same staging, fsync and group commit as received ones, so QIDO-RS and
//! WADO-RS serve them and nothing is reported stored before it is durable.

use std::time::Instant;

use dicom_object::FileMetaTable;

use super::{Provenance, Store, StoreError, StoredInstance, parse_header};

/// The ingest protocol recorded for generated objects. The assembler never
/// routes them (a result must not trigger inference).
pub const GENERATED_PROTOCOL: &str = "generated";

/// Preamble and `DICM` magic before the file meta.
const PREAMBLE_AND_MAGIC: usize = 132;
/// The File Meta Information Group Length element itself (tag, VR, length, value).
const GROUP_LENGTH_ELEMENT: usize = 12;

impl Store {
    /// Stores a complete Part 10 file made by the gateway for `site`.
    pub async fn store_generated(
        &self,
        part10: &[u8],
        site: &str,
        ae_title: &str,
    ) -> Result<StoredInstance, StoreError> {
        let received_at = Instant::now();
        let unreadable = |what: &str| StoreError::Unreadable(format!("generated object: {what}"));
        let meta_bytes = part10
            .get(128..)
            .ok_or_else(|| unreadable("shorter than the preamble"))?;
        let meta = FileMetaTable::from_reader(meta_bytes)
            .map_err(|e| StoreError::Unreadable(format!("generated object meta: {e}")))?;
        let dataset_offset =
            PREAMBLE_AND_MAGIC + GROUP_LENGTH_ELEMENT + meta.information_group_length as usize;
        let dataset = part10
            .get(dataset_offset..)
            .ok_or_else(|| unreadable("meta longer than the file"))?;
        let transfer_syntax = meta.transfer_syntax().to_string();
        let mut staging = self.begin(&meta, dataset.len() as u64).await?;
        staging.write_dataset(dataset).await?;
        let staged = staging.finish().await?;
        let ts = transfer_syntax.clone();
        // The gateway never deflates what it makes: its size bounds it.
        let limits = self.limits(dataset.len() as u64);
        let (attributes, staged) =
            tokio::task::spawn_blocking(move || (parse_header(&staged, &ts, &limits), staged))
                .await
                .map_err(|e| StoreError::Commit(format!("header task: {e}")))?;
        let attributes = match attributes {
            Ok(a) => a,
            Err(e) => {
                let _ = std::fs::remove_file(&staged.path);
                return Err(e);
            }
        };
        let provenance = Provenance {
            site: site.to_string(),
            calling_ae: ae_title.to_string(),
            protocol: GENERATED_PROTOCOL,
            transfer_syntax_uid: transfer_syntax,
        };
        self.commit(staged, attributes, provenance, received_at)
            .await
    }
}
