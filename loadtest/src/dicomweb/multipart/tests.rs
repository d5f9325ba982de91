use super::*;

/// A fake Part 10 file: preamble, `DICM`, then `len` bytes that include
/// near-misses of a delimiter (`\r\n--` followed by something else).
fn fake_part10(len: usize, fill: u8) -> Vec<u8> {
    let mut file = vec![0u8; DICM_OFFSET];
    file.extend_from_slice(b"DICM");
    let pattern = [fill, b'\r', b'\n', b'-', b'-', b'x', fill, b'\r'];
    file.extend(pattern.iter().cycle().take(len));
    file
}

fn scan_in_chunks(
    body: &[u8],
    boundary: &str,
    chunk: usize,
) -> Result<MultipartSummary, MultipartError> {
    let mut scanner = MultipartScanner::new(boundary);
    for piece in body.chunks(chunk) {
        scanner.feed(piece)?;
    }
    scanner.finish()
}

#[test]
fn built_body_scans_back_into_the_same_parts_whatever_the_chunking() {
    let files = [
        fake_part10(1000, 1),
        fake_part10(0, 2),
        fake_part10(70_000, 3),
    ];
    let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
    let body = build_related_body(&refs, 42).expect("builds");
    assert!(
        body.body
            .starts_with(format!("--{}\r\n", body.boundary).as_bytes())
    );
    assert!(
        body.body
            .ends_with(format!("--{}--\r\n", body.boundary).as_bytes())
    );
    for chunk in [1, 2, 7, 131, 4096, body.body.len()] {
        let summary = scan_in_chunks(&body.body, &body.boundary, chunk).expect("scans");
        let sizes: Vec<u64> = summary.parts.iter().map(|p| p.bytes).collect();
        let expected: Vec<u64> = files.iter().map(|f| f.len() as u64).collect();
        assert_eq!(sizes, expected, "chunk size {chunk}");
        assert_eq!(summary.non_dicom_parts(), 0, "chunk size {chunk}");
        assert_eq!(summary.body_bytes, body.body.len() as u64);
        assert_eq!(summary.content_bytes(), expected.iter().sum::<u64>());
    }
}

#[test]
fn bodies_are_deterministic_and_boundaries_avoid_the_content() {
    let file = fake_part10(10, 0);
    let a = build_related_body(&[&file], 7).expect("builds");
    let b = build_related_body(&[&file], 7).expect("builds");
    assert_eq!(a.body, b.body);
    assert_ne!(
        a.boundary,
        build_related_body(&[&file], 8).unwrap().boundary
    );

    // A part that contains the first candidate forces the second.
    let mut tricky = fake_part10(10, 0);
    tricky.extend_from_slice(a.boundary.as_bytes());
    let other = build_related_body(&[&tricky], 7).expect("builds");
    assert_ne!(other.boundary, a.boundary);
    let summary = scan_in_chunks(&other.body, &other.boundary, 5).expect("scans");
    assert_eq!(summary.parts[0].bytes, tricky.len() as u64);
}

#[test]
fn content_type_names_the_boundary_and_the_dicom_type() {
    let body = build_related_body(&[b"x"], 1).expect("builds");
    let content_type = body.content_type();
    assert!(content_type.starts_with("multipart/related; type=\"application/dicom\"; boundary="));
    assert_eq!(
        boundary_from_content_type(&content_type).unwrap(),
        body.boundary
    );
}

#[test]
fn boundary_parsing_accepts_quotes_case_and_parameter_order() {
    let parse = boundary_from_content_type;
    assert_eq!(parse("multipart/related; boundary=abc").unwrap(), "abc");
    assert_eq!(
        parse("Multipart/Related;BOUNDARY=\"a b:c\"; type=\"application/dicom\"").unwrap(),
        "a b:c"
    );
    assert_eq!(
        parse("multipart/related; type=\"application/dicom\";transfer-syntax=1.2.840.10008.1.2.1; boundary=x-1").unwrap(),
        "x-1"
    );
    assert!(matches!(
        parse("multipart/related; type=\"application/dicom\""),
        Err(MultipartError::NoBoundary(_))
    ));
    assert!(matches!(
        parse("multipart/related; boundary=\"\""),
        Err(MultipartError::NoBoundary(_))
    ));
    assert!(matches!(
        parse("application/dicom+json"),
        Err(MultipartError::NotMultipartRelated(_))
    ));
}

#[test]
fn preamble_padding_parameters_and_epilogue_are_tolerated() {
    let file = fake_part10(5, 9);
    let mut body = b"This is a preamble.\r\n--B \t\r\ncontent-type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\nContent-Length: 137\r\n\r\n".to_vec();
    body.extend_from_slice(&file);
    body.extend_from_slice(b"\r\n--B--\r\nan epilogue that mentions\r\n--B\r\nagain");
    let summary = scan_in_chunks(&body, "B", 3).expect("scans");
    assert_eq!(summary.parts.len(), 1);
    assert!(summary.parts[0].is_dicom());
    assert_eq!(
        summary.parts[0].content_type.as_deref(),
        Some("application/dicom; transfer-syntax=1.2.840.10008.1.2.1")
    );
}

#[test]
fn parts_that_are_not_part10_files_are_counted() {
    let mut body = b"--B\r\n\r\nno headers and no DICM\r\n".to_vec();
    body.extend_from_slice(b"--B\r\nContent-Type: application/octet-stream\r\n\r\n");
    body.extend_from_slice(&fake_part10(3, 0));
    body.extend_from_slice(b"\r\n--B\r\nContent-Type: application/dicom\r\n\r\n");
    body.extend_from_slice(&fake_part10(3, 0));
    body.extend_from_slice(b"\r\n--B--");
    let summary = scan_in_chunks(&body, "B", 64).expect("scans");
    assert_eq!(summary.parts.len(), 3);
    assert_eq!(summary.parts[0].content_type, None);
    assert!(!summary.parts[0].has_dicm_prefix);
    assert!(summary.parts[1].has_dicm_prefix);
    assert!(!summary.parts[1].is_dicom());
    assert!(summary.parts[2].is_dicom());
    assert_eq!(summary.non_dicom_parts(), 2);
}

#[test]
fn an_unclosed_body_is_truncated() {
    let file = fake_part10(100, 0);
    let body = build_related_body(&[&file, &file], 3).expect("builds");
    let cut = &body.body[..body.body.len() - 10];
    assert_eq!(
        scan_in_chunks(cut, &body.boundary, 16),
        Err(MultipartError::Truncated { parts: 1 })
    );
    assert_eq!(
        scan_in_chunks(b"", "B", 16),
        Err(MultipartError::Truncated { parts: 0 })
    );
}

#[test]
fn garbage_after_a_delimiter_and_endless_headers_are_errors() {
    assert_eq!(
        scan_in_chunks(b"--Bjunk\r\n\r\nx\r\n--B--", "B", 4),
        Err(MultipartError::BadBoundaryLine)
    );
    let mut endless = b"--B\r\nX-Long: ".to_vec();
    endless.extend(std::iter::repeat_n(b'a', MAX_PART_HEADER_BYTES + 10));
    assert_eq!(
        scan_in_chunks(&endless, "B", 1000),
        Err(MultipartError::HeadersTooLong { part: 1 })
    );
}
