//! The RLE Lossless header (PS3.5 G.5) and the segments it names.

use super::ImageGeometry;

/// The RLE header: 16 little-endian words, a count then 15 offsets (PS3.5 G.5).
const RLE_HEADER_BYTES: usize = 64;
const RLE_MAX_SEGMENTS: u32 = 15;
/// The most a segment may decode to, in planes (Rows × Columns bytes). The
/// decoder inflates a whole segment before taking one plane from it; an
/// encoder adds at most a padding byte, so twice is generous.
const RLE_MAX_SEGMENT_PLANES: u64 = 2;

/// The RLE header and every segment it names, as the dicom-rs RLE decoder
/// will read them: one segment per sample byte, offsets increasing within
/// the fragment, and each segment inflating to at least one plane (less
/// makes the decoder index past it) and at most [`RLE_MAX_SEGMENT_PLANES`].
/// Returns the largest segment's inflated size.
pub(super) fn check_rle(frame: &[u8], image: &ImageGeometry) -> Result<u64, String> {
    let header = frame.get(..RLE_HEADER_BYTES).ok_or_else(|| {
        format!(
            "a {}-byte fragment is shorter than the RLE header",
            frame.len()
        )
    })?;
    let word = |i: usize| {
        u32::from_le_bytes([
            header[4 * i],
            header[4 * i + 1],
            header[4 * i + 2],
            header[4 * i + 3],
        ])
    };
    let segments = word(0);
    let wanted = image.samples_per_pixel as u64 * u64::from(image.bits_allocated / 8);
    if segments == 0 || segments > RLE_MAX_SEGMENTS || u64::from(segments) != wanted {
        return Err(format!(
            "the header names {segments} segments, the image needs {wanted} (samples x bytes per sample)"
        ));
    }
    let plane = image.rows as u64 * image.columns as u64;
    let segments = segments as usize;
    let mut largest = 0;
    for i in 0..segments {
        let start = word(1 + i) as usize;
        let end = if i + 1 < segments {
            word(2 + i) as usize
        } else {
            frame.len()
        };
        if (i == 0 && start != RLE_HEADER_BYTES) || start >= end || end > frame.len() {
            return Err(format!(
                "segment {i} spans bytes {start}..{end} of a {}-byte fragment",
                frame.len()
            ));
        }
        let inflated = packbits_output(&frame[start..end])
            .ok_or_else(|| format!("segment {i} ends inside a run"))?;
        if inflated < plane || inflated > plane * RLE_MAX_SEGMENT_PLANES {
            return Err(format!(
                "segment {i} decodes to {inflated} bytes, the image has {plane} pixels"
            ));
        }
        largest = largest.max(inflated);
    }
    Ok(largest)
}

/// How many bytes the dicom-rs PackBits reader produces from `segment`,
/// counted without producing them; `None` where it fails (a run whose
/// value byte is missing). A literal cut short yields what is there.
fn packbits_output(segment: &[u8]) -> Option<u64> {
    let mut at = 0;
    let mut output = 0u64;
    while at < segment.len() {
        let header = segment[at] as i8;
        at += 1;
        match header {
            -128 => {}
            -127..=-1 => {
                segment.get(at)?;
                at += 1;
                output += (1 - i64::from(header)) as u64;
            }
            _ => {
                let count = header as usize + 1;
                output += count.min(segment.len() - at) as u64;
                at += count;
            }
        }
    }
    Some(output)
}
