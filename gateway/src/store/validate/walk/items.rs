//! The walk between elements: items and delimiters of sequences, and the
//! fragments of encapsulated Pixel Data.

use dicom_core::Tag;

use super::{Bound, BoundKind, Item, Level, UNDEFINED_LENGTH, Walker};
use super::{ITEM, ITEM_DELIMITER, SEQUENCE_DELIMITER};
use crate::store::validate::source::Source;
use crate::store::validate::violation::{Container, DelimiterProblem, ItemProblem, Truncation};
use crate::store::validate::{PixelDataShape, Violation};

impl<S: Source> Walker<S> {
    /// Inside a sequence, between items: an item or the sequence delimiter.
    pub(super) fn between_items(&mut self, tag: Tag, level: Level) -> Result<(), Violation> {
        if tag == ITEM_DELIMITER {
            return Err(Violation::MalformedDelimiter {
                tag,
                problem: DelimiterProblem::NoOpenItem,
            });
        }
        if tag != ITEM && tag != SEQUENCE_DELIMITER {
            return Err(Violation::MalformedItem {
                tag,
                problem: ItemProblem::NotAnItem {
                    sequence: level.sequence,
                },
            });
        }
        let length = self.read_u32(Truncation::Header(tag))?;
        self.check_header_end(tag, level.bound)?;
        if tag == SEQUENCE_DELIMITER {
            check_zero(tag, length)?;
            if level.defined {
                return Err(Violation::MalformedDelimiter {
                    tag,
                    problem: DelimiterProblem::InDefinedLength {
                        container: Container::Sequence(level.sequence),
                    },
                });
            }
            self.nested.pop();
            return Ok(());
        }
        let item = if length == UNDEFINED_LENGTH {
            Item {
                bound: level.bound,
                defined: false,
                last_tag: None,
            }
        } else {
            let length = u64::from(length);
            self.check_fits(tag, length, level.bound)?;
            Item {
                bound: Bound {
                    at: self.pos + length,
                    of: BoundKind::Container(Container::Item(level.sequence)),
                },
                defined: true,
                last_tag: None,
            }
        };
        if let Some(open) = self.nested.last_mut() {
            open.item = Some(item);
        }
        Ok(())
    }

    /// (FFFE,xxxx) where a data element was expected.
    pub(super) fn item_tag_in_data_set(&mut self, tag: Tag) -> Result<(), Violation> {
        let malformed = |problem| Violation::MalformedDelimiter { tag, problem };
        match tag {
            ITEM_DELIMITER => {
                let length = self.read_u32(Truncation::Header(tag))?;
                check_zero(tag, length)?;
                let Some(level) = self.nested.last_mut() else {
                    return Err(malformed(DelimiterProblem::NoOpenItem));
                };
                if level.item.is_some_and(|item| item.defined) {
                    return Err(malformed(DelimiterProblem::InDefinedLength {
                        container: Container::Item(level.sequence),
                    }));
                }
                level.item = None;
                Ok(())
            }
            SEQUENCE_DELIMITER if self.nested.is_empty() => {
                Err(malformed(DelimiterProblem::NoOpenSequence))
            }
            SEQUENCE_DELIMITER => Err(malformed(DelimiterProblem::ItemStillOpen)),
            ITEM => Err(Violation::MalformedItem {
                tag,
                problem: ItemProblem::OutsideSequence,
            }),
            _ => Err(Violation::MalformedItem {
                tag,
                problem: ItemProblem::UnknownItemTag,
            }),
        }
    }

    /// Encapsulated Pixel Data: the basic offset table item, fragments of
    /// defined length, then the sequence delimiter (PS3.5 A.4).
    pub(super) fn fragments(&mut self, bound: Bound) -> Result<PixelDataShape, Violation> {
        let mut offset_table_bytes = None;
        let mut fragments: u32 = 0;
        loop {
            let Some(tag) = self.read_tag(Truncation::PixelData)? else {
                return Err(self.short(Truncation::PixelData));
            };
            let length = self.read_u32(Truncation::PixelData)?;
            self.check_header_end(tag, bound)?;
            match tag {
                ITEM if length == UNDEFINED_LENGTH => {
                    return Err(Violation::MalformedItem {
                        tag,
                        problem: ItemProblem::UndefinedFragment,
                    });
                }
                ITEM => {
                    let length = u64::from(length);
                    self.check_fits(tag, length, bound)?;
                    if offset_table_bytes.is_none() {
                        // dicom-rs reads the table as whole u32s.
                        if length % 4 != 0 {
                            return Err(Violation::MalformedItem {
                                tag,
                                problem: ItemProblem::OffsetTableLength { length },
                            });
                        }
                        offset_table_bytes = Some(length);
                    } else {
                        fragments = fragments.saturating_add(1);
                    }
                    self.skip(length, Truncation::PixelData)?;
                }
                SEQUENCE_DELIMITER => {
                    check_zero(tag, length)?;
                    let Some(offset_table_bytes) = offset_table_bytes else {
                        return Err(Violation::MalformedItem {
                            tag,
                            problem: ItemProblem::MissingOffsetTable,
                        });
                    };
                    return Ok(PixelDataShape::Encapsulated {
                        fragments,
                        offset_table_bytes,
                    });
                }
                _ => {
                    return Err(Violation::MalformedItem {
                        tag,
                        problem: ItemProblem::NotAFragment,
                    });
                }
            }
        }
    }
}

fn check_zero(tag: Tag, length: u32) -> Result<(), Violation> {
    if length == 0 {
        return Ok(());
    }
    Err(Violation::MalformedDelimiter {
        tag,
        problem: DelimiterProblem::NonZeroLength {
            length: u64::from(length),
        },
    })
}
