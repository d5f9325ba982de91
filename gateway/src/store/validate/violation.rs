//! Why a data set failed the validator: one variant per class of defect,
//! each with a bounded metric label and a message specific enough for a
//! DIMSE Error Comment or a STOW-RS failure reason (tag, declared, left).

use std::fmt;

use dicom_core::{Tag, VR};

/// What is wrong with a data set from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A sequence would take the nesting past `Limits::max_depth`.
    #[error("sequence nesting deeper than {max_depth} levels at {tag}")]
    TooDeep { tag: Tag, max_depth: usize },
    /// A declared length is longer than what is left before the innermost
    /// end: the end of the data, or of an enclosing defined-length item or
    /// sequence.
    #[error("element {tag} declares {declared} bytes but only {left} follow")]
    LengthExceedsData { tag: Tag, declared: u64, left: u64 },
    /// An element header starts inside a defined-length item or sequence
    /// and ends outside it.
    #[error("element {tag} crosses the end of its enclosing {container}")]
    CrossesEnd { tag: Tag, container: Container },
    /// One value (not Pixel Data) larger than `MAX_ELEMENT_BYTES`.
    #[error("element {tag} declares {declared} bytes, over the {limit} byte element limit")]
    ElementTooLarge { tag: Tag, declared: u64, limit: u64 },
    /// A deflated data set inflates (or declares values) past the limit.
    #[error("deflated data set exceeds the {limit} byte limit once inflated")]
    InflatedTooLarge { limit: u64 },
    /// A (0002,xxxx) element: file meta belongs in the meta header only.
    #[error("file meta element {tag} inside the data set")]
    FileMetaInDataSet { tag: Tag },
    #[error("data set ends inside {at}")]
    Truncated { at: Truncation },
    #[error("malformed item at {tag}: {problem}")]
    MalformedItem { tag: Tag, problem: ItemProblem },
    #[error("malformed delimiter at {tag}: {problem}")]
    MalformedDelimiter { tag: Tag, problem: DelimiterProblem },
    /// 0xFFFFFFFF on something other than a sequence, an item or
    /// encapsulated Pixel Data (explicit VR UN included, see the module doc).
    #[error("element {tag} ({vr}) has undefined length")]
    UndefinedLengthNotAllowed { tag: Tag, vr: VR },
    /// Explicit VR bytes that name no value representation.
    #[error("element {tag} has unknown value representation {vr}")]
    UnknownVr { tag: Tag, vr: VrBytes },
    /// A binary value whose length is not a whole number of its units
    /// (US with 3 bytes): a parser reading whole units would lose its place.
    #[error("element {tag} ({vr}) has length {length}, not a multiple of {unit}")]
    MisalignedLength {
        tag: Tag,
        vr: VR,
        length: u64,
        unit: u64,
    },
    /// Elements of one data set must ascend by tag (PS3.5 7.1).
    #[error("element {tag} follows {previous}: tags must ascend")]
    OutOfOrder { tag: Tag, previous: Tag },
    #[error("element {tag} appears twice")]
    DuplicateElement { tag: Tag },
    /// The bytes could not be read at all (corrupt deflate stream, I/O).
    #[error("data set cannot be read: {reason}")]
    Unreadable { reason: String },
}

impl Violation {
    /// A bounded label for metrics.
    pub fn as_label(&self) -> &'static str {
        match self {
            Self::TooDeep { .. } => "too_deep",
            Self::LengthExceedsData { .. } => "length_exceeds_data",
            Self::CrossesEnd { .. } => "crosses_end",
            Self::ElementTooLarge { .. } => "element_too_large",
            Self::InflatedTooLarge { .. } => "inflated_too_large",
            Self::FileMetaInDataSet { .. } => "file_meta_in_data_set",
            Self::Truncated { .. } => "truncated",
            Self::MalformedItem { .. } => "malformed_item",
            Self::MalformedDelimiter { .. } => "malformed_delimiter",
            Self::UndefinedLengthNotAllowed { .. } => "undefined_length_not_allowed",
            Self::UnknownVr { .. } => "unknown_vr",
            Self::MisalignedLength { .. } => "misaligned_length",
            Self::OutOfOrder { .. } => "tag_out_of_order",
            Self::DuplicateElement { .. } => "duplicate_element",
            Self::Unreadable { .. } => "unreadable",
        }
    }

    pub(super) fn unreadable(error: std::io::Error) -> Self {
        Self::Unreadable {
            reason: error.to_string(),
        }
    }
}

/// A defined-length container whose end an element crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Sequence(Tag),
    /// An item of the sequence with this tag.
    Item(Tag),
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sequence(tag) => write!(f, "sequence {tag}"),
            Self::Item(tag) => write!(f, "item of {tag}"),
        }
    }
}

/// Where the data ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Between elements, inside the 4 tag bytes.
    ElementTag,
    Header(Tag),
    Value(Tag),
    /// The data ended with this sequence (or one of its items) still open.
    Sequence(Tag),
    /// Inside encapsulated Pixel Data, before its sequence delimiter.
    PixelData,
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ElementTag => f.write_str("an element tag"),
            Self::Header(tag) => write!(f, "the header of {tag}"),
            Self::Value(tag) => write!(f, "the value of {tag}"),
            Self::Sequence(tag) => write!(f, "sequence {tag}"),
            Self::PixelData => f.write_str("encapsulated pixel data"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemProblem {
    /// An item tag where a data element was expected.
    OutsideSequence,
    /// Another tag where an item of this sequence (or its delimiter) was expected.
    NotAnItem {
        sequence: Tag,
    },
    /// (FFFE,xxxx) that is neither an item nor a delimiter.
    UnknownItemTag,
    /// Another tag where a Pixel Data fragment (or its delimiter) was expected.
    NotAFragment,
    UndefinedFragment,
    /// Encapsulated Pixel Data must start with the basic offset table item.
    MissingOffsetTable,
    OffsetTableLength {
        length: u64,
    },
}

impl fmt::Display for ItemProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutsideSequence => f.write_str("item outside any sequence"),
            Self::NotAnItem { sequence } => write!(f, "expected an item of sequence {sequence}"),
            Self::UnknownItemTag => f.write_str("neither an item nor a delimiter"),
            Self::NotAFragment => f.write_str("expected a pixel data fragment"),
            Self::UndefinedFragment => f.write_str("pixel data fragment of undefined length"),
            Self::MissingOffsetTable => {
                f.write_str("encapsulated pixel data has no basic offset table item")
            }
            Self::OffsetTableLength { length } => write!(
                f,
                "basic offset table of {length} bytes is not a multiple of 4"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelimiterProblem {
    NonZeroLength {
        length: u64,
    },
    /// An item delimiter with no undefined-length item open.
    NoOpenItem,
    /// A sequence delimiter at the top level of the data set.
    NoOpenSequence,
    /// A sequence delimiter while one of the sequence's items is still open.
    ItemStillOpen,
    /// A delimiter inside a container whose length is defined.
    InDefinedLength {
        container: Container,
    },
}

impl fmt::Display for DelimiterProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NonZeroLength { length } => write!(f, "length {length}, not 0"),
            Self::NoOpenItem => f.write_str("no undefined-length item is open"),
            Self::NoOpenSequence => f.write_str("no undefined-length sequence is open"),
            Self::ItemStillOpen => f.write_str("an item of the sequence is still open"),
            Self::InDefinedLength { container } => write!(f, "inside defined-length {container}"),
        }
    }
}

/// The two VR bytes as sent, shown printable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VrBytes(pub [u8; 2]);

impl fmt::Display for VrBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}
