//! Where things lie in a stored Part 10 file: the transfer syntax from its
//! file meta, then one walk of the data set's top level (never reading a
//! value it does not need) that records each element's byte range, the
//! image geometry, and the Pixel Data (native range, or the encapsulated
//! fragments and Basic Offset Table). WADO-RS serves frames and bulk data
//! from these ranges straight off the disk.
//!
//! Stored files passed the ingest length check, but this walk does not rely
//! on it: every length is checked against the bytes that follow, nesting
//! is bounded, and nothing is allocated from a declared length.
//! Blocking: run it from `spawn_blocking`.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use dicom_core::{Tag, VR};

use super::transfer_syntax::{
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};

mod walk;

use walk::{Inflated, Seekable, Source, walk_top_level};

pub const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
pub const EXTENDED_OFFSET_TABLE: Tag = Tag(0x7FE0, 0x0001);
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
const UNDEFINED_LENGTH: u32 = 0xFFFF_FFFF;
/// Deeper nesting than this is refused rather than followed.
const MAX_DEPTH: usize = 32;
/// More fragments than this in one Pixel Data element is refused.
const MAX_FRAGMENTS: usize = 1 << 20;
/// A Basic Offset Table larger than this (1M frames) is refused.
const MAX_OFFSET_TABLE_BYTES: u32 = 4 << 20;

/// Why a stored file could not be laid out.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot read stored file: {0}")]
    Io(#[from] io::Error),
    #[error("stored file is malformed: {0}")]
    Malformed(String),
}

fn malformed(what: impl Into<String>) -> LayoutError {
    LayoutError::Malformed(what.into())
}

/// Byte order and VR explicitness of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
}

impl Encoding {
    const IMPLICIT_LE: Self = Self {
        explicit_vr: false,
        big_endian: false,
    };

    fn of_transfer_syntax(uid: &str) -> Self {
        match uid {
            IMPLICIT_VR_LITTLE_ENDIAN => Self::IMPLICIT_LE,
            EXPLICIT_VR_BIG_ENDIAN => Self {
                explicit_vr: true,
                big_endian: true,
            },
            _ => Self {
                explicit_vr: true,
                big_endian: false,
            },
        }
    }

    fn u16(self, b: [u8; 2]) -> u16 {
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(self, b: [u8; 4]) -> u32 {
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

/// A top-level element with a defined length: its value's byte range.
/// For a deflated file, offsets count bytes of the inflated data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementLocation {
    pub tag: Tag,
    pub vr: Option<VR>,
    pub offset: u64,
    pub length: u64,
}

/// One fragment of encapsulated Pixel Data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Position of the fragment's item tag, counted from the first
    /// fragment's item tag: what offset tables point at.
    pub item_offset: u64,
    /// The fragment's bytes.
    pub offset: u64,
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PixelData {
    Native {
        vr: Option<VR>,
        offset: u64,
        length: u64,
    },
    Encapsulated {
        basic_offset_table: Vec<u32>,
        fragments: Vec<Fragment>,
    },
}

/// The Image Pixel attributes frames need, as found at the top level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageGeometry {
    pub rows: Option<u16>,
    pub columns: Option<u16>,
    pub samples_per_pixel: Option<u16>,
    pub bits_allocated: Option<u16>,
    pub number_of_frames: Option<u32>,
    pub photometric_interpretation: Option<String>,
}

/// What the walk found.
#[derive(Debug, Clone)]
pub struct Part10Layout {
    pub transfer_syntax: String,
    pub deflated: bool,
    /// Where the data set starts in the file.
    pub dataset_offset: u64,
    /// Top-level elements with a defined length before Pixel Data.
    pub elements: Vec<ElementLocation>,
    pub geometry: ImageGeometry,
    pub pixel_data: Option<PixelData>,
}

impl Part10Layout {
    pub fn element(&self, tag: Tag) -> Option<&ElementLocation> {
        self.elements.iter().find(|e| e.tag == tag)
    }
}

/// Walks the stored file at `path`.
pub fn scan(path: &Path) -> Result<Part10Layout, LayoutError> {
    let file = File::open(path)?;
    let file_size = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(16 * 1024, file);
    let (transfer_syntax, dataset_offset) = read_file_meta(&mut reader)?;
    let encoding = Encoding::of_transfer_syntax(&transfer_syntax);
    let deflated = transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN;
    reader.seek(SeekFrom::Start(dataset_offset))?;
    let found = if deflated {
        let inflater = flate2::read::DeflateDecoder::new(reader);
        let mut source = Source::new(Inflated(inflater), None);
        walk_top_level(&mut source, encoding)?
    } else {
        let mut source = Source::new(
            Seekable(reader),
            Some(file_size.saturating_sub(dataset_offset)),
        );
        let mut found = walk_top_level(&mut source, encoding)?;
        found.shift(dataset_offset);
        found
    };
    Ok(Part10Layout {
        transfer_syntax,
        deflated,
        dataset_offset,
        elements: found.elements,
        geometry: found.geometry,
        pixel_data: found.pixel_data,
    })
}

/// Reads `length` bytes at `offset` of the data set of a deflated file
/// (offsets in the inflated stream). Reads, and discards, what comes before.
pub fn read_inflated(
    path: &Path,
    layout: &Part10Layout,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, LayoutError> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(layout.dataset_offset))?;
    let mut inflater = flate2::read::DeflateDecoder::new(BufReader::new(file));
    io::copy(&mut (&mut inflater).take(offset), &mut io::sink())?;
    let mut value = Vec::new();
    (&mut inflater).take(length).read_to_end(&mut value)?;
    if value.len() as u64 != length {
        return Err(malformed("deflated data set ends inside an element"));
    }
    Ok(value)
}

