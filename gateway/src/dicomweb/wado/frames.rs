//! Frame arithmetic: which bytes of Pixel Data make frame *n*.
//!
//! Native pixel data: frame *n* (1-based) starts at bit
//! `(n-1) * rows * columns * samples * bits_allocated` of the value (PS3.5
//! 8.1.1; YBR_FULL_422 stores two samples per pixel on average, and 1-bit
//! frames need not start on a byte). Encapsulated pixel data: each frame is
//! one or more fragments (PS3.5 A.4), grouped by the Basic or Extended
//! Offset Table, or one fragment per frame, or all fragments for a
//! single-frame image.

use std::ops::Range;

use super::part10::{Fragment, ImageGeometry};

/// Frame lists longer than this are refused (a URL holds no more anyway).
pub const MAX_FRAMES_PER_REQUEST: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame list is malformed: {0}")]
    BadList(String),
    #[error("frame {frame} is out of range: the instance has {frames} frame(s)")]
    OutOfRange { frame: u32, frames: u32 },
    #[error("instance has no usable image pixel attributes: {0}")]
    NotAnImage(&'static str),
    #[error("pixel data is shorter than its frames need")]
    Truncated,
    #[error("frame boundaries of the encapsulated pixel data cannot be determined")]
    Unmappable,
}

/// Parses a frame list (`1,3,5`): positive integers, in the order asked.
pub fn parse_frame_list(text: &str) -> Result<Vec<u32>, FrameError> {
    let frames: Vec<u32> = text
        .split(',')
        .map(|n| match n.trim().parse::<u32>() {
            Ok(0) | Err(_) => Err(FrameError::BadList(format!("`{n}` is not a frame number"))),
            Ok(n) => Ok(n),
        })
        .collect::<Result<_, _>>()?;
    if frames.len() > MAX_FRAMES_PER_REQUEST {
        return Err(FrameError::BadList(format!(
            "more than {MAX_FRAMES_PER_REQUEST} frames in one request"
        )));
    }
    Ok(frames)
}

/// Frames the instance has (Number of Frames, 1 when absent).
pub fn frame_count(geometry: &ImageGeometry) -> u32 {
    geometry.number_of_frames.unwrap_or(1).max(1)
}

/// Checks every requested frame exists.
pub fn check_in_range(frames: &[u32], count: u32) -> Result<(), FrameError> {
    match frames.iter().find(|&&f| f > count) {
        Some(&frame) => Err(FrameError::OutOfRange {
            frame,
            frames: count,
        }),
        None => Ok(()),
    }
}

/// Where one native frame lies, relative to the start of the Pixel Data value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeFrame {
    /// First byte holding the frame.
    pub offset: u64,
    /// Bytes to read from `offset`.
    pub length: u64,
    /// Bits to drop from the first byte (1-bit frames not on a byte boundary).
    pub bit_shift: u8,
    /// Size of the frame in bits.
    pub bits: u64,
}

impl NativeFrame {
    /// Whether the bytes read are the frame as is.
    pub fn is_byte_aligned(&self) -> bool {
        self.bit_shift == 0 && self.bits.is_multiple_of(8)
    }
}

/// Bits in one native frame, with every multiplication checked.
pub fn native_frame_bits(geometry: &ImageGeometry) -> Result<u64, FrameError> {
    let rows = geometry.rows.ok_or(FrameError::NotAnImage("no rows"))?;
    let columns = geometry
        .columns
        .ok_or(FrameError::NotAnImage("no columns"))?;
    let bits = geometry
        .bits_allocated
        .ok_or(FrameError::NotAnImage("no bits allocated"))?;
    let samples = geometry.samples_per_pixel.unwrap_or(1);
    if rows == 0 || columns == 0 || samples == 0 {
        return Err(FrameError::NotAnImage("empty image"));
    }
    if bits != 1 && (bits == 0 || bits % 8 != 0 || bits > 64) {
        return Err(FrameError::NotAnImage(
            "bits allocated is not 1 or a multiple of 8",
        ));
    }
    // YBR_FULL_422 keeps two luminance samples and one of each chrominance
    // sample per two pixels: two samples per pixel on average (PS3.3 C.7.6.3.1.2).
    let ybr_422 = geometry.photometric_interpretation.as_deref() == Some("YBR_FULL_422");
    let samples = if ybr_422 && samples == 3 {
        2
    } else {
        u64::from(samples)
    };
    u64::from(rows)
        .checked_mul(u64::from(columns))
        .and_then(|n| n.checked_mul(samples))
        .and_then(|n| n.checked_mul(u64::from(bits)))
        .ok_or(FrameError::NotAnImage("frame size overflows"))
}

