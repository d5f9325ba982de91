//! The bounded walk every data set from a peer passes before any dicom-rs
//! parser sees it (ingest → stage → **validate** → parse header → commit),
//! and that WADO-RS repeats before it opens a stored file in full.
//!
//! dicom-rs trusts what it reads: it zero-fills a declared length before
//! reading the value, recurses once per sequence level (a data set nested a
//! few thousand deep overflows the stack), and inflates a deflated data set
//! without a cap. This walk reads element headers only, skips values (by
//! seeking in files), keeps its own stack of open sequences bounded by
//! [`Limits::max_depth`] and never allocates by a declared size. It accepts
//! a data set only if:
//! - every declared length fits in the bytes left before the innermost end
//!   (the data, or an enclosing defined-length item or sequence), Pixel Data
//!   and each encapsulated fragment included, and no header crosses an end;
//! - undefined lengths appear only on sequences, items and encapsulated
//!   Pixel Data (basic offset table item first, fragments of defined length,
//!   then a zero-length sequence delimiter); delimiters have length 0 and
//!   close something that is open; the data does not end inside anything;
//! - nesting stays within the limit, no value except Pixel Data exceeds
//!   [`MAX_ELEMENT_BYTES`], binary values are whole numbers of their units,
//!   tags ascend in each data set and item (PS3.5 7.1: a repeated tag would
//!   otherwise hide one element), and no (0002,xxxx) element is present;
//! - a deflated data set inflates to at most [`Limits::max_dataset_bytes`].
//!
//! Explicit VR UN of undefined length is refused: PS3.5 6.2.2 says its
//! content is implicit VR little endian, but dicom-rs 0.10 reads it in the
//! data set's own encoding, so what we checked would not be what it parses.
//! In implicit VR a private or unknown tag of undefined length is a sequence
//! (PS3.5 7.5.1), as is any tag the dictionary calls SQ.

mod source;
mod violation;
mod walk;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use dicom_dictionary_std::uids;

pub use violation::{Container, DelimiterProblem, ItemProblem, Truncation, Violation, VrBytes};

use source::{Positioned, Streamed};
use walk::{DataEnd, Walker};

/// Limits applied to every data set from a peer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest sequence nesting accepted (sequence levels, 0 = top level).
    pub max_depth: usize,
    /// Largest data set in bytes *after* inflation (deflated TS) — the
    /// instance size limit; for non-deflated data the available byte count bounds it anyway.
    pub max_dataset_bytes: u64,
}

/// `store.max_nesting_depth` unless configured (fo-dicom allows 256).
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// The deepest `store.max_nesting_depth` may be set to. Files already
/// stored are re-walked against this (they passed the configured depth when
/// they arrived, and a later, lower setting must not strand them); dicom-rs
/// parses this depth on a 2 MiB stack.
pub const MAX_CONFIGURABLE_DEPTH: usize = 256;

/// Largest single element we let the parser allocate, Pixel Data aside
/// (the instance size bounds it). Real non-pixel elements (overlays,
/// embedded documents) stay far below this.
pub const MAX_ELEMENT_BYTES: u64 = 512 * 1024 * 1024;

/// Retired, so dicom-dictionary-std marks its constant deprecated; peers
/// still send it.
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

/// How a data set is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
}

impl Encoding {
    pub const IMPLICIT_LE: Self = Self {
        explicit_vr: false,
        big_endian: false,
    };
    pub const EXPLICIT_LE: Self = Self {
        explicit_vr: true,
        big_endian: false,
    };
    pub const EXPLICIT_BE: Self = Self {
        explicit_vr: true,
        big_endian: true,
    };

    /// The encoding of a transfer syntax UID, and whether its data set is
    /// deflated. Every other syntax (the encapsulated ones) is explicit VR
    /// little endian.
    pub fn of_transfer_syntax(uid: &str) -> (Self, bool) {
        match uid.trim_end_matches(['\0', ' ']) {
            uids::IMPLICIT_VR_LITTLE_ENDIAN => (Self::IMPLICIT_LE, false),
            EXPLICIT_VR_BIG_ENDIAN => (Self::EXPLICIT_BE, false),
            // dicom-rs inflates the data set of all three.
            uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
            | uids::JPIP_REFERENCED_DEFLATE
            | uids::JPIPHTJ2K_REFERENCED_DEFLATE => (Self::EXPLICIT_LE, true),
            _ => (Self::EXPLICIT_LE, false),
        }
    }
}

/// What the walk learnt, for callers that care (pixel data shape).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataSetShape {
    /// Data elements at every level (sequences count, items do not).
    pub elements: u64,
    /// The deepest sequence level an element was found at (0 = top level).
    pub max_depth_seen: usize,
    /// The top-level (7FE0,0010), if any.
    pub pixel_data: Option<PixelDataShape>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelDataShape {
    Native {
        length: u64,
    },
    Encapsulated {
        /// Fragments after the basic offset table item.
        fragments: u32,
        offset_table_bytes: u64,
    },
}

/// Walks a whole data set (Pixel Data and its fragments included).
/// `available`: bytes the reader holds when known (None for an inflating reader).
pub fn validate(
    reader: impl Read,
    available: Option<u64>,
    encoding: Encoding,
    limits: &Limits,
) -> Result<DataSetShape, Violation> {
    let end = match available {
        Some(n) => DataEnd::Present(n),
        None => DataEnd::InflateLimit(limits.max_dataset_bytes),
    };
    let source = Streamed(reader.take(end.read_cap()));
    Walker::new(source, end, encoding, limits.max_depth).run()
}

/// The data set of a staged/stored Part 10 file starting at `dataset_offset`, in the given
/// transfer syntax; inflates deflated data sets counting inflated bytes against limits.max_dataset_bytes.
pub fn validate_file(
    path: &Path,
    dataset_offset: u64,
    transfer_syntax_uid: &str,
    limits: &Limits,
) -> Result<DataSetShape, Violation> {
    let (encoding, deflated) = Encoding::of_transfer_syntax(transfer_syntax_uid);
    let mut file = std::fs::File::open(path).map_err(Violation::unreadable)?;
    let size = file.metadata().map_err(Violation::unreadable)?.len();
    let Some(dataset_size) = size.checked_sub(dataset_offset) else {
        return Err(Violation::Unreadable {
            reason: format!("data set offset {dataset_offset} is past the end of the file"),
        });
    };
    file.seek(SeekFrom::Start(dataset_offset))
        .map_err(Violation::unreadable)?;
    if deflated {
        let inflater = flate2::read::DeflateDecoder::new(BufReader::new(file));
        return validate(inflater, None, encoding, limits);
    }
    let end = DataEnd::Present(dataset_size);
    Walker::new(
        Positioned::new(file, dataset_size),
        end,
        encoding,
        limits.max_depth,
    )
    .run()
}

/// Header-only variant for the DIMSE command set (implicit VR LE, no pixel data).
/// A command set has no sequences, so any nesting is refused.
pub fn validate_command_set(bytes: &[u8]) -> Result<(), Violation> {
    let end = DataEnd::Present(bytes.len() as u64);
    Walker::new(Streamed(bytes), end, Encoding::IMPLICIT_LE, 0)
        .run()
        .map(|_| ())
}
