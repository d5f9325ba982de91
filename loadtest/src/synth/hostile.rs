//! Hostile objects: complete Part 10 files (and their bare data sets) that
//! a modality with a firmware bug, or an attacker, could send to the
//! gateway. They are the seed corpus of the gateway's fuzz targets and the
//! inputs of the end-to-end hostile-ingest tests (issue 12).
//!
//! Each object is a realistic one-slice synthetic CT, built by the same
//! code as every other generated instance, with one hostile change at the
//! place it would sit in a real file; so a rejection can only be about that
//! change. The file meta group is always valid: the attack is in the data
//! set. [`HostileKind`] lists the cases, each documented with what it
//! attacks; [`HostileClass`] groups them by what the gateway must check.

mod base;
mod build;
mod wire;

use std::fmt;
use std::str::FromStr;

use super::SynthError;

/// Depth of the sequences of the deep-nesting kinds: far past any real
/// object (fo-dicom caps at 256, the gateway at 64) and deep enough that a
/// recursive parser overflows its thread's stack.
pub const DEFAULT_NESTING_DEPTH: usize = 5000;
/// Deepest nesting [`deep_nesting`] builds (keeps every length in 32 bits).
pub const MAX_NESTING_DEPTH: usize = 1_000_000;
/// What the deflate bomb inflates to at least: over a gigabyte.
pub const DEFAULT_BOMB_INFLATED_BYTES: u64 = 1200 * 1024 * 1024;
/// Largest element of the bomb: under the 512 MiB per-element cap that
/// the gateway's old length guard applied, so only an inflated-size cap
/// can stop the object as a whole.
pub const BOMB_ELEMENT_BYTES: u64 = 240 * 1024 * 1024;
/// Pixel Data length declared by [`HostileKind::PixelDataHugeDeclared`].
pub const HUGE_DECLARED_PIXEL_LENGTH: u32 = 0x6000_0000;

/// What a gateway has to check to refuse a hostile object; each
/// [`HostileKind`] belongs to one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostileClass {
    /// Sequence nesting depth.
    DeepNesting,
    /// Native Pixel Data length against the bytes present.
    PixelData,
    /// Encapsulated Pixel Data fragments and their delimiter.
    EncapsulatedPixelData,
    /// Inflated size of a deflated data set.
    DeflateBomb,
    /// A (0002,xxxx) group inside the data set.
    FileMetaInDataSet,
    /// Item and delimiter structure, and lengths inside items.
    MalformedStructure,
    /// Bytes that are no data set at all.
    Garbage,
}

/// One hostile object. Names (for the CLI and test output) are the
/// kebab-case of the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostileKind {
    /// Content Sequences nested [`DEFAULT_NESTING_DEPTH`] deep, explicit VR
    /// LE, undefined lengths (~180 KB): attacks recursive parsers (stack
    /// overflow kills the whole process).
    DeepNestingExplicitUndefined,
    /// The same with defined lengths (~100 KB): a parser that trusts
    /// lengths still recurses once per level.
    DeepNestingExplicitDefined,
    /// Implicit VR LE, undefined lengths (~160 KB): the VR comes from the
    /// dictionary, so the check cannot key on "SQ" in the stream.
    DeepNestingImplicitUndefined,
    /// Implicit VR LE, defined lengths (~80 KB).
    DeepNestingImplicitDefined,
    /// 512×512×16-bit CT whose Pixel Data declares 524,288 bytes but holds a
    /// quarter of them: attacks a length check that stops at Pixel Data (the
    /// object would be acknowledged, then unreadable).
    PixelDataTruncated,
    /// Pixel Data declaring 0x60000000 bytes in a ~1 KB file: attacks
    /// parsers that allocate (and zero-fill) a declared length up front.
    PixelDataHugeDeclared,
    /// JPEG Lossless Pixel Data whose fragment declares 1 MiB with 2 KiB
    /// present: attacks fragment readers that trust item lengths.
    FragmentPastEnd,
    /// JPEG Lossless Pixel Data whose fragments end with the file, no
    /// Sequence Delimitation Item: attacks readers that loop to a delimiter.
    FragmentsWithoutDelimiter,
    /// Deflated Explicit VR LE data set of about 1 MB that inflates to over
    /// [`DEFAULT_BOMB_INFLATED_BYTES`] (private OB elements of zeros):
    /// attacks size limits that count compressed bytes and parsers that
    /// hold the inflated data set in memory.
    DeflateBomb,
    /// Data set that begins with the sender's own file meta group (naming
    /// another transfer syntax): some readers take it for the file's.
    FileMetaInDataSet,
    /// Request Attributes Sequence whose item declares 64 bytes more than
    /// its (defined-length) sequence holds; the file has the bytes, so only
    /// a check of nested lengths catches it.
    ItemLongerThanSequence,
    /// An element inside an item declaring a length that runs past the
    /// item's end into the next top-level elements.
    ElementLongerThanItem,
    /// An undefined-length item closed by a Sequence Delimitation Item and
    /// never by its own Item Delimitation Item.
    ItemWithoutDelimiter,
    /// A Sequence Delimitation Item among top-level elements.
    SequenceDelimiterOutsideSequence,
    /// An Item Delimitation Item among top-level elements.
    ItemDelimiterOutsideItem,
    /// Text Value (UT) with undefined length: only SQ, encapsulated Pixel
    /// Data and UN may have one; a reader that scans for a delimiter in a
    /// text value reads the rest of the object as text.
    UndefinedLengthText,
    /// 4 KiB of random bytes under a valid file meta group.
    Garbage,
    /// A valid file meta group and an empty data set.
    Empty,
    /// A valid file meta group and five bytes of data set (half a header).
    FewBytes,
}

