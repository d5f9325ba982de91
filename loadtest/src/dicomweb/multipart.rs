//! `multipart/related` bodies (RFC 2046 5.1, RFC 2387, PS3.18 8.6.1.2):
//! built whole for STOW-RS requests, scanned chunk by chunk for WADO-RS
//! responses so a retrieve is checked without ever being held in memory.

use memchr::memmem;

/// The media type of every part we send and expect back.
pub const DICOM_MEDIA_TYPE: &str = "application/dicom";
/// A Part 10 file carries `DICM` after its 128-byte preamble.
pub const DICM_OFFSET: usize = 128;
const DICM: &[u8; 4] = b"DICM";
/// Part headers longer than this are not headers but a broken stream.
const MAX_PART_HEADER_BYTES: usize = 16 * 1024;
/// Transport padding after a boundary is a few blanks at most.
const MAX_BOUNDARY_LINE_BYTES: usize = 1024;
/// How many boundary candidates to try before giving up on a body.
const BOUNDARY_ATTEMPTS: u64 = 16;

/// What is wrong with a multipart body or its Content-Type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("content type `{0}` is not multipart/related")]
    NotMultipartRelated(String),
    #[error("content type `{0}` names no boundary")]
    NoBoundary(String),
    #[error("no boundary candidate was absent from every part")]
    BoundaryCollision,
    #[error("unexpected bytes after a boundary, before its line ends")]
    BadBoundaryLine,
    #[error("part {part} has headers longer than {MAX_PART_HEADER_BYTES} bytes")]
    HeadersTooLong { part: usize },
    #[error("body ended after {parts} complete part(s), before the closing boundary")]
    Truncated { parts: usize },
}

/// A STOW-RS request body and the boundary that separates its parts.
#[derive(Debug, Clone)]
pub struct RelatedBody {
    pub boundary: String,
    pub body: Vec<u8>,
}

impl RelatedBody {
    /// The request's Content-Type (PS3.18 10.5.1.2).
    pub fn content_type(&self) -> String {
        format!(
            "multipart/related; type=\"{DICOM_MEDIA_TYPE}\"; boundary={}",
            self.boundary
        )
    }
}

