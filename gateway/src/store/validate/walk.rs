//! The walk itself: a loop over element headers with an explicit stack of
//! open sequences (one small frame per nesting level, at most `max_depth`),
//! so the call stack stays the same however deep a peer nests.
//!
//! It reads the same structure dicom-rs 0.10 will read (same short/long VR
//! split, same implicit-VR dictionary rule, undefined-length Pixel Data as
//! fragments) and accepts only what leaves no room for the two to disagree.

mod header;
mod items;

use dicom_core::{Tag, VR};

use super::source::Source;
use super::violation::{Container, Truncation};
use super::{DataSetShape, Encoding, MAX_ELEMENT_BYTES, PixelDataShape, Violation};

const UNDEFINED_LENGTH: u32 = 0xFFFF_FFFF;
const ITEM_GROUP: u16 = 0xFFFE;
const ITEM: Tag = Tag(ITEM_GROUP, 0xE000);
const ITEM_DELIMITER: Tag = Tag(ITEM_GROUP, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(ITEM_GROUP, 0xE0DD);
const FILE_META_GROUP: u16 = 0x0002;
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const FLOAT_PIXEL_DATA: Tag = Tag(0x7FE0, 0x0008);
const DOUBLE_PIXEL_DATA: Tag = Tag(0x7FE0, 0x0009);

/// Where the data set ends.
#[derive(Debug, Clone, Copy)]
pub(super) enum DataEnd {
    /// This many bytes are present.
    Present(u64),
    /// Unknown (an inflating reader): the limit stands in for it.
    InflateLimit(u64),
}

impl DataEnd {
    /// How many bytes to let the walk read: one past an inflate limit, so
    /// that going over it is seen.
    pub(super) fn read_cap(self) -> u64 {
        match self {
            Self::Present(n) => n,
            Self::InflateLimit(limit) => limit.saturating_add(1),
        }
    }
}

/// The innermost end an element must fit before.
#[derive(Debug, Clone, Copy)]
struct Bound {
    at: u64,
    of: BoundKind,
}

#[derive(Debug, Clone, Copy)]
enum BoundKind {
    Data,
    InflateLimit,
    Container(Container),
}

/// An open item (or the data set itself).
#[derive(Debug, Clone, Copy)]
struct Item {
    bound: Bound,
    defined: bool,
    last_tag: Option<Tag>,
}

/// One open sequence: a frame of the explicit stack.
#[derive(Debug, Clone, Copy)]
struct Level {
    sequence: Tag,
    bound: Bound,
    defined: bool,
    /// `None` between items.
    item: Option<Item>,
}

/// How the walk goes on after an element header.
enum Kind {
    Sequence,
    Encapsulated,
    Value,
}

pub(super) struct Walker<S> {
    source: S,
    pos: u64,
    end: DataEnd,
    encoding: Encoding,
    max_depth: usize,
    top: Item,
    nested: Vec<Level>,
    shape: DataSetShape,
}

impl<S: Source> Walker<S> {
    pub(super) fn new(source: S, end: DataEnd, encoding: Encoding, max_depth: usize) -> Self {
        let bound = match end {
            DataEnd::Present(n) => Bound {
                at: n,
                of: BoundKind::Data,
            },
            DataEnd::InflateLimit(limit) => Bound {
                at: limit,
                of: BoundKind::InflateLimit,
            },
        };
        Self {
            source,
            pos: 0,
            end,
            encoding,
            max_depth,
            top: Item {
                bound,
                defined: false,
                last_tag: None,
            },
            nested: Vec::new(),
            shape: DataSetShape::default(),
        }
    }

    pub(super) fn run(mut self) -> Result<DataSetShape, Violation> {
        loop {
            // Defined-length items and sequences close where they end.
            if let Some(level) = self.nested.last_mut() {
                match level.item {
                    Some(item) if item.defined && item.bound.at == self.pos => {
                        level.item = None;
                        continue;
                    }
                    None if level.defined && level.bound.at == self.pos => {
                        self.nested.pop();
                        continue;
                    }
                    _ => {}
                }
            }
            let Some(tag) = self.read_tag(Truncation::ElementTag)? else {
                return match self.nested.last() {
                    None => Ok(self.shape),
                    Some(level) => Err(self.short(Truncation::Sequence(level.sequence))),
                };
            };
            match self.nested.last() {
                Some(&level) if level.item.is_none() => self.between_items(tag, level)?,
                _ if tag.group() == ITEM_GROUP => self.item_tag_in_data_set(tag)?,
                _ => self.element(tag)?,
            }
        }
    }

    /// A data element inside the data set or an open item.
    fn element(&mut self, tag: Tag) -> Result<(), Violation> {
        if tag.group() == FILE_META_GROUP {
            return Err(Violation::FileMetaInDataSet { tag });
        }
        let depth = self.nested.len();
        let item = self.open_item();
        match item.last_tag {
            Some(previous) if previous == tag => return Err(Violation::DuplicateElement { tag }),
            Some(previous) if previous > tag => {
                return Err(Violation::OutOfOrder { tag, previous });
            }
            _ => item.last_tag = Some(tag),
        }
        let bound = item.bound;
        let (vr, length) = self.read_header(tag)?;
        self.check_header_end(tag, bound)?;
        self.shape.elements += 1;
        self.shape.max_depth_seen = self.shape.max_depth_seen.max(depth);
        match self.kind(tag, vr, length)? {
            Kind::Sequence => self.enter_sequence(tag, length, bound),
            Kind::Encapsulated => {
                let shape = self.fragments(bound)?;
                if depth == 0 && tag == PIXEL_DATA {
                    self.shape.pixel_data = Some(shape);
                }
                Ok(())
            }
            Kind::Value => {
                let length = u64::from(length);
                self.check_fits(tag, length, bound)?;
                let pixels = matches!(tag, PIXEL_DATA | FLOAT_PIXEL_DATA | DOUBLE_PIXEL_DATA);
                if length > MAX_ELEMENT_BYTES && !pixels {
                    return Err(Violation::ElementTooLarge {
                        tag,
                        declared: length,
                        limit: MAX_ELEMENT_BYTES,
                    });
                }
                let unit = value_unit(vr);
                if length % unit != 0 {
                    return Err(Violation::MisalignedLength {
                        tag,
                        vr,
                        length,
                        unit,
                    });
                }
                self.skip(length, Truncation::Value(tag))?;
                if depth == 0 && tag == PIXEL_DATA {
                    self.shape.pixel_data = Some(PixelDataShape::Native { length });
                }
                Ok(())
            }
        }
    }

    /// Sequence, encapsulated Pixel Data or a plain value: the same decision
    /// dicom-rs makes, minus the undefined lengths it tolerates elsewhere.
    fn kind(&self, tag: Tag, vr: VR, length: u32) -> Result<Kind, Violation> {
        if vr == VR::SQ {
            return Ok(Kind::Sequence);
        }
        if length != UNDEFINED_LENGTH {
            return Ok(Kind::Value);
        }
        if tag == PIXEL_DATA {
            return Ok(Kind::Encapsulated);
        }
        // Implicit VR: a private or unknown tag of undefined length is a
        // sequence (PS3.5 7.5.1, 6.2.2). Explicit UN of undefined length is
        // refused: PS3.5 reads its content as implicit VR, dicom-rs 0.10 in
        // the data set's own encoding, and the two would disagree.
        if !self.encoding.explicit_vr && vr == VR::UN {
            return Ok(Kind::Sequence);
        }
        Err(Violation::UndefinedLengthNotAllowed { tag, vr })
    }

    fn enter_sequence(&mut self, tag: Tag, length: u32, outer: Bound) -> Result<(), Violation> {
        if self.nested.len() >= self.max_depth {
            return Err(Violation::TooDeep {
                tag,
                max_depth: self.max_depth,
            });
        }
        let (bound, defined) = if length == UNDEFINED_LENGTH {
            (outer, false)
        } else {
            let length = u64::from(length);
            self.check_fits(tag, length, outer)?;
            let bound = Bound {
                at: self.pos + length,
                of: BoundKind::Container(Container::Sequence(tag)),
            };
            (bound, true)
        };
        self.nested.push(Level {
            sequence: tag,
            bound,
            defined,
            item: None,
        });
        Ok(())
    }

    /// The item elements go into: the innermost open item, or the data set.
    fn open_item(&mut self) -> &mut Item {
        match self.nested.last_mut() {
            Some(Level {
                item: Some(item), ..
            }) => item,
            _ => &mut self.top,
        }
    }
}

/// The size of one value of a binary VR: a length must be a whole number
/// of them.
fn value_unit(vr: VR) -> u64 {
    use VR::*;
    match vr {
        US | SS | OW => 2,
        UL | SL | FL | OL | OF | AT => 4,
        FD | OD | SV | UV | OV => 8,
        _ => 1,
    }
}