impl HostileKind {
    /// Every kind, in a fixed order.
    pub const ALL: [HostileKind; 19] = [
        Self::DeepNestingExplicitUndefined,
        Self::DeepNestingExplicitDefined,
        Self::DeepNestingImplicitUndefined,
        Self::DeepNestingImplicitDefined,
        Self::PixelDataTruncated,
        Self::PixelDataHugeDeclared,
        Self::FragmentPastEnd,
        Self::FragmentsWithoutDelimiter,
        Self::DeflateBomb,
        Self::FileMetaInDataSet,
        Self::ItemLongerThanSequence,
        Self::ElementLongerThanItem,
        Self::ItemWithoutDelimiter,
        Self::SequenceDelimiterOutsideSequence,
        Self::ItemDelimiterOutsideItem,
        Self::UndefinedLengthText,
        Self::Garbage,
        Self::Empty,
        Self::FewBytes,
    ];

    pub fn class(self) -> HostileClass {
        use HostileClass as C;
        match self {
            Self::DeepNestingExplicitUndefined
            | Self::DeepNestingExplicitDefined
            | Self::DeepNestingImplicitUndefined
            | Self::DeepNestingImplicitDefined => C::DeepNesting,
            Self::PixelDataTruncated | Self::PixelDataHugeDeclared => C::PixelData,
            Self::FragmentPastEnd | Self::FragmentsWithoutDelimiter => C::EncapsulatedPixelData,
            Self::DeflateBomb => C::DeflateBomb,
            Self::FileMetaInDataSet => C::FileMetaInDataSet,
            Self::ItemLongerThanSequence
            | Self::ElementLongerThanItem
            | Self::ItemWithoutDelimiter
            | Self::SequenceDelimiterOutsideSequence
            | Self::ItemDelimiterOutsideItem
            | Self::UndefinedLengthText => C::MalformedStructure,
            Self::Garbage | Self::Empty | Self::FewBytes => C::Garbage,
        }
    }

    /// Every kind of one class.
    pub fn of_class(class: HostileClass) -> impl Iterator<Item = HostileKind> {
        Self::ALL.into_iter().filter(move |k| k.class() == class)
    }

    /// The kebab-case name (`deep-nesting-explicit-undefined`).
    pub fn name(self) -> &'static str {
        match self {
            Self::DeepNestingExplicitUndefined => "deep-nesting-explicit-undefined",
            Self::DeepNestingExplicitDefined => "deep-nesting-explicit-defined",
            Self::DeepNestingImplicitUndefined => "deep-nesting-implicit-undefined",
            Self::DeepNestingImplicitDefined => "deep-nesting-implicit-defined",
            Self::PixelDataTruncated => "pixel-data-truncated",
            Self::PixelDataHugeDeclared => "pixel-data-huge-declared",
            Self::FragmentPastEnd => "fragment-past-end",
            Self::FragmentsWithoutDelimiter => "fragments-without-delimiter",
            Self::DeflateBomb => "deflate-bomb",
            Self::FileMetaInDataSet => "file-meta-in-data-set",
            Self::ItemLongerThanSequence => "item-longer-than-sequence",
            Self::ElementLongerThanItem => "element-longer-than-item",
            Self::ItemWithoutDelimiter => "item-without-delimiter",
            Self::SequenceDelimiterOutsideSequence => "sequence-delimiter-outside-sequence",
            Self::ItemDelimiterOutsideItem => "item-delimiter-outside-item",
            Self::UndefinedLengthText => "undefined-length-text",
            Self::Garbage => "garbage",
            Self::Empty => "empty",
            Self::FewBytes => "few-bytes",
        }
    }

    /// A number that makes each kind's UIDs differ for the same seed.
    fn stream_id(self) -> u64 {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0) as u64 + 1
    }
}

