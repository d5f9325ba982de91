//! Tests of the Part 10 walk, on files built byte by byte.

use super::*;

/// Builds an explicit VR LE Part 10 file from raw data set bytes.
fn part10(transfer_syntax: &str, dataset: &[u8]) -> Vec<u8> {
    let mut ts = transfer_syntax.as_bytes().to_vec();
    if ts.len() % 2 == 1 {
        ts.push(0);
    }
    let mut meta = Vec::new();
    meta.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
    meta.extend_from_slice(&(ts.len() as u16).to_le_bytes());
    meta.extend_from_slice(&ts);
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    file.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    file.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    file.extend_from_slice(&meta);
    file.extend_from_slice(dataset);
    file
}

fn short(group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut e = Vec::new();
    e.extend_from_slice(&group.to_le_bytes());
    e.extend_from_slice(&element.to_le_bytes());
    e.extend_from_slice(vr);
    e.extend_from_slice(&(value.len() as u16).to_le_bytes());
    e.extend_from_slice(value);
    e
}

fn long(group: u16, element: u16, vr: &[u8; 2], length: u32) -> Vec<u8> {
    let mut e = Vec::new();
    e.extend_from_slice(&group.to_le_bytes());
    e.extend_from_slice(&element.to_le_bytes());
    e.extend_from_slice(vr);
    e.extend_from_slice(&[0, 0]);
    e.extend_from_slice(&length.to_le_bytes());
    e
}

fn item(tag_element: u16, length: u32) -> Vec<u8> {
    let mut e = vec![0xFE, 0xFF];
    e.extend_from_slice(&tag_element.to_le_bytes());
    e.extend_from_slice(&length.to_le_bytes());
    e
}

fn write(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.dcm");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn geometry_elements() -> Vec<u8> {
    let mut ds = Vec::new();
    ds.extend(short(0x0028, 0x0002, b"US", &1u16.to_le_bytes()));
    ds.extend(short(0x0028, 0x0004, b"CS", b"MONOCHROME2 "));
    ds.extend(short(0x0028, 0x0008, b"IS", b"3 "));
    ds.extend(short(0x0028, 0x0010, b"US", &2u16.to_le_bytes()));
    ds.extend(short(0x0028, 0x0011, b"US", &2u16.to_le_bytes()));
    ds.extend(short(0x0028, 0x0100, b"US", &16u16.to_le_bytes()));
    ds
}

