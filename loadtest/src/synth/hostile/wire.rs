//! Byte-level writers for hostile data sets: element, item and delimiter
//! headers in explicit or implicit VR little endian, written by hand so a
//! generator can state lengths that lie, and a deflate writer that produces
//! a gigabyte of inflated zeros from a few hundred kilobytes without ever
//! holding the gigabyte.

use flate2::{Compress, Compression, FlushCompress, Status};

/// (FFFE,E000) Item.
pub(super) const ITEM: (u16, u16) = (0xFFFE, 0xE000);
/// (FFFE,E00D) Item Delimitation Item.
pub(super) const ITEM_DELIMITER: (u16, u16) = (0xFFFE, 0xE00D);
/// (FFFE,E0DD) Sequence Delimitation Item.
pub(super) const SEQUENCE_DELIMITER: (u16, u16) = (0xFFFE, 0xE0DD);
/// The length value that means "undefined, look for a delimiter".
pub(super) const UNDEFINED_LENGTH: u32 = 0xFFFF_FFFF;

/// Explicit VRs whose header has two reserved bytes and a 4-byte length
/// (PS3.5 7.1.2); every other VR has a 2-byte length.
const LONG_LENGTH_VRS: [&[u8; 2]; 13] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
];

/// Appends element headers and values to a data set being built.
///
/// Lengths are whatever the caller says: nothing here checks them, which is
/// the point.
#[derive(Debug, Clone)]
pub(super) struct ElementWriter {
    pub out: Vec<u8>,
    explicit_vr: bool,
}

impl ElementWriter {
    pub fn new(explicit_vr: bool, out: Vec<u8>) -> Self {
        Self { out, explicit_vr }
    }

    /// Bytes of an element header with this VR in this encoding.
    pub fn header_len(&self, vr: &[u8; 2]) -> usize {
        match (self.explicit_vr, LONG_LENGTH_VRS.contains(&vr)) {
            (false, _) => 8,
            (true, true) => 12,
            (true, false) => 8,
        }
    }

    /// An element header declaring `length`. A 2-byte length field keeps
    /// only the low 16 bits, as a buggy encoder would.
    pub fn header(&mut self, tag: (u16, u16), vr: &[u8; 2], length: u32) {
        self.tag(tag);
        if !self.explicit_vr {
            self.out.extend_from_slice(&length.to_le_bytes());
        } else if LONG_LENGTH_VRS.contains(&vr) {
            self.out.extend_from_slice(vr);
            self.out.extend_from_slice(&[0, 0]);
            self.out.extend_from_slice(&length.to_le_bytes());
        } else {
            self.out.extend_from_slice(vr);
            self.out.extend_from_slice(&(length as u16).to_le_bytes());
        }
    }

    /// A whole element whose length is its value's (padded to even with a
    /// space, as text VRs are).
    pub fn element(&mut self, tag: (u16, u16), vr: &[u8; 2], value: &[u8]) {
        let padded = value.len() + value.len() % 2;
        self.header(tag, vr, padded as u32);
        self.out.extend_from_slice(value);
        if value.len() % 2 == 1 {
            self.out.push(b' ');
        }
    }

    /// An item (or delimiter) header: a tag and a 4-byte length, never a VR.
    pub fn item_header(&mut self, tag: (u16, u16), length: u32) {
        self.tag(tag);
        self.out.extend_from_slice(&length.to_le_bytes());
    }

    fn tag(&mut self, (group, element): (u16, u16)) {
        self.out.extend_from_slice(&group.to_le_bytes());
        self.out.extend_from_slice(&element.to_le_bytes());
    }
}

/// Bytes of zeros compressed once and repeated: a fresh compressor's output
/// ends on a full flush, so it refers to nothing before it and can follow
/// any other such segment (RFC 1951 blocks are independent once byte
/// aligned and the window holds nothing they need).
const ZERO_CHUNK: usize = 1024 * 1024;

/// Builds a raw (RFC 1951, no zlib header) deflate stream, as the Deflated
/// Explicit VR Little Endian transfer syntax carries, from literal bytes and
/// long runs of zeros. Memory stays at one compressed 1 MiB chunk whatever
/// the inflated size.
#[derive(Debug)]
pub(super) struct DeflateWriter {
    pub out: Vec<u8>,
    zero_chunk: Vec<u8>,
}

impl DeflateWriter {
    pub fn new() -> Result<Self, flate2::CompressError> {
        Ok(Self {
            out: Vec::new(),
            zero_chunk: deflate_segment(&vec![0u8; ZERO_CHUNK], false)?,
        })
    }

    pub fn bytes(&mut self, literal: &[u8]) -> Result<(), flate2::CompressError> {
        let segment = deflate_segment(literal, false)?;
        self.out.extend_from_slice(&segment);
        Ok(())
    }

    pub fn zeros(&mut self, count: u64) -> Result<(), flate2::CompressError> {
        let chunk = ZERO_CHUNK as u64;
        for _ in 0..count / chunk {
            self.out.extend_from_slice(&self.zero_chunk);
        }
        self.bytes(&vec![0u8; (count % chunk) as usize])
    }

    /// Ends the stream with `literal` in a final block.
    pub fn finish(mut self, literal: &[u8]) -> Result<Vec<u8>, flate2::CompressError> {
        let segment = deflate_segment(literal, true)?;
        self.out.extend_from_slice(&segment);
        Ok(self.out)
    }
}

/// `input` compressed by a fresh compressor, ending on a full flush (the
/// stream goes on) or on the final block.
fn deflate_segment(input: &[u8], last: bool) -> Result<Vec<u8>, flate2::CompressError> {
    let mut compressor = Compress::new(Compression::default(), false);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Full
    };
    let mut out = Vec::with_capacity(input.len() / 4 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(64 * 1024);
        }
        let consumed = compressor.total_in() as usize;
        let status = compressor.compress_vec(&input[consumed..], &mut out, flush)?;
        let all_in = compressor.total_in() as usize == input.len();
        // A flush is complete once it returns without filling the buffer.
        let flushed = all_in && out.len() < out.capacity();
        if (last && status == Status::StreamEnd) || (!last && flushed) {
            return Ok(out);
        }
    }
}
