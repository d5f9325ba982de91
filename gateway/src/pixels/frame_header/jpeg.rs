//! The JPEG (SOF0..SOF3) and JPEG-LS (SOF55) frame header, found the way
//! jpeg-decoder finds it.

use super::{FrameCodec, ImageGeometry, agree_geometry, be16};

/// How far into a JPEG or JPEG-LS frame the frame header (SOF) must start.
/// Only APPn, COM and table segments may come before it; an embedded ICC
/// profile is the largest of those met in practice.
pub const MAX_JPEG_HEADER_SCAN: usize = 512 * 1024;
/// JPEG markers (ITU T.81 B.1.1.3, T.87 for SOF55).
const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const TEM: u8 = 0x01;
const SOF55: u8 = 0xF7;

/// What a JPEG or JPEG-LS frame header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sof {
    marker: u8,
    precision: u8,
    rows: u16,
    columns: u16,
    components: u8,
}

impl Sof {
    /// Geometry must match exactly, and the decoder's sample width (one
    /// byte up to 8 bits, two above) must be Bits Allocated's: jpeg-decoder
    /// and CharLS write that many bytes per sample whatever the image says.
    pub(super) fn agrees_with(self, image: &ImageGeometry) -> Result<u64, String> {
        let marker = format!("SOF (0xFF{:02X})", self.marker);
        agree_geometry(
            &marker,
            [u64::from(self.rows), u64::from(self.columns)],
            u64::from(self.components),
            image,
        )?;
        let sample_bytes = if self.precision <= 8 { 1 } else { 2 };
        if u16::from(self.precision) > image.bits_allocated
            || sample_bytes != image.bits_allocated / 8
        {
            return Err(format!(
                "{marker} declares {}-bit samples, the image allocates {} bits",
                self.precision, image.bits_allocated
            ));
        }
        Ok(0)
    }
}

/// The first frame header of a JPEG (SOF0..SOF3) or JPEG-LS (SOF55)
/// stream, found the way jpeg-decoder finds it: SOI first, then marker
/// segments skipped by their lengths (bytes between segments and fill
/// bytes passed over), within [`MAX_JPEG_HEADER_SCAN`].
pub(super) fn read_sof(frame: &[u8], codec: FrameCodec) -> Result<Sof, String> {
    if frame.get(..2) != Some(&[0xFF, SOI][..]) {
        return Err("the frame does not start with an SOI marker".into());
    }
    let window = &frame[..frame.len().min(MAX_JPEG_HEADER_SCAN)];
    let missing = || {
        format!(
            "no frame header in the first {} bytes",
            window.len().min(MAX_JPEG_HEADER_SCAN)
        )
    };
    let mut at = 2;
    loop {
        let marker = next_marker(window, &mut at).ok_or_else(missing)?;
        match marker {
            SOI | EOI | TEM | 0xD0..=0xD7 => {
                return Err(format!("marker 0xFF{marker:02X} before the frame header"));
            }
            SOS => return Err("a scan starts before the frame header".into()),
            _ => {}
        }
        let length = usize::from(be16(window, at).ok_or_else(missing)?);
        if length < 2 {
            return Err(format!("marker 0xFF{marker:02X} has length {length}"));
        }
        let body = window.get(at + 2..at + length);
        let wanted = match codec {
            FrameCodec::JpegLs => marker == SOF55,
            _ => (0xC0..=0xC3).contains(&marker),
        };
        if wanted {
            return parse_sof_body(marker, body.ok_or("the frame header is cut short")?);
        }
        if is_frame_marker(marker) {
            return Err(format!(
                "frame type 0xFF{marker:02X} is not decoded for {}",
                codec.as_str()
            ));
        }
        at += length;
    }
}

/// Advances `at` past the next marker and returns its code, skipping what
/// jpeg-decoder skips: bytes up to an 0xFF, fill bytes, and stuffed 0xFF00.
fn next_marker(window: &[u8], at: &mut usize) -> Option<u8> {
    loop {
        let skipped = window.get(*at..)?.iter().position(|&b| b == 0xFF)?;
        *at += skipped + 1;
        while window.get(*at) == Some(&0xFF) {
            *at += 1;
        }
        let code = *window.get(*at)?;
        *at += 1;
        if code != 0x00 {
            return Some(code);
        }
    }
}

/// SOFn of ITU T.81 (0xC0..0xCF but DHT, JPG and DAC) and SOF55.
fn is_frame_marker(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC)) || marker == SOF55
}

fn parse_sof_body(marker: u8, body: &[u8]) -> Result<Sof, String> {
    let (Some(&precision), Some(rows), Some(columns), Some(&components)) =
        (body.first(), be16(body, 1), be16(body, 3), body.get(5))
    else {
        return Err("the frame header is cut short".into());
    };
    if body.len() != 6 + 3 * usize::from(components) {
        return Err(format!(
            "the frame header is {} bytes for {components} components",
            body.len() + 2
        ));
    }
    if !(2..=16).contains(&precision) {
        return Err(format!("precision {precision} bits"));
    }
    Ok(Sof {
        marker,
        precision,
        rows,
        columns,
        components,
    })
}
