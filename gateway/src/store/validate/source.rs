//! Where the validator's bytes come from: any reader (values skipped by
//! copying into a sink) or a file (values skipped by seeking, so a 500 MB
//! Pixel Data costs one seek, not 500 MB of reads).

use std::io::{self, BufReader, Read, Seek};

/// A byte source the walk reads headers from and skips values in.
pub(super) trait Source {
    /// Reads some bytes; 0 only at the end of the input.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Skips up to `n` bytes and says how many there were.
    fn skip(&mut self, n: u64) -> io::Result<u64>;
}

/// Any reader; the caller bounds it (`Read::take`).
pub(super) struct Streamed<R>(pub R);

impl<R: Read> Source for Streamed<R> {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        // io::copy uses a fixed stack buffer: nothing sized by `n`.
        io::copy(&mut (&mut self.0).take(n), &mut io::sink())
    }
}

/// A seekable reader with `remaining` bytes from its current position.
pub(super) struct Positioned<R> {
    inner: BufReader<R>,
    remaining: u64,
}

impl<R: Read + Seek> Positioned<R> {
    pub(super) fn new(inner: R, remaining: u64) -> Self {
        Self {
            inner: BufReader::new(inner),
            remaining,
        }
    }
}

impl<R: Read + Seek> Source for Positioned<R> {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let cap = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        self.remaining -= n as u64;
        Ok(n)
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let n = n.min(self.remaining);
        let offset = i64::try_from(n).map_err(io::Error::other)?;
        self.inner.seek_relative(offset)?;
        self.remaining -= n;
        Ok(n)
    }
}
