//! The honest part of every hostile object: a small synthetic CT slice,
//! encoded by the same code as every other generated instance, split at the
//! tag where the hostile structure goes so it sits in proper tag order.

use dicom_core::Tag;
use dicom_core::header::Header;
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use super::super::encode::native_transfer_syntax;
use super::super::{
    IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, SeriesGenerator, SeriesSpec, SynthError,
    SynthInstance,
};
use super::wire::ElementWriter;

/// One CT slice with its data set encoded in two pieces around a tag.
pub(super) struct BaseCt {
    pub instance: SynthInstance,
    /// Elements with tags below the split tag.
    pub before: Vec<u8>,
    /// Elements from the split tag up to (not including) Pixel Data.
    pub after: Vec<u8>,
    /// The native Pixel Data value (`rows * columns * 2` bytes).
    pub pixels: Vec<u8>,
    pub explicit_vr: bool,
}

impl BaseCt {
    /// A one-slice head CT of `rows` × `columns`, encoded in explicit VR LE
    /// (`explicit_vr`) or implicit VR LE, split before `split_at`.
    pub fn new(
        seed: u64,
        (rows, columns): (u16, u16),
        explicit_vr: bool,
        split_at: Tag,
    ) -> Result<Self, SynthError> {
        let spec = SeriesSpec {
            rows,
            columns,
            ..SeriesSpec::ct_head(1, seed)
        };
        let instance = SeriesGenerator::new(&spec)
            .next()
            .expect("a one-instance spec yields one instance");
        let pixels = instance
            .dataset
            .get(tags::PIXEL_DATA)
            .and_then(|e| e.value().to_bytes().ok())
            .map(|b| b.into_owned())
            .unwrap_or_default();
        let ts = native_transfer_syntax(if explicit_vr {
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        } else {
            uids::IMPLICIT_VR_LITTLE_ENDIAN
        })?;
        let (before, after): (Vec<_>, Vec<_>) = instance
            .dataset
            .clone()
            .into_iter()
            .filter(|e| e.tag() != tags::PIXEL_DATA)
            .partition(|e| e.tag() < split_at);
        let encode = |elements| {
            let mut out = Vec::new();
            InMemDicomObject::from_element_iter(elements)
                .write_dataset_with_ts(&mut out, ts)
                .map_err(|e| SynthError::Encode(Box::new(e)))?;
            Ok::<_, SynthError>(out)
        };
        Ok(Self {
            before: encode(before)?,
            after: encode(after)?,
            instance,
            pixels,
            explicit_vr,
        })
    }

    /// A writer holding the elements before the split tag.
    pub fn writer(&self) -> ElementWriter {
        ElementWriter::new(self.explicit_vr, self.before.clone())
    }

    /// Appends the elements after the split and an honest native Pixel Data.
    pub fn finish(&self, mut writer: ElementWriter) -> Vec<u8> {
        writer.out.extend_from_slice(&self.after);
        writer.header(PIXEL_DATA, b"OW", self.pixels.len() as u32);
        writer.out.extend_from_slice(&self.pixels);
        writer.out
    }
}

/// (7FE0,0010) Pixel Data.
pub(super) const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);

/// Preamble, `DICM`, a valid file meta group naming `transfer_syntax`, then
/// `dataset` as it is.
pub(super) fn part10(
    instance: &SynthInstance,
    transfer_syntax: &str,
    dataset: &[u8],
) -> Result<Vec<u8>, SynthError> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(instance.sop_class_uid.as_str())
        .media_storage_sop_instance_uid(instance.sop_instance_uid.as_str())
        .transfer_syntax(transfer_syntax)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .build()
        .map_err(|e| SynthError::FileMeta(Box::new(e)))?;
    let mut out = Vec::with_capacity(dataset.len() + 512);
    out.extend_from_slice(&[0u8; 128]);
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| SynthError::FileMeta(Box::new(e)))?;
    out.extend_from_slice(dataset);
    Ok(out)
}
