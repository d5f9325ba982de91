//! A pre-parse check of every declared element length in a data set.
//!
//! dicom-rs allocates (and zero-fills) a value's declared length before it
//! reads the value, so one element claiming 4 GiB in a 600-byte data set
//! costs 4 GiB of memory. Peers are not trusted: before any data set or
//! command set from the network is parsed, this walk checks that each
//! declared length fits in the bytes that actually follow it (and under a
//! hard cap), reading nothing into memory but the element headers.

use std::io::{self, Read};

use dicom_core::Tag;
use dicom_core::VR;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_dictionary_std::StandardDataDictionary;

/// Largest single element we let the parser allocate. Pixel Data is never
/// read by the header parse; real non-pixel elements (overlays, embedded
/// documents) stay far below this.
pub const MAX_ELEMENT_BYTES: u64 = 512 * 1024 * 1024;

const UNDEFINED_LENGTH: u32 = 0xFFFF_FFFF;
const ITEM_GROUP: u16 = 0xFFFE;
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const SEQUENCE_DELIMITER: Tag = Tag(ITEM_GROUP, 0xE0DD);

/// How the data set is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
}

impl Encoding {
    pub const IMPLICIT_LE: Self = Self {
        explicit_vr: false,
        big_endian: false,
    };

    /// The encoding of a transfer syntax UID, and whether its data set is deflated.
    pub fn of_transfer_syntax(uid: &str) -> (Self, bool) {
        match uid {
            "1.2.840.10008.1.2" => (Self::IMPLICIT_LE, false),
            "1.2.840.10008.1.2.2" => (
                Self {
                    explicit_vr: true,
                    big_endian: true,
                },
                false,
            ),
            "1.2.840.10008.1.2.1.99" => (
                Self {
                    explicit_vr: true,
                    big_endian: false,
                },
                true,
            ),
            _ => (
                Self {
                    explicit_vr: true,
                    big_endian: false,
                },
                false,
            ),
        }
    }
}

/// Walks `reader` element by element up to Pixel Data (or the end).
/// `available` is how many bytes the reader holds, when known (not for a
/// deflated stream); each defined length must fit in what is left of it.
pub fn check_lengths(
    reader: impl Read,
    available: Option<u64>,
    encoding: Encoding,
) -> Result<(), String> {
    walk(reader, available, encoding, true)
}

/// [`check_lengths`] over the whole data set, Pixel Data included: for code
/// that reads a stored file in full (WADO-RS transcoding).
pub fn check_lengths_to_end(
    reader: impl Read,
    available: Option<u64>,
    encoding: Encoding,
) -> Result<(), String> {
    walk(reader, available, encoding, false)
}

fn walk(
    reader: impl Read,
    available: Option<u64>,
    encoding: Encoding,
    stop_at_pixel_data: bool,
) -> Result<(), String> {
    let mut reader = Counting {
        inner: reader,
        consumed: 0,
    };
    // Inside encapsulated Pixel Data, items are fragments of raw bytes (a
    // JPEG, an RLE frame): their lengths are checked and their contents
    // skipped, never walked as elements.
    let mut in_fragments = false;
    loop {
        let mut tag_bytes = [0u8; 4];
        match read_full(&mut reader, &mut tag_bytes) {
            Ok(0) => return Ok(()),
            Ok(4) => {}
            Ok(_) => return Err("data set ends inside an element tag".into()),
            Err(e) => return Err(format!("cannot read data set: {e}")),
        }
        let tag = Tag(
            u16_of(&tag_bytes[0..2], encoding),
            u16_of(&tag_bytes[2..4], encoding),
        );
        if tag == PIXEL_DATA && stop_at_pixel_data {
            return Ok(());
        }
        let (vr, length) = if tag.group() == ITEM_GROUP {
            (None, read_u32(&mut reader, encoding)?)
        } else if encoding.explicit_vr {
            let mut vr_bytes = [0u8; 2];
            read_exact(&mut reader, &mut vr_bytes)?;
            let vr = VR::from_binary(vr_bytes);
            let long = matches!(
                vr,
                Some(
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
                )
            );
            let length = if long {
                read_exact(&mut reader, &mut [0u8; 2])?;
                read_u32(&mut reader, encoding)?
            } else {
                let mut l = [0u8; 2];
                read_exact(&mut reader, &mut l)?;
                u16_of(&l, encoding) as u32
            };
            (vr, length)
        } else {
            (dictionary_vr(tag), read_u32(&mut reader, encoding)?)
        };

        if tag == PIXEL_DATA && length == UNDEFINED_LENGTH {
            in_fragments = true;
            continue;
        }
        if tag == SEQUENCE_DELIMITER {
            in_fragments = false;
        }
        // Sequences and items are entered, not skipped: their contents are
        // elements whose lengths need the same check.
        let enter = length == UNDEFINED_LENGTH
            || vr == Some(VR::SQ)
            || (tag == Tag(ITEM_GROUP, 0xE000) && !in_fragments);
        if length == UNDEFINED_LENGTH {
            continue;
        }
        let length = u64::from(length);
        if let Some(total) = available {
            let left = total.saturating_sub(reader.consumed);
            if length > left {
                return Err(format!(
                    "element {tag} declares {length} bytes but only {left} follow"
                ));
            }
        }
        if enter {
            continue;
        }
        if length > MAX_ELEMENT_BYTES {
            return Err(format!(
                "element {tag} declares {length} bytes, over the {MAX_ELEMENT_BYTES} byte limit"
            ));
        }
        let skipped = io::copy(&mut (&mut reader).take(length), &mut io::sink())
            .map_err(|e| format!("cannot read data set: {e}"))?;
        if skipped != length {
            return Err(format!("data set ends inside element {tag}"));
        }
    }
}