/// Frame `frame` (1-based) of native pixel data `pixel_length` bytes long.
pub fn native_frame(
    geometry: &ImageGeometry,
    pixel_length: u64,
    frame: u32,
) -> Result<NativeFrame, FrameError> {
    let bits = native_frame_bits(geometry)?;
    let start_bit = u64::from(frame - 1)
        .checked_mul(bits)
        .ok_or(FrameError::Truncated)?;
    let end_bit = start_bit.checked_add(bits).ok_or(FrameError::Truncated)?;
    if end_bit.div_ceil(8) > pixel_length {
        return Err(FrameError::Truncated);
    }
    let offset = start_bit / 8;
    Ok(NativeFrame {
        offset,
        length: end_bit.div_ceil(8) - offset,
        bit_shift: (start_bit % 8) as u8,
        bits,
    })
}

/// Realigns a 1-bit frame read from a byte boundary: pixels are packed
/// least significant bit first, so the frame starts `shift` bits into
/// `bytes`. Bits past the frame in the last byte are cleared.
pub fn realign_bits(bytes: &[u8], shift: u8, bits: u64) -> Vec<u8> {
    let out_len = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(out_len);
    for i in 0..out_len {
        let low = bytes.get(i).copied().unwrap_or(0) >> shift;
        let high = if shift == 0 {
            0
        } else {
            bytes.get(i + 1).copied().unwrap_or(0) << (8 - shift)
        };
        out.push(low | high);
    }
    let tail = (bits % 8) as u32;
    if tail != 0
        && let Some(last) = out.last_mut()
    {
        *last &= (1u8 << tail) - 1;
    }
    out
}

