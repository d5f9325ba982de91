//! The walk itself: element headers read in the data set's encoding,
//! values skipped (by seeking, or by inflating and discarding for a
//! deflated file), sequences of undefined length followed to their
//! delimiters, and the fragments of encapsulated Pixel Data located.

use std::fs::File;
use std::io::{self, BufReader, Read};

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use super::{
    ElementLocation, Encoding, Fragment, ITEM, ITEM_DELIMITER, ImageGeometry, LayoutError,
    MAX_DEPTH, MAX_FRAGMENTS, MAX_OFFSET_TABLE_BYTES, PIXEL_DATA, PixelData, SEQUENCE_DELIMITER,
    UNDEFINED_LENGTH, malformed,
};

/// A byte source the walk reads element headers from and skips values in.
pub(super) trait Skip: Read {
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

pub(super) struct Seekable(pub(super) BufReader<File>);

impl Read for Seekable {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Skip for Seekable {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let n = i64::try_from(n).map_err(io::Error::other)?;
        self.0.seek_relative(n)
    }
}

pub(super) struct Inflated<R: Read>(pub(super) flate2::read::DeflateDecoder<R>);

impl<R: Read> Read for Inflated<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Skip for Inflated<R> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let skipped = io::copy(&mut (&mut self.0).take(n), &mut io::sink())?;
        if skipped == n {
            Ok(())
        } else {
            Err(io::ErrorKind::UnexpectedEof.into())
        }
    }
}

/// Counts what has been consumed and checks lengths against what is left.
pub(super) struct Source<S> {
    inner: S,
    position: u64,
    available: Option<u64>,
}

impl<S: Skip> Source<S> {
    pub(super) fn new(inner: S, available: Option<u64>) -> Self {
        Self {
            inner,
            position: 0,
            available,
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of data.
    fn read_or_end(&mut self, buf: &mut [u8]) -> Result<bool, LayoutError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(malformed("data set ends inside an element header")),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.position += buf.len() as u64;
        Ok(true)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), LayoutError> {
        if self.read_or_end(buf)? {
            Ok(())
        } else {
            Err(malformed("data set ends inside an element"))
        }
    }

    fn check_fits(&self, tag: Tag, length: u64) -> Result<(), LayoutError> {
        if let Some(total) = self.available {
            let left = total.saturating_sub(self.position);
            if length > left {
                return Err(malformed(format!(
                    "element {tag} declares {length} bytes but {left} follow"
                )));
            }
        }
        Ok(())
    }

    fn skip(&mut self, tag: Tag, length: u64) -> Result<(), LayoutError> {
        self.check_fits(tag, length)?;
        self.inner.skip(length).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                malformed(format!("element {tag} extends past the end of the data"))
            } else {
                e.into()
            }
        })?;
        self.position += length;
        Ok(())
    }

    fn read_value(&mut self, tag: Tag, length: u64) -> Result<Vec<u8>, LayoutError> {
        self.check_fits(tag, length)?;
        let mut value = Vec::new();
        (&mut self.inner).take(length).read_to_end(&mut value)?;
        if value.len() as u64 != length {
            return Err(malformed(format!(
                "element {tag} extends past the end of the data"
            )));
        }
        self.position += length;
        Ok(value)
    }
}

/// An element header: tag, VR (explicit, or from the dictionary), length.
struct Header {
    tag: Tag,
    vr: Option<VR>,
    length: u32,
}

fn read_header<S: Skip>(
    source: &mut Source<S>,
    encoding: Encoding,
) -> Result<Option<Header>, LayoutError> {
    let mut tag_bytes = [0u8; 4];
    if !source.read_or_end(&mut tag_bytes)? {
        return Ok(None);
    }
    let tag = Tag(
        encoding.u16([tag_bytes[0], tag_bytes[1]]),
        encoding.u16([tag_bytes[2], tag_bytes[3]]),
    );
    let mut four = [0u8; 4];
    if tag.group() == 0xFFFE {
        source.read_exact(&mut four)?;
        return Ok(Some(Header {
            tag,
            vr: None,
            length: encoding.u32(four),
        }));
    }
    if !encoding.explicit_vr {
        source.read_exact(&mut four)?;
        return Ok(Some(Header {
            tag,
            vr: dictionary_vr(tag),
            length: encoding.u32(four),
        }));
    }
    let mut vr_bytes = [0u8; 2];
    source.read_exact(&mut vr_bytes)?;
    let vr = VR::from_binary(vr_bytes)
        .ok_or_else(|| malformed(format!("element {tag} has an unknown VR")))?;
    let long = matches!(
        vr,
        VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::UC
            | VR::UR
            | VR::UT
            | VR::UN
            | VR::SV
            | VR::UV
    );
    let length = if long {
        let mut reserved = [0u8; 2];
        source.read_exact(&mut reserved)?;
        source.read_exact(&mut four)?;
        encoding.u32(four)
    } else {
        let mut two = [0u8; 2];
        source.read_exact(&mut two)?;
        u32::from(encoding.u16(two))
    };
    Ok(Some(Header {
        tag,
        vr: Some(vr),
        length,
    }))
}