fn dictionary_vr(tag: Tag) -> Option<VR> {
    match StandardDataDictionary.by_tag(tag)?.vr() {
        VirtualVr::Exact(vr) => Some(vr),
        _ => None,
    }
}

fn u16_of(bytes: &[u8], encoding: Encoding) -> u16 {
    let b = [bytes[0], bytes[1]];
    if encoding.big_endian {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    }
}

fn read_u32(reader: &mut impl Read, encoding: Encoding) -> Result<u32, String> {
    let mut b = [0u8; 4];
    read_exact(reader, &mut b)?;
    Ok(if encoding.big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

fn read_exact(reader: &mut impl Read, buf: &mut [u8]) -> Result<(), String> {
    reader
        .read_exact(buf)
        .map_err(|_| "data set ends inside an element header".to_string())
}

/// Like `read_exact`, but reports how much was read when the input ends.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

struct Counting<R> {
    inner: R,
    consumed: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPLICIT_LE: Encoding = Encoding {
        explicit_vr: true,
        big_endian: false,
    };

    fn element_explicit(group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(group.to_le_bytes());
        out.extend(elem.to_le_bytes());
        out.extend(vr);
        out.extend((value.len() as u16).to_le_bytes());
        out.extend(value);
        out
    }

    #[test]
    fn honest_data_set_passes() {
        let mut bytes = element_explicit(0x0008, 0x0060, b"CS", b"CT");
        bytes.extend(element_explicit(0x0010, 0x0010, b"PN", b"Doe^Jane"));
        assert_eq!(
            check_lengths(&bytes[..], Some(bytes.len() as u64), EXPLICIT_LE),
            Ok(())
        );
    }

    #[test]
    fn lying_long_length_is_caught_without_allocating() {
        let mut bytes = element_explicit(0x0008, 0x0060, b"CS", b"CT");
        // (0042,0011) OB claiming 3.9 GiB, followed by 10 bytes.
        bytes.extend([0x42, 0x00, 0x11, 0x00, b'O', b'B', 0, 0]);
        bytes.extend(0xF000_0000u32.to_le_bytes());
        bytes.extend([0u8; 10]);
        let err = check_lengths(&bytes[..], Some(bytes.len() as u64), EXPLICIT_LE).unwrap_err();
        assert!(err.contains("only 10 follow"), "{err}");
    }

    #[test]
    fn implicit_garbage_is_caught() {
        let bytes = b"\x01\x02garbage";
        assert!(
            check_lengths(&bytes[..], Some(bytes.len() as u64), Encoding::IMPLICIT_LE).is_err()
        );
    }

    #[test]
    fn lie_inside_a_sequence_is_caught() {
        // (0008,1140) SQ undefined length, item undefined length, then a lying element.
        let mut bytes = vec![
            0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        bytes.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        bytes.extend([0x08, 0x00, 0x55, 0x11, b'U', b'T', 0, 0]);
        bytes.extend(0x8000_0000u32.to_le_bytes());
        let err = check_lengths(&bytes[..], Some(bytes.len() as u64), EXPLICIT_LE).unwrap_err();
        assert!(err.contains("declares"), "{err}");
    }

    #[test]
    fn fragments_of_encapsulated_pixel_data_are_skipped_and_checked() {
        let mut bytes = element_explicit(0x0008, 0x0060, b"CS", b"CT");
        bytes.extend([
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        // Empty offset table, then a fragment whose bytes look like a lying element.
        bytes.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        let fragment = [0xFF, 0xD8, 0xFF, 0xE0, 0xFF, 0xFF, 0xFF, 0x7F];
        bytes.extend([0xFE, 0xFF, 0x00, 0xE0, 8, 0, 0, 0]);
        bytes.extend(fragment);
        bytes.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let total = Some(bytes.len() as u64);
        assert_eq!(check_lengths_to_end(&bytes[..], total, EXPLICIT_LE), Ok(()));

        // A fragment declaring more than follows.
        let at = bytes.len() - 8 - fragment.len() - 4;
        bytes[at..at + 4].copy_from_slice(&0x6000_0000u32.to_le_bytes());
        let total = Some(bytes.len() as u64);
        let err = check_lengths_to_end(&bytes[..], total, EXPLICIT_LE).unwrap_err();
        assert!(err.contains("declares"), "{err}");
    }

    #[test]
    fn stops_at_pixel_data() {
        let mut bytes = element_explicit(0x0008, 0x0060, b"CS", b"CT");
        bytes.extend([0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
        bytes.extend(0xFFFF_0000u32.to_le_bytes());
        assert_eq!(
            check_lengths(&bytes[..], Some(bytes.len() as u64), EXPLICIT_LE),
            Ok(())
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary peer bytes never panic the guard, in any encoding.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), explicit in any::<bool>(), big in any::<bool>()) {
            let encoding = Encoding { explicit_vr: explicit, big_endian: big };
            let _ = check_lengths(&bytes[..], Some(bytes.len() as u64), encoding);
        }

        /// Whatever the guard accepts, dicom-rs parses without allocating more
        /// than the input could justify (it must not abort or hang).
        #[test]
        fn accepted_input_parses_quickly(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if check_lengths(&bytes[..], Some(bytes.len() as u64), Encoding::IMPLICIT_LE).is_ok() {
                use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
                let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry.get("1.2.840.10008.1.2").unwrap();
                let _ = dicom_object::InMemDicomObject::read_dataset_with_ts(&bytes[..], ts);
            }
        }
    }
}