/// Reads `length` bytes at file offset `offset`.
pub fn read_range(path: &Path, offset: u64, length: u64) -> Result<Vec<u8>, LayoutError> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut value = Vec::new();
    file.take(length).read_to_end(&mut value)?;
    if value.len() as u64 != length {
        return Err(malformed("file ends inside an element"));
    }
    Ok(value)
}

/// Reads the preamble (if any) and the group 0002 elements, returning the
/// transfer syntax and the offset of the data set.
fn read_file_meta(reader: &mut BufReader<File>) -> Result<(String, u64), LayoutError> {
    let mut head = [0u8; 132];
    reader
        .read_exact(&mut head)
        .map_err(|_| malformed("file is shorter than a Part 10 header"))?;
    let mut position = if &head[128..132] == b"DICM" {
        132
    } else if &head[0..4] == b"DICM" {
        4
    } else {
        return Err(malformed("no DICM prefix"));
    };
    reader.seek(SeekFrom::Start(position))?;
    let mut transfer_syntax = None;
    loop {
        let mut header = [0u8; 8];
        reader.read_exact(&mut header)?;
        let group = u16::from_le_bytes([header[0], header[1]]);
        if group != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([header[2], header[3]]);
        let vr = [header[4], header[5]];
        let (length, header_len) = if matches!(
            &vr,
            b"OB" | b"OW" | b"UN" | b"SQ" | b"UT" | b"UC" | b"UR" | b"OD" | b"OF" | b"OL" | b"OV"
        ) {
            let mut l = [0u8; 4];
            reader.read_exact(&mut l)?;
            (u32::from_le_bytes(l), 12)
        } else {
            (u32::from(u16::from_le_bytes([header[6], header[7]])), 8)
        };
        if length == UNDEFINED_LENGTH || length > 64 * 1024 {
            return Err(malformed("file meta element too long"));
        }
        if element == 0x0010 {
            let mut value = vec![0u8; length as usize];
            reader.read_exact(&mut value)?;
            let text = String::from_utf8_lossy(&value);
            transfer_syntax = Some(text.trim_end_matches(['\0', ' ']).trim().to_string());
        } else {
            reader.seek_relative(i64::from(length))?;
        }
        position += header_len + u64::from(length);
    }
    let transfer_syntax =
        transfer_syntax.ok_or_else(|| malformed("file meta has no transfer syntax"))?;
    Ok((transfer_syntax, position))
}

#[cfg(test)]
mod tests;