fn dictionary_vr(tag: Tag) -> Option<VR> {
    match StandardDataDictionary.by_tag(tag)?.vr() {
        VirtualVr::Exact(vr) => Some(vr),
        _ => None,
    }
}

pub(super) struct TopLevel {
    pub(super) elements: Vec<ElementLocation>,
    pub(super) geometry: ImageGeometry,
    pub(super) pixel_data: Option<PixelData>,
}

impl TopLevel {
    /// Makes offsets relative to the file rather than the data set.
    pub(super) fn shift(&mut self, by: u64) {
        for e in &mut self.elements {
            e.offset += by;
        }
        match &mut self.pixel_data {
            Some(PixelData::Native { offset, .. }) => *offset += by,
            Some(PixelData::Encapsulated { fragments, .. }) => {
                for f in fragments {
                    f.offset += by;
                }
            }
            None => {}
        }
    }
}

pub(super) fn walk_top_level<S: Skip>(
    source: &mut Source<S>,
    encoding: Encoding,
) -> Result<TopLevel, LayoutError> {
    let mut found = TopLevel {
        elements: Vec::new(),
        geometry: ImageGeometry::default(),
        pixel_data: None,
    };
    while let Some(header) = read_header(source, encoding)? {
        if header.tag.group() == 0xFFFE {
            return Err(malformed(format!(
                "unexpected {} at the top level",
                header.tag
            )));
        }
        if header.tag == PIXEL_DATA {
            found.pixel_data = Some(if header.length == UNDEFINED_LENGTH {
                read_fragments(source, encoding)?
            } else {
                let length = u64::from(header.length);
                source.check_fits(header.tag, length)?;
                PixelData::Native {
                    vr: header.vr,
                    offset: source.position,
                    length,
                }
            });
            break;
        }
        if header.length == UNDEFINED_LENGTH {
            // A sequence (or UN holding one, encoded implicit VR LE).
            let inner = if header.vr == Some(VR::UN) {
                Encoding::IMPLICIT_LE
            } else {
                encoding
            };
            skip_undefined_sequence(source, inner, 1)?;
            continue;
        }
        let length = u64::from(header.length);
        if let Some(value) = geometry_value(header.tag).filter(|_| length <= 64) {
            let bytes = source.read_value(header.tag, length)?;
            record_geometry(&mut found.geometry, value, &bytes, encoding);
            found.elements.push(ElementLocation {
                tag: header.tag,
                vr: header.vr,
                offset: source.position - length,
                length,
            });
            continue;
        }
        found.elements.push(ElementLocation {
            tag: header.tag,
            vr: header.vr,
            offset: source.position,
            length,
        });
        source.skip(header.tag, length)?;
    }
    Ok(found)
}

/// Skips a sequence of undefined length, up to and including its delimiter.
fn skip_undefined_sequence<S: Skip>(
    source: &mut Source<S>,
    encoding: Encoding,
    depth: usize,
) -> Result<(), LayoutError> {
    if depth > MAX_DEPTH {
        return Err(malformed("sequences nested too deeply"));
    }
    loop {
        let header = read_header(source, encoding)?
            .ok_or_else(|| malformed("data set ends inside a sequence"))?;
        match header.tag {
            SEQUENCE_DELIMITER => return Ok(()),
            ITEM if header.length == UNDEFINED_LENGTH => {
                skip_undefined_item(source, encoding, depth + 1)?
            }
            ITEM => source.skip(header.tag, u64::from(header.length))?,
            other => return Err(malformed(format!("unexpected {other} inside a sequence"))),
        }
    }
}

