//! Reading element headers and skipping values, with every short read
//! turned into the right violation (truncated, or over the inflate limit).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use super::{Bound, BoundKind, DataEnd, PIXEL_DATA, Walker};
use crate::store::validate::Violation;
use crate::store::validate::source::Source;
use crate::store::validate::violation::{Truncation, VrBytes};

impl<S: Source> Walker<S> {
    /// VR and length; the tag is already read.
    pub(super) fn read_header(&mut self, tag: Tag) -> Result<(VR, u32), Violation> {
        let at = Truncation::Header(tag);
        if !self.encoding.explicit_vr {
            let length = self.read_u32(at)?;
            return Ok((implicit_vr(tag), length));
        }
        let mut vr_bytes = [0u8; 2];
        self.read_bytes(&mut vr_bytes, at)?;
        let vr = VR::from_binary(vr_bytes).ok_or(Violation::UnknownVr {
            tag,
            vr: VrBytes(vr_bytes),
        })?;
        let length = if has_short_length(vr) {
            let mut b = [0u8; 2];
            self.read_bytes(&mut b, at)?;
            u32::from(self.u16_of(b))
        } else {
            // Two reserved bytes, then a 32-bit length (PS3.5 7.1.2).
            self.read_bytes(&mut [0u8; 2], at)?;
            self.read_u32(at)?
        };
        Ok((vr, length))
    }

    pub(super) fn check_header_end(&self, tag: Tag, bound: Bound) -> Result<(), Violation> {
        if self.pos <= bound.at {
            return Ok(());
        }
        Err(match bound.of {
            BoundKind::Container(container) => Violation::CrossesEnd { tag, container },
            BoundKind::InflateLimit => self.inflated_too_large(),
            BoundKind::Data => Violation::Truncated {
                at: Truncation::Header(tag),
            },
        })
    }

    pub(super) fn check_fits(
        &self,
        tag: Tag,
        declared: u64,
        bound: Bound,
    ) -> Result<(), Violation> {
        let left = bound.at.saturating_sub(self.pos);
        if declared <= left {
            return Ok(());
        }
        Err(match bound.of {
            BoundKind::InflateLimit => self.inflated_too_large(),
            _ => Violation::LengthExceedsData {
                tag,
                declared,
                left,
            },
        })
    }

    pub(super) fn inflated_too_large(&self) -> Violation {
        let limit = match self.end {
            DataEnd::InflateLimit(limit) | DataEnd::Present(limit) => limit,
        };
        Violation::InflatedTooLarge { limit }
    }

    /// The input ended early: past an inflate limit that is the limit's
    /// doing, otherwise the data set is cut short.
    pub(super) fn short(&self, at: Truncation) -> Violation {
        match self.end {
            DataEnd::InflateLimit(limit) if self.pos > limit => self.inflated_too_large(),
            _ => Violation::Truncated { at },
        }
    }

    /// The next tag, or `None` at a clean end of input.
    pub(super) fn read_tag(&mut self, at: Truncation) -> Result<Option<Tag>, Violation> {
        let mut b = [0u8; 4];
        match self.fill(&mut b)? {
            0 => Ok(None),
            4 => Ok(Some(Tag(
                self.u16_of([b[0], b[1]]),
                self.u16_of([b[2], b[3]]),
            ))),
            _ => Err(self.short(at)),
        }
    }

    pub(super) fn read_u32(&mut self, at: Truncation) -> Result<u32, Violation> {
        let mut b = [0u8; 4];
        self.read_bytes(&mut b, at)?;
        Ok(if self.encoding.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    pub(super) fn u16_of(&self, b: [u8; 2]) -> u16 {
        if self.encoding.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    pub(super) fn read_bytes(&mut self, buf: &mut [u8], at: Truncation) -> Result<(), Violation> {
        if self.fill(buf)? < buf.len() {
            return Err(self.short(at));
        }
        Ok(())
    }

    /// Reads until `buf` is full or the input ends; returns the count.
    pub(super) fn fill(&mut self, buf: &mut [u8]) -> Result<usize, Violation> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.source.read_some(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Violation::unreadable(e)),
            }
        }
        self.pos += filled as u64;
        Ok(filled)
    }

    pub(super) fn skip(&mut self, length: u64, at: Truncation) -> Result<(), Violation> {
        let skipped = self.source.skip(length).map_err(Violation::unreadable)?;
        self.pos += skipped;
        if skipped < length {
            return Err(self.short(at));
        }
        Ok(())
    }
}

/// The VR dicom-rs 0.10's implicit VR decoder gives a tag: OW for Pixel
/// Data and Overlay Data, else the dictionary's (relaxed), else UN.
fn implicit_vr(tag: Tag) -> VR {
    let overlay_data = tag.group() >> 8 == 0x60 && tag.element() == 0x3000;
    if tag == PIXEL_DATA || overlay_data {
        return VR::OW;
    }
    StandardDataDictionary
        .by_tag(tag)
        .map(|entry| entry.vr().relaxed())
        .unwrap_or(VR::UN)
}

/// VRs with a 16-bit length in explicit VR (PS3.5 Table 7.1-2).
fn has_short_length(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS
            | AT
            | CS
            | DA
            | DS
            | DT
            | FL
            | FD
            | IS
            | LO
            | LT
            | PN
            | SH
            | SL
            | SS
            | ST
            | TM
            | UI
            | UL
            | US
    )
}
