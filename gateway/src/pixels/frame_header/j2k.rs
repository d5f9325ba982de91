//! The JPEG 2000 SIZ marker segment, in a raw codestream or in the
//! codestream box of a JP2 file.

use super::{ImageGeometry, agree_geometry, be16, be32, be64};

/// Boxes walked in a JP2 file before its codestream box: real files have
/// three or four (signature, file type, header, codestream).
const MAX_JP2_BOXES: usize = 64;
/// JPEG 2000 numbers tiles with 16 bits (Isot), so no valid codestream has
/// more; openjp2 allocates per tile from the SIZ before reading any data.
const MAX_J2K_TILES: u64 = 65_535;
/// JPEG 2000 codestream start: SOC then SIZ (ISO 15444-1 A.5).
const J2K_SOC_SIZ: [u8; 4] = [0xFF, 0x4F, 0xFF, 0x51];
/// The JP2 signature box (ISO 15444-1 I.5.1).
const JP2_SIGNATURE: [u8; 12] = [
    0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20, 0x0D, 0x0A, 0x87, 0x0A,
];

/// What a JPEG 2000 SIZ marker segment declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Siz {
    rows: u64,
    columns: u64,
    components: u64,
    /// The widest component, in bits.
    precision: u8,
    /// Some component is subsampled (XRsiz or YRsiz above 1).
    subsampled: bool,
}

impl Siz {
    /// The adapter writes each component's samples, truncated to Bits
    /// Allocated, at `Rows × Columns` positions: the grid and component
    /// count must match, no component may be subsampled, and no sample may
    /// be wider than Bits Allocated.
    pub(super) fn agrees_with(self, image: &ImageGeometry) -> Result<u64, String> {
        agree_geometry("SIZ", [self.rows, self.columns], self.components, image)?;
        if self.subsampled {
            return Err("SIZ declares a subsampled component".into());
        }
        if u16::from(self.precision) > image.bits_allocated {
            return Err(format!(
                "SIZ declares {}-bit samples, the image allocates {} bits",
                self.precision, image.bits_allocated
            ));
        }
        Ok(0)
    }
}

/// The SIZ of a raw codestream, or of the codestream box of a JP2 file:
/// openjp2 accepts either, told apart by their first bytes.
pub(super) fn read_siz(frame: &[u8]) -> Result<Siz, String> {
    let codestream = if frame.starts_with(&JP2_SIGNATURE) {
        jp2_codestream(frame)?
    } else {
        frame
    };
    if !codestream.starts_with(&J2K_SOC_SIZ) {
        return Err("the codestream does not start with SOC and SIZ".into());
    }
    let cut = || "the SIZ marker segment is cut short".to_string();
    let field = |offset: usize| be32(codestream, 4 + offset).map(u64::from).ok_or_else(cut);
    let length = be16(codestream, 4).ok_or_else(cut)?;
    let [
        x,
        y,
        x_offset,
        y_offset,
        tile_x,
        tile_y,
        tile_x_offset,
        tile_y_offset,
    ] = [4, 8, 12, 16, 20, 24, 28, 32].map(field);
    let (x, y, x_offset, y_offset) = (x?, y?, x_offset?, y_offset?);
    let (tile_x, tile_y, tile_x_offset, tile_y_offset) =
        (tile_x?, tile_y?, tile_x_offset?, tile_y_offset?);
    let components = be16(codestream, 40).ok_or_else(cut)?;
    if components == 0 || usize::from(length) != 38 + 3 * usize::from(components) {
        return Err(format!("SIZ of {length} bytes for {components} components"));
    }
    let sizes = codestream
        .get(42..42 + 3 * usize::from(components))
        .ok_or_else(cut)?;
    if x_offset >= x || y_offset >= y {
        return Err(format!(
            "SIZ image area {x}x{y} starts at ({x_offset}, {y_offset})"
        ));
    }
    // ISO 15444-1 A.5.1: the first tile must overlap the image area.
    if tile_x == 0
        || tile_y == 0
        || tile_x_offset > x_offset
        || tile_y_offset > y_offset
        || tile_x + tile_x_offset <= x_offset
        || tile_y + tile_y_offset <= y_offset
    {
        return Err("SIZ tile grid does not cover the image".into());
    }
    let tiles = (x - tile_x_offset).div_ceil(tile_x) * (y - tile_y_offset).div_ceil(tile_y);
    if tiles > MAX_J2K_TILES {
        return Err(format!("SIZ declares {tiles} tiles"));
    }
    let mut precision = 0;
    let mut subsampled = false;
    for component in sizes.chunks_exact(3) {
        precision = precision.max((component[0] & 0x7F) + 1);
        subsampled |= component[1] != 1 || component[2] != 1;
    }
    Ok(Siz {
        rows: y - y_offset,
        columns: x - x_offset,
        components: u64::from(components),
        precision,
        subsampled,
    })
}

/// The contents of the codestream box (`jp2c`) of a JP2 file, refusing a
/// palette (`pclr` in the header box): openjp2 expands it into more
/// components than the codestream declares.
fn jp2_codestream(file: &[u8]) -> Result<&[u8], String> {
    let mut at = 0;
    for _ in 0..MAX_JP2_BOXES {
        let (kind, contents, next) = jp2_box(file, at)?;
        match &kind {
            b"jp2c" => return Ok(contents),
            b"jp2h" => {
                let mut inner = 0;
                for _ in 0..MAX_JP2_BOXES {
                    if inner >= contents.len() {
                        break;
                    }
                    let (kind, _, next) = jp2_box(contents, inner)?;
                    if &kind == b"pclr" {
                        return Err("JP2 palettes are not decoded".into());
                    }
                    inner = next;
                }
            }
            _ => {}
        }
        if next >= file.len() {
            break;
        }
        at = next;
    }
    Err(format!(
        "no codestream box within the first {MAX_JP2_BOXES} JP2 boxes"
    ))
}

/// The box at `at`: its type, its contents, and where the next one starts.
fn jp2_box(file: &[u8], at: usize) -> Result<([u8; 4], &[u8], usize), String> {
    let cut = || "a JP2 box header is cut short".to_string();
    let length = be32(file, at).ok_or_else(cut)?;
    let kind: [u8; 4] = file
        .get(at + 4..at + 8)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(cut)?;
    let (header, length) = match length {
        // To the end of the file.
        0 => (8, (file.len() - at) as u64),
        // The length follows as 64 bits.
        1 => (16, be64(file, at + 8).ok_or_else(cut)?),
        n => (8, u64::from(n)),
    };
    let end = (at as u64)
        .checked_add(length)
        .filter(|&end| length >= header && end <= file.len() as u64)
        .ok_or_else(|| format!("JP2 box of {length} bytes at {at} overruns the frame"))?
        as usize;
    Ok((kind, &file[at + header as usize..end], end))
}
