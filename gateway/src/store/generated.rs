//! Objects the gateway makes itself (result SRs) go into the store through
//! the same acceptance path as received ones ([`Store::accept`]: the same
//! checks, fsync and group commit), so QIDO-RS and WADO-RS serve them and
//! nothing is reported stored before it is durable.

use dicom_object::FileMetaTable;

use super::uid::trim_uid;
use super::{Announced, Provenance, Store, StoreError, StoredInstance};

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
        let announced = Announced {
            sop_class_uid: trim_uid(meta.media_storage_sop_class_uid()).to_string(),
            sop_instance_uid: trim_uid(meta.media_storage_sop_instance_uid()).to_string(),
            study_instance_uid: None,
            source: "file meta information",
        };
        let provenance = Provenance {
            site: site.to_string(),
            calling_ae: ae_title.to_string(),
            protocol: GENERATED_PROTOCOL,
            transfer_syntax_uid: trim_uid(meta.transfer_syntax()).to_string(),
        };
        let mut staging = self.begin(&meta, dataset.len() as u64).await?;
        staging.write_dataset(dataset).await?;
        let accepted = self.accept(staging, &announced, provenance).await?;
        Ok(accepted.stored)
    }
}
