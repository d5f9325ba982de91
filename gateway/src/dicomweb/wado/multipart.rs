//! `multipart/related` response bodies (RFC 2387, PS3.18 8.6.1.2) streamed
//! from files: each part's headers are formatted up front, its content is
//! read from disk in 64 KiB chunks as the client takes it, so memory stays
//! flat however large the study. The length of the whole body is known
//! before the first byte is sent (it is announced as Content-Length).

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// How much of a file one chunk of the body carries.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// Where a part's content comes from.
#[derive(Debug, Clone)]
pub enum Content {
    /// Bytes already in memory (small: metadata, decoded frames).
    Memory(Bytes),
    /// Byte ranges of one file, concatenated (a whole file is one range).
    File {
        path: PathBuf,
        ranges: Vec<ByteRange>,
        /// The file must have exactly this size when opened, if set: what
        /// the index recorded, so a replaced file is never sent half-read.
        expected_size: Option<u64>,
    },
}

/// `length` bytes from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub length: u64,
}

impl Content {
    /// A whole file whose size the index recorded.
    pub fn whole_file(path: PathBuf, size: u64) -> Self {
        Self::File {
            path,
            ranges: vec![ByteRange {
                offset: 0,
                length: size,
            }],
            expected_size: Some(size),
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Self::Memory(bytes) => bytes.len() as u64,
            Self::File { ranges, .. } => ranges.iter().map(|r| r.length).sum(),
        }
    }
}

/// One part: its Content-Type and content.
#[derive(Debug, Clone)]
pub struct Part {
    pub content_type: String,
    pub content: Content,
}

/// A multipart body with a random boundary.
#[derive(Debug)]
pub struct MultipartBody {
    boundary: String,
    parts: Vec<Part>,
}

impl MultipartBody {
    pub fn new(parts: Vec<Part>) -> Self {
        let mut random = [0u8; 16];
        rand::rng().fill_bytes(&mut random);
        Self::with_boundary(format!("dgw-{}", hex::encode(random)), parts)
    }

    pub fn with_boundary(boundary: String, parts: Vec<Part>) -> Self {
        Self { boundary, parts }
    }

    /// The response Content-Type: `multipart/related; type="<part type>"; boundary=...`.
    pub fn content_type(&self, part_type: &str) -> String {
        format!(
            "multipart/related; type=\"{part_type}\"; boundary={}",
            self.boundary
        )
    }

    fn part_head(&self, part: &Part) -> Bytes {
        Bytes::from(format!(
            "--{}\r\nContent-Type: {}\r\n\r\n",
            self.boundary, part.content_type
        ))
    }

    fn closing(&self) -> Bytes {
        Bytes::from(format!("--{}--\r\n", self.boundary))
    }

    /// The body as segments: headers and closing delimiter in memory,
    /// contents as they were given.
    fn segments(self) -> VecDeque<Content> {
        let mut segments = VecDeque::with_capacity(self.parts.len() * 3 + 1);
        for part in &self.parts {
            segments.push_back(Content::Memory(self.part_head(part)));
            segments.push_back(part.content.clone());
            segments.push_back(Content::Memory(Bytes::from_static(b"\r\n")));
        }
        segments.push_back(Content::Memory(self.closing()));
        segments
    }

    /// Total length in bytes of the body.
    pub fn content_length(&self) -> u64 {
        let framing: u64 = self
            .parts
            .iter()
            .map(|p| self.part_head(p).len() as u64 + 2)
            .sum();
        let contents: u64 = self.parts.iter().map(|p| p.content.len()).sum();
        framing + contents + self.closing().len() as u64
    }

    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, io::Error>> + 'static {
        stream_contents(self.segments())
    }
}

/// Streams `segments` in order; file ranges are read in chunks.
pub fn stream_contents(
    segments: VecDeque<Content>,
) -> impl Stream<Item = Result<Bytes, io::Error>> + 'static {
    let state = StreamState {
        segments,
        ranges: VecDeque::new(),
        open: None,
        remaining: 0,
    };
    futures::stream::try_unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Ok(chunk.map(|c| (c, state)))
    })
}

struct StreamState {
    segments: VecDeque<Content>,
    /// Ranges of the file segment being sent.
    ranges: VecDeque<ByteRange>,
    open: Option<(PathBuf, tokio::fs::File)>,
    /// Bytes left in the range being read.
    remaining: u64,
}