/// Skips the elements of an item of undefined length, and its delimiter.
fn skip_undefined_item<S: Skip>(
    source: &mut Source<S>,
    encoding: Encoding,
    depth: usize,
) -> Result<(), LayoutError> {
    loop {
        let header = read_header(source, encoding)?
            .ok_or_else(|| malformed("data set ends inside an item"))?;
        if header.tag == ITEM_DELIMITER {
            return Ok(());
        }
        if header.length == UNDEFINED_LENGTH {
            let inner = if header.vr == Some(VR::UN) {
                Encoding::IMPLICIT_LE
            } else {
                encoding
            };
            skip_undefined_sequence(source, inner, depth + 1)?;
        } else {
            source.skip(header.tag, u64::from(header.length))?;
        }
    }
}

/// Reads the Basic Offset Table and locates every fragment.
fn read_fragments<S: Skip>(
    source: &mut Source<S>,
    encoding: Encoding,
) -> Result<PixelData, LayoutError> {
    let first = read_header(source, encoding)?
        .ok_or_else(|| malformed("pixel data has no offset table"))?;
    if first.tag != ITEM || first.length == UNDEFINED_LENGTH {
        return Err(malformed(
            "pixel data does not start with an offset table item",
        ));
    }
    if first.length > MAX_OFFSET_TABLE_BYTES || first.length % 4 != 0 {
        return Err(malformed("basic offset table has an impossible length"));
    }
    let table = source.read_value(first.tag, u64::from(first.length))?;
    let basic_offset_table = table
        .chunks_exact(4)
        .map(|c| encoding.u32([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut fragments = Vec::new();
    let first_item = source.position;
    loop {
        let item_position = source.position;
        let header = read_header(source, encoding)?
            .ok_or_else(|| malformed("pixel data has no sequence delimiter"))?;
        match header.tag {
            SEQUENCE_DELIMITER => break,
            ITEM if header.length != UNDEFINED_LENGTH => {
                if fragments.len() >= MAX_FRAGMENTS {
                    return Err(malformed("too many pixel data fragments"));
                }
                let length = u64::from(header.length);
                fragments.push(Fragment {
                    item_offset: item_position - first_item,
                    offset: source.position,
                    length,
                });
                source.skip(header.tag, length)?;
            }
            other => {
                return Err(malformed(format!(
                    "unexpected {other} in encapsulated pixel data"
                )));
            }
        }
    }
    Ok(PixelData::Encapsulated {
        basic_offset_table,
        fragments,
    })
}

#[derive(Clone, Copy)]
enum GeometryValue {
    Rows,
    Columns,
    SamplesPerPixel,
    BitsAllocated,
    NumberOfFrames,
    Photometric,
}

fn geometry_value(tag: Tag) -> Option<GeometryValue> {
    Some(match (tag.group(), tag.element()) {
        (0x0028, 0x0002) => GeometryValue::SamplesPerPixel,
        (0x0028, 0x0004) => GeometryValue::Photometric,
        (0x0028, 0x0008) => GeometryValue::NumberOfFrames,
        (0x0028, 0x0010) => GeometryValue::Rows,
        (0x0028, 0x0011) => GeometryValue::Columns,
        (0x0028, 0x0100) => GeometryValue::BitsAllocated,
        _ => return None,
    })
}

fn record_geometry(
    geometry: &mut ImageGeometry,
    which: GeometryValue,
    bytes: &[u8],
    encoding: Encoding,
) {
    let us = || (bytes.len() >= 2).then(|| encoding.u16([bytes[0], bytes[1]]));
    let text = || {
        String::from_utf8_lossy(bytes)
            .trim_matches(['\0', ' '])
            .to_string()
    };
    match which {
        GeometryValue::Rows => geometry.rows = us(),
        GeometryValue::Columns => geometry.columns = us(),
        GeometryValue::SamplesPerPixel => geometry.samples_per_pixel = us(),
        GeometryValue::BitsAllocated => geometry.bits_allocated = us(),
        GeometryValue::NumberOfFrames => geometry.number_of_frames = text().parse().ok(),
        GeometryValue::Photometric => geometry.photometric_interpretation = Some(text()),
    }
}