impl fmt::Display for HostileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error returned when a name is not a [`HostileKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hostile kind `{0}` (expected one of: {names})", names = kind_names())]
pub struct UnknownHostileKind(pub String);

fn kind_names() -> String {
    HostileKind::ALL.map(HostileKind::name).join(", ")
}

impl FromStr for HostileKind {
    type Err = UnknownHostileKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownHostileKind(s.to_string()))
    }
}

/// Why a hostile object could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HostileError {
    #[error(transparent)]
    Synth(#[from] SynthError),
    #[error("could not deflate the data set")]
    Deflate(#[from] flate2::CompressError),
    #[error("nesting depth {0} is over {MAX_NESTING_DEPTH}")]
    TooDeep(usize),
    /// One private block holds 256 elements of [`BOMB_ELEMENT_BYTES`].
    #[error("a deflate bomb of {0} bytes needs more than one private block")]
    BombTooLarge(u64),
}

/// One hostile object: what a sender would put in its C-STORE command (or
/// file meta group) and the bytes.
#[derive(Clone)]
pub struct HostileObject {
    pub kind: HostileKind,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    /// The transfer syntax of `dataset` (and in the file meta of `part10`).
    pub transfer_syntax_uid: String,
    /// The data set alone: what travels in P-DATA after the command.
    pub dataset: Vec<u8>,
    /// Preamble, `DICM`, a valid file meta group, then `dataset`.
    pub part10: Vec<u8>,
}

impl fmt::Debug for HostileObject {
    // The bytes are the point of the object but useless in a message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostileObject")
            .field("kind", &self.kind)
            .field("sop_instance_uid", &self.sop_instance_uid)
            .field("transfer_syntax_uid", &self.transfer_syntax_uid)
            .field("dataset_len", &self.dataset.len())
            .finish_non_exhaustive()
    }
}

/// The object of `kind`, with the default sizes. Deterministic in `seed`;
/// different kinds get different UIDs for the same seed.
pub fn hostile(kind: HostileKind, seed: u64) -> Result<HostileObject, HostileError> {
    let seed = seed ^ (kind.stream_id() << 40);
    use HostileKind as K;
    match kind {
        K::DeepNestingExplicitUndefined => deep_nesting(DEFAULT_NESTING_DEPTH, true, false, seed),
        K::DeepNestingExplicitDefined => deep_nesting(DEFAULT_NESTING_DEPTH, true, true, seed),
        K::DeepNestingImplicitUndefined => deep_nesting(DEFAULT_NESTING_DEPTH, false, false, seed),
        K::DeepNestingImplicitDefined => deep_nesting(DEFAULT_NESTING_DEPTH, false, true, seed),
        K::DeflateBomb => deflate_bomb(DEFAULT_BOMB_INFLATED_BYTES, seed),
        other => Ok(build::other(other, seed)?),
    }
}

/// Content Sequences nested `depth` deep in a small CT, explicit or
/// implicit VR LE, with defined or undefined lengths.
pub fn deep_nesting(
    depth: usize,
    explicit_vr: bool,
    defined_lengths: bool,
    seed: u64,
) -> Result<HostileObject, HostileError> {
    if depth > MAX_NESTING_DEPTH {
        return Err(HostileError::TooDeep(depth));
    }
    let kind = match (explicit_vr, defined_lengths) {
        (true, false) => HostileKind::DeepNestingExplicitUndefined,
        (true, true) => HostileKind::DeepNestingExplicitDefined,
        (false, false) => HostileKind::DeepNestingImplicitUndefined,
        (false, true) => HostileKind::DeepNestingImplicitDefined,
    };
    Ok(build::deep_nesting(
        kind,
        depth,
        explicit_vr,
        defined_lengths,
        seed,
    )?)
}

/// A deflated small CT whose private OB elements of zeros inflate the data
/// set to at least `inflated_bytes`; built chunk by chunk, so memory stays
/// at a few megabytes whatever the size.
pub fn deflate_bomb(inflated_bytes: u64, seed: u64) -> Result<HostileObject, HostileError> {
    build::deflate_bomb(inflated_bytes, seed)
}

#[cfg(test)]
mod tests;