#[test]
fn finds_native_pixel_data_past_a_nested_sequence() {
    let mut ds = Vec::new();
    ds.extend(short(0x0008, 0x0060, b"CS", b"CT"));
    // A sequence of undefined length holding an item of undefined length.
    ds.extend(long(0x0008, 0x1140, b"SQ", UNDEFINED_LENGTH));
    ds.extend(item(0xE000, UNDEFINED_LENGTH));
    ds.extend(short(0x0008, 0x1150, b"UI", b"1.2\0"));
    ds.extend(item(0xE00D, 0));
    ds.extend(item(0xE0DD, 0));
    ds.extend(geometry_elements());
    ds.extend(long(0x0042, 0x0011, b"OB", 6));
    ds.extend_from_slice(b"abcdef");
    ds.extend(long(0x7FE0, 0x0010, b"OW", 24));
    let pixels: Vec<u8> = (0..24).collect();
    ds.extend_from_slice(&pixels);
    let file = part10("1.2.840.10008.1.2.1", &ds);
    let (_dir, path) = write(&file);
    let layout = scan(&path).unwrap();
    assert_eq!(layout.transfer_syntax, "1.2.840.10008.1.2.1");
    assert_eq!(
        layout.geometry,
        ImageGeometry {
            rows: Some(2),
            columns: Some(2),
            samples_per_pixel: Some(1),
            bits_allocated: Some(16),
            number_of_frames: Some(3),
            photometric_interpretation: Some("MONOCHROME2".into()),
        }
    );
    let doc = layout.element(Tag(0x0042, 0x0011)).unwrap();
    assert_eq!(
        &file[doc.offset as usize..(doc.offset + doc.length) as usize],
        b"abcdef"
    );
    match layout.pixel_data.unwrap() {
        PixelData::Native { offset, length, vr } => {
            assert_eq!(vr, Some(VR::OW));
            assert_eq!(
                &file[offset as usize..(offset + length) as usize],
                &pixels[..]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn finds_fragments_and_the_offset_table() {
    let mut ds = geometry_elements();
    ds.extend(long(0x7FE0, 0x0010, b"OB", UNDEFINED_LENGTH));
    ds.extend(item(0xE000, 8));
    ds.extend_from_slice(&0u32.to_le_bytes());
    ds.extend_from_slice(&12u32.to_le_bytes());
    ds.extend(item(0xE000, 4));
    ds.extend_from_slice(b"AAAA");
    ds.extend(item(0xE000, 2));
    ds.extend_from_slice(b"BB");
    ds.extend(item(0xE0DD, 0));
    let file = part10("1.2.840.10008.1.2.4.50", &ds);
    let (_dir, path) = write(&file);
    let layout = scan(&path).unwrap();
    let Some(PixelData::Encapsulated {
        basic_offset_table,
        fragments,
    }) = layout.pixel_data
    else {
        panic!("not encapsulated")
    };
    assert_eq!(basic_offset_table, vec![0, 12]);
    assert_eq!(fragments.len(), 2);
    assert_eq!(fragments[0].item_offset, 0);
    assert_eq!(fragments[1].item_offset, 12);
    let f = fragments[1];
    assert_eq!(
        &file[f.offset as usize..(f.offset + f.length) as usize],
        b"BB"
    );
}

#[test]
fn lengths_past_the_end_are_refused_not_allocated() {
    let mut ds = Vec::new();
    ds.extend(long(0x0042, 0x0011, b"OB", 0xFFFF_FFF0));
    ds.extend_from_slice(b"ab");
    let (_dir, path) = write(&part10("1.2.840.10008.1.2.1", &ds));
    assert!(matches!(scan(&path), Err(LayoutError::Malformed(_))));

    let mut ds = Vec::new();
    ds.extend(long(0x7FE0, 0x0010, b"OW", 1000));
    let (_dir, path) = write(&part10("1.2.840.10008.1.2.1", &ds));
    assert!(matches!(scan(&path), Err(LayoutError::Malformed(_))));

    // Unterminated sequence.
    let mut ds = Vec::new();
    ds.extend(long(0x0008, 0x1140, b"SQ", UNDEFINED_LENGTH));
    ds.extend(item(0xE000, UNDEFINED_LENGTH));
    let (_dir, path) = write(&part10("1.2.840.10008.1.2.1", &ds));
    assert!(matches!(scan(&path), Err(LayoutError::Malformed(_))));

    let (_dir, path) = write(b"not dicom at all");
    assert!(scan(&path).is_err());
}

#[test]
fn deeply_nested_sequences_are_refused() {
    let mut ds = Vec::new();
    for _ in 0..(MAX_DEPTH + 2) {
        ds.extend(long(0x0008, 0x1140, b"SQ", UNDEFINED_LENGTH));
        ds.extend(item(0xE000, UNDEFINED_LENGTH));
    }
    let (_dir, path) = write(&part10("1.2.840.10008.1.2.1", &ds));
    match scan(&path) {
        Err(LayoutError::Malformed(m)) => assert!(m.contains("nested"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn implicit_vr_uses_the_dictionary() {
    let mut ds = Vec::new();
    // (0028,0010) Rows, implicit: tag, 4-byte length, value.
    ds.extend_from_slice(&[0x28, 0x00, 0x10, 0x00, 2, 0, 0, 0, 64, 0]);
    ds.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, 4, 0, 0, 0, 1, 2, 3, 4]);
    let (_dir, path) = write(&part10("1.2.840.10008.1.2", &ds));
    let layout = scan(&path).unwrap();
    assert_eq!(layout.geometry.rows, Some(64));
    assert!(matches!(
        layout.pixel_data,
        // "OB or OW" in the dictionary: the walk leaves it open.
        Some(PixelData::Native {
            length: 4,
            vr: None,
            ..
        })
    ));
}