/// The fragments (index ranges into `fragments`) of each frame.
/// `offsets` is the Basic or Extended Offset Table (empty when there is none).
pub fn encapsulated_frames(
    frame_count: u32,
    fragments: &[Fragment],
    offsets: &[u64],
) -> Result<Vec<Range<usize>>, FrameError> {
    let frames = frame_count as usize;
    if fragments.is_empty() {
        return Err(FrameError::Truncated);
    }
    if frames == 1 {
        return Ok(std::iter::once(0..fragments.len()).collect());
    }
    if offsets.len() == frames {
        let mut starts = Vec::with_capacity(frames);
        for &offset in offsets {
            let start = fragments
                .iter()
                .position(|f| f.item_offset == offset)
                .ok_or(FrameError::Unmappable)?;
            if starts.last().is_some_and(|&previous| start <= previous) {
                return Err(FrameError::Unmappable);
            }
            starts.push(start);
        }
        if starts.first() != Some(&0) {
            return Err(FrameError::Unmappable);
        }
        let ends = starts.iter().skip(1).copied().chain([fragments.len()]);
        return Ok(starts
            .iter()
            .copied()
            .zip(ends)
            .map(|(s, e)| s..e)
            .collect());
    }
    if fragments.len() == frames {
        return Ok((0..frames).map(|i| i..i + 1).collect());
    }
    Err(FrameError::Unmappable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(rows: u16, columns: u16, frames: u32) -> ImageGeometry {
        ImageGeometry {
            rows: Some(rows),
            columns: Some(columns),
            samples_per_pixel: Some(1),
            bits_allocated: Some(16),
            number_of_frames: Some(frames),
            photometric_interpretation: Some("MONOCHROME2".into()),
        }
    }

    #[test]
    fn frame_lists() {
        assert_eq!(parse_frame_list("1").unwrap(), vec![1]);
        assert_eq!(parse_frame_list("3,1, 2").unwrap(), vec![3, 1, 2]);
        for bad in ["", "0", "1,,2", "-1", "a", "1.5", "4294967296"] {
            assert!(parse_frame_list(bad).is_err(), "{bad}");
        }
        let too_many = vec!["1"; MAX_FRAMES_PER_REQUEST + 1].join(",");
        assert!(parse_frame_list(&too_many).is_err());
        assert!(check_in_range(&[1, 3], 3).is_ok());
        assert_eq!(
            check_in_range(&[1, 4], 3),
            Err(FrameError::OutOfRange {
                frame: 4,
                frames: 3
            })
        );
        assert_eq!(frame_count(&ImageGeometry::default()), 1);
    }

    #[test]
    fn native_offsets() {
        let g = ct(64, 64, 3);
        let frame_bytes = 64 * 64 * 2;
        let f = native_frame(&g, 3 * frame_bytes, 3).unwrap();
        assert_eq!(f.offset, 2 * frame_bytes);
        assert_eq!(f.length, frame_bytes);
        assert!(f.is_byte_aligned());
        assert_eq!(
            native_frame(&g, 3 * frame_bytes - 1, 3),
            Err(FrameError::Truncated)
        );

        let rgb = ImageGeometry {
            samples_per_pixel: Some(3),
            bits_allocated: Some(8),
            photometric_interpretation: Some("RGB".into()),
            ..ct(10, 10, 2)
        };
        assert_eq!(native_frame(&rgb, 600, 2).unwrap().offset, 300);
        let ybr = ImageGeometry {
            photometric_interpretation: Some("YBR_FULL_422".into()),
            ..rgb
        };
        assert_eq!(native_frame(&ybr, 400, 2).unwrap().offset, 200);
    }

    #[test]
    fn absurd_geometry_is_refused_not_overflowed() {
        let g = ImageGeometry {
            samples_per_pixel: Some(u16::MAX),
            bits_allocated: Some(64),
            ..ct(u16::MAX, u16::MAX, u32::MAX)
        };
        let bits = native_frame_bits(&g).unwrap();
        assert!(bits > 0);
        assert_eq!(
            native_frame(&g, u64::MAX, u32::MAX),
            Err(FrameError::Truncated)
        );
        let odd = ImageGeometry {
            bits_allocated: Some(12),
            ..ct(2, 2, 1)
        };
        assert!(matches!(
            native_frame(&odd, 100, 1),
            Err(FrameError::NotAnImage(_))
        ));
        assert!(matches!(
            native_frame(&ImageGeometry::default(), 100, 1),
            Err(FrameError::NotAnImage(_))
        ));
    }

    #[test]
    fn one_bit_frames_off_a_byte_boundary() {
        // 3x3 1-bit frames: 9 bits each; frame 2 starts at bit 9.
        let g = ImageGeometry {
            bits_allocated: Some(1),
            ..ct(3, 3, 2)
        };
        // Frame 1 all ones (bits 0-8), frame 2 alternating 1,0,1,... (bits 9-17).
        let packed: u32 = 0b1_0101_0101 << 9 | 0b1_1111_1111;
        let bytes = packed.to_le_bytes();
        let f = native_frame(&g, 3, 2).unwrap();
        assert_eq!((f.offset, f.bit_shift, f.bits), (1, 1, 9));
        assert!(!f.is_byte_aligned());
        let frame = realign_bits(
            &bytes[f.offset as usize..(f.offset + f.length) as usize],
            f.bit_shift,
            f.bits,
        );
        assert_eq!(frame, vec![0b0101_0101, 0b1]);
        let first = native_frame(&g, 3, 1).unwrap();
        assert_eq!(
            realign_bits(&bytes[0..first.length as usize], 0, 9),
            vec![0xFF, 0x01]
        );
    }

    fn fragments(lengths: &[u64]) -> Vec<Fragment> {
        let mut item_offset = 0;
        lengths
            .iter()
            .map(|&length| {
                let f = Fragment {
                    item_offset,
                    offset: 1000 + item_offset + 8,
                    length,
                };
                item_offset += 8 + length;
                f
            })
            .collect()
    }

    #[test]
    fn fragments_group_into_frames() {
        let f = fragments(&[10, 20, 30, 40]);
        assert_eq!(
            encapsulated_frames(1, &f, &[]).unwrap(),
            std::iter::once(0..4).collect::<Vec<_>>()
        );
        assert_eq!(
            encapsulated_frames(4, &f, &[]).unwrap(),
            vec![0..1, 1..2, 2..3, 3..4]
        );
        // Offset table: frame 1 = fragments 0-1, frame 2 = fragments 2-3.
        assert_eq!(
            encapsulated_frames(2, &f, &[0, 46]).unwrap(),
            vec![0..2, 2..4]
        );
        assert_eq!(
            encapsulated_frames(2, &f, &[0, 47]),
            Err(FrameError::Unmappable)
        );
        assert_eq!(
            encapsulated_frames(2, &f, &[46, 0]),
            Err(FrameError::Unmappable)
        );
        assert_eq!(encapsulated_frames(3, &f, &[]), Err(FrameError::Unmappable));
        assert_eq!(encapsulated_frames(2, &[], &[]), Err(FrameError::Truncated));
    }
}