impl StreamState {
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if self.remaining > 0 {
                let (path, file) = self
                    .open
                    .as_mut()
                    .ok_or_else(|| io::Error::other("no open file"))?;
                let want = self.remaining.min(CHUNK_SIZE as u64) as usize;
                let mut buffer = BytesMut::with_capacity(want);
                let read = file.take(want as u64).read_buf(&mut buffer).await?;
                if read == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} ended {} bytes early", path.display(), self.remaining),
                    ));
                }
                self.remaining -= read as u64;
                return Ok(Some(buffer.freeze()));
            }
            if let Some(range) = self.ranges.pop_front() {
                let (_, file) = self
                    .open
                    .as_mut()
                    .ok_or_else(|| io::Error::other("no open file"))?;
                file.seek(io::SeekFrom::Start(range.offset)).await?;
                self.remaining = range.length;
                continue;
            }
            match self.segments.pop_front() {
                None => return Ok(None),
                Some(Content::Memory(bytes)) if bytes.is_empty() => continue,
                Some(Content::Memory(bytes)) => return Ok(Some(bytes)),
                Some(Content::File {
                    path,
                    ranges,
                    expected_size,
                }) => {
                    self.open_file(path, &ranges, expected_size).await?;
                    self.ranges = ranges.into();
                }
            }
        }
    }

    /// Opens `path` unless it is the file already open, and checks that
    /// it holds the ranges (and has the size the index recorded).
    async fn open_file(
        &mut self,
        path: PathBuf,
        ranges: &[ByteRange],
        expected_size: Option<u64>,
    ) -> io::Result<()> {
        if self.open.as_ref().is_none_or(|(open, _)| *open != path) {
            let file = tokio::fs::File::open(&path).await?;
            self.open = Some((path, file));
        }
        let (path, file) = self
            .open
            .as_ref()
            .ok_or_else(|| io::Error::other("no open file"))?;
        let size = file.metadata().await?.len();
        if let Some(expected) = expected_size
            && size != expected
        {
            return Err(io::Error::other(format!(
                "{} is {size} bytes, the index recorded {expected}",
                path.display()
            )));
        }
        let end = ranges
            .iter()
            .map(|r| r.offset.saturating_add(r.length))
            .max()
            .unwrap_or(0);
        if end > size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is {size} bytes, a range ends at {end}", path.display()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    fn collect(body: MultipartBody) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let chunks: Vec<Bytes> = body.into_stream().try_collect().await.unwrap();
            chunks.concat()
        })
    }

    #[test]
    fn frames_parts_and_announces_the_exact_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.dcm");
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let parts = vec![
            Part {
                content_type: "application/dicom; transfer-syntax=1.2.840.10008.1.2.1".into(),
                content: Content::whole_file(path.clone(), content.len() as u64),
            },
            Part {
                content_type: "application/octet-stream".into(),
                content: Content::File {
                    path: path.clone(),
                    ranges: vec![
                        ByteRange {
                            offset: 10,
                            length: 5,
                        },
                        ByteRange {
                            offset: 100_000,
                            length: 70_000,
                        },
                    ],
                    expected_size: None,
                },
            },
            Part {
                content_type: "text/plain".into(),
                content: Content::Memory(Bytes::from_static(b"hi")),
            },
        ];
        let body = MultipartBody::with_boundary("XyZ".into(), parts);
        assert_eq!(
            body.content_type("application/dicom"),
            "multipart/related; type=\"application/dicom\"; boundary=XyZ"
        );
        let announced = body.content_length();
        let bytes = collect(body);
        assert_eq!(bytes.len() as u64, announced);

        let mut expected = Vec::new();
        expected.extend_from_slice(
            b"--XyZ\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n",
        );
        expected.extend_from_slice(&content);
        expected.extend_from_slice(b"\r\n--XyZ\r\nContent-Type: application/octet-stream\r\n\r\n");
        expected.extend_from_slice(&content[10..15]);
        expected.extend_from_slice(&content[100_000..170_000]);
        expected
            .extend_from_slice(b"\r\n--XyZ\r\nContent-Type: text/plain\r\n\r\nhi\r\n--XyZ--\r\n");
        assert!(bytes == expected, "multipart framing differs");
    }

    #[test]
    fn a_file_that_changed_size_fails_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.dcm");
        std::fs::write(&path, b"short").unwrap();
        let body = MultipartBody::new(vec![Part {
            content_type: "application/dicom".into(),
            content: Content::whole_file(path, 10),
        }]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result: Result<Vec<Bytes>, _> = runtime.block_on(body.into_stream().try_collect());
        assert!(result.is_err());
    }

    #[test]
    fn boundaries_are_random() {
        let a = MultipartBody::new(Vec::new()).content_type("x/y");
        let b = MultipartBody::new(Vec::new()).content_type("x/y");
        assert_ne!(a, b);
    }
}