/// One `application/dicom` part per Part 10 file, in order.
///
/// The boundary is derived from `seed` (deterministic bodies, comparable
/// runs) and checked against every part; a candidate that occurs in one is
/// replaced by the next.
pub fn build_related_body(parts: &[&[u8]], seed: u64) -> Result<RelatedBody, MultipartError> {
    let boundary = (0..BOUNDARY_ATTEMPTS)
        .map(|attempt| boundary_candidate(seed, attempt))
        .find(|candidate| {
            let finder = memmem::Finder::new(candidate.as_bytes());
            parts.iter().all(|part| finder.find(part).is_none())
        })
        .ok_or(MultipartError::BoundaryCollision)?;
    let header = format!("--{boundary}\r\nContent-Type: {DICOM_MEDIA_TYPE}\r\n\r\n");
    let total = parts
        .iter()
        .map(|p| p.len() + header.len() + 2)
        .sum::<usize>()
        + boundary.len()
        + 6;
    let mut body = Vec::with_capacity(total);
    for part in parts {
        body.extend_from_slice(header.as_bytes());
        body.extend_from_slice(part);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok(RelatedBody { boundary, body })
}

/// `dicom-loadtest-` and 16 hex digits: only boundary characters, no quoting needed.
fn boundary_candidate(seed: u64, attempt: u64) -> String {
    // SplitMix64 finaliser: neighbouring seeds give unrelated boundaries.
    let mut z = seed
        .wrapping_add(attempt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("dicom-loadtest-{:016x}", z ^ (z >> 31))
}

/// The boundary of a `multipart/related` Content-Type, unquoted.
pub fn boundary_from_content_type(content_type: &str) -> Result<String, MultipartError> {
    let mut items = content_type.split(';');
    let essence = items.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("multipart/related") {
        return Err(MultipartError::NotMultipartRelated(
            content_type.to_string(),
        ));
    }
    items
        .filter_map(|item| item.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"').to_string())
        .filter(|boundary| !boundary.is_empty())
        .ok_or_else(|| MultipartError::NoBoundary(content_type.to_string()))
}

/// What a scanned part looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSummary {
    /// Content bytes (headers and delimiters excluded).
    pub bytes: u64,
    /// `DICM` at offset 128, as every Part 10 file has.
    pub has_dicm_prefix: bool,
    /// The part's Content-Type header, if it had one.
    pub content_type: Option<String>,
}

impl PartSummary {
    /// A Part 10 file labelled `application/dicom` (parameters allowed).
    pub fn is_dicom(&self) -> bool {
        self.has_dicm_prefix
            && self.content_type.as_deref().is_some_and(|ct| {
                ct.split(';')
                    .next()
                    .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(DICOM_MEDIA_TYPE))
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanState {
    /// Before the first boundary.
    Preamble,
    /// Just after a delimiter: `--` closes the body, otherwise the line ends.
    AfterDelimiter,
    Headers,
    Content,
    /// After the closing delimiter; the epilogue is ignored.
    Closed,
}

/// Counts and checks the parts of a `multipart/related` body as its chunks
/// arrive. Memory is bounded by one chunk plus a delimiter's length (and a
/// part's headers): content bytes are counted, and only the first 132 bytes
/// of each part are kept, to look for `DICM`.
#[derive(Debug)]
pub struct MultipartScanner {
    delimiter: Vec<u8>,
    finder: memmem::Finder<'static>,
    state: ScanState,
    pending: Vec<u8>,
    current: Option<PartInProgress>,
    parts: Vec<PartSummary>,
    body_bytes: u64,
}

#[derive(Debug)]
struct PartInProgress {
    bytes: u64,
    head: Vec<u8>,
    content_type: Option<String>,
}

impl MultipartScanner {
    pub fn new(boundary: &str) -> Self {
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        MultipartScanner {
            finder: memmem::Finder::new(&delimiter).into_owned(),
            delimiter,
            state: ScanState::Preamble,
            // The first boundary may open the body without a CRLF before
            // it; a virtual CRLF lets one delimiter search find both.
            pending: b"\r\n".to_vec(),
            current: None,
            parts: Vec::new(),
            body_bytes: 0,
        }
    }

    /// Scan the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), MultipartError> {
        self.body_bytes += chunk.len() as u64;
        if self.state == ScanState::Closed {
            return Ok(());
        }
        // Taken out of `self` so the steps below can borrow it while
        // updating the scanner.
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(chunk);
        let mut used = 0;
        let result = loop {
            let rest = &pending[used..];
            let step = match self.state {
                ScanState::Preamble => match self.finder.find(rest) {
                    Some(at) => {
                        self.state = ScanState::AfterDelimiter;
                        at + self.delimiter.len()
                    }
                    None => rest.len().saturating_sub(self.delimiter.len() - 1),
                },
                ScanState::AfterDelimiter => match self.after_delimiter(rest) {
                    Ok(step) => step,
                    Err(error) => break Err(error),
                },
                ScanState::Headers => match self.headers(rest) {
                    Ok(step) => step,
                    Err(error) => break Err(error),
                },
                ScanState::Content => match self.finder.find(rest) {
                    Some(at) => {
                        self.content(&rest[..at]);
                        self.finish_part();
                        self.state = ScanState::AfterDelimiter;
                        at + self.delimiter.len()
                    }
                    None => {
                        // Keep what could be the start of a split delimiter.
                        let safe = rest.len().saturating_sub(self.delimiter.len() - 1);
                        self.content(&rest[..safe]);
                        safe
                    }
                },
                ScanState::Closed => rest.len(),
            };
            if step == 0 {
                break Ok(());
            }
            used += step;
        };
        if self.state == ScanState::Closed {
            pending = Vec::new();
        } else {
            pending.drain(..used);
        }
        self.pending = pending;
        result
    }

    /// The parts of a complete body; an error if it never closed.
    pub fn finish(self) -> Result<MultipartSummary, MultipartError> {
        if self.state != ScanState::Closed {
            return Err(MultipartError::Truncated {
                parts: self.parts.len(),
            });
        }
        Ok(MultipartSummary {
            body_bytes: self.body_bytes,
            parts: self.parts,
        })
    }

    /// Bytes consumed from the start of `rest`; 0 when more input is needed.
    fn after_delimiter(&mut self, rest: &[u8]) -> Result<usize, MultipartError> {
        if rest.len() < 2 {
            return Ok(0);
        }
        if rest.starts_with(b"--") {
            self.state = ScanState::Closed;
            return Ok(rest.len());
        }
        match memmem::find(rest, b"\r\n") {
            Some(at) if rest[..at].iter().all(|b| *b == b' ' || *b == b'\t') => {
                self.state = ScanState::Headers;
                Ok(at + 2)
            }
            Some(_) => Err(MultipartError::BadBoundaryLine),
            None if rest.len() > MAX_BOUNDARY_LINE_BYTES => Err(MultipartError::BadBoundaryLine),
            None => Ok(0),
        }
    }

    fn headers(&mut self, rest: &[u8]) -> Result<usize, MultipartError> {
        let (headers, consumed) = if rest.starts_with(b"\r\n") {
            (&rest[..0], 2)
        } else {
            match memmem::find(rest, b"\r\n\r\n") {
                Some(at) => (&rest[..at], at + 4),
                None if rest.len() > MAX_PART_HEADER_BYTES => {
                    return Err(MultipartError::HeadersTooLong {
                        part: self.parts.len() + 1,
                    });
                }
                None => return Ok(0),
            }
        };
        self.current = Some(PartInProgress {
            bytes: 0,
            head: Vec::with_capacity(DICM_OFFSET + DICM.len()),
            content_type: content_type_header(headers),
        });
        self.state = ScanState::Content;
        Ok(consumed)
    }

    fn content(&mut self, bytes: &[u8]) {
        if let Some(part) = self.current.as_mut() {
            part.bytes += bytes.len() as u64;
            let wanted = (DICM_OFFSET + DICM.len()).saturating_sub(part.head.len());
            part.head
                .extend_from_slice(&bytes[..wanted.min(bytes.len())]);
        }
    }

    fn finish_part(&mut self) {
        if let Some(part) = self.current.take() {
            self.parts.push(PartSummary {
                bytes: part.bytes,
                has_dicm_prefix: part.head.get(DICM_OFFSET..) == Some(&DICM[..]),
                content_type: part.content_type,
            });
        }
    }
}

/// Every part of one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartSummary {
    /// All bytes fed, delimiters and headers included.
    pub body_bytes: u64,
    pub parts: Vec<PartSummary>,
}

impl MultipartSummary {
    pub fn content_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }

    /// Parts that are not Part 10 files labelled `application/dicom`.
    pub fn non_dicom_parts(&self) -> usize {
        self.parts.iter().filter(|p| !p.is_dicom()).count()
    }
}

fn content_type_header(headers: &[u8]) -> Option<String> {
    String::from_utf8_lossy(headers)
        .split("\r\n")
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
}

#[cfg(test)]
mod tests;
