//! Our own reader for the data-transfer phase of an association.
//!
//! `mod.rs` reads the A-ASSOCIATE-RQ (with dicom-ul's strict reader); after
//! that we read PDUs ourselves so
//! that (a) every PDU length is checked against the max PDU we offered
//! before a byte of its body is buffered (dicom-rs's P-DATA reader is
//! non-strict and would buffer whatever length a peer announces), and (b)
//! P-DATA bodies stream to their destination in chunks instead of being
//! assembled in memory. Every read is bounded by a deadline that the
//! association handler moves per message, so a peer trickling bytes is cut off.

use bytes::{Buf, Bytes, BytesMut};
use dicom_ul::Pdu;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// PDU types (PS3.8 9.3).
mod pdu_type {
    pub const ASSOCIATE_RQ: u8 = 0x01;
    pub const ASSOCIATE_AC: u8 = 0x02;
    pub const ASSOCIATE_RJ: u8 = 0x03;
    pub const P_DATA_TF: u8 = 0x04;
    pub const RELEASE_RQ: u8 = 0x05;
    pub const RELEASE_RP: u8 = 0x06;
    pub const ABORT: u8 = 0x07;
}

/// PDU header: type, reserved, 4-byte length.
const PDU_HEADER: usize = 6;
/// PDV item header: 4-byte length, presentation context ID, message control header.
const PDV_HEADER: usize = 6;
/// Fixed body length of A-RELEASE-RQ/RP and A-ABORT.
const SHORT_PDU_BODY: u32 = 4;
/// Most bytes handed out per chunk; also the read buffer's growth step.
const CHUNK: usize = 64 * 1024;

/// What arrived next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Pdv(PdvHeader),
    ReleaseRequested,
    Aborted,
}

/// One presentation data value item; its body is read with [`Wire::read_chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdvHeader {
    pub presentation_context_id: u8,
    pub is_command: bool,
    pub is_last: bool,
    pub length: u32,
}

/// Why the data-transfer phase cannot go on. Each ends the association.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("peer closed the connection")]
    Closed,
    #[error("deadline passed while reading from the peer")]
    Timeout,
    #[error("P-DATA PDU of {length} bytes exceeds the negotiated maximum of {max}")]
    PduTooLarge { length: u32, max: u32 },
    #[error("malformed PDU: {0}")]
    Malformed(&'static str),
    #[error("unexpected PDU type {0:#04x} during data transfer")]
    UnexpectedPdu(u8),
    #[error("unrecognised PDU type {0:#04x}")]
    UnknownPdu(u8),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl WireError {
    /// The A-ABORT reason to send, if we should send one (PS3.8 9.3.8).
    pub fn abort_pdu(&self) -> Option<Pdu> {
        use dicom_ul::pdu::{AbortRQServiceProviderReason as R, AbortRQSource};
        let reason = match self {
            Self::Closed | Self::Io(_) => return None,
            Self::Timeout => R::ReasonNotSpecified,
            Self::PduTooLarge { .. } | Self::Malformed(_) => R::InvalidPduParameter,
            Self::UnexpectedPdu(_) => R::UnexpectedPdu,
            Self::UnknownPdu(_) => R::UnrecognizedPdu,
        };
        Some(Pdu::AbortRQ {
            source: AbortRQSource::ServiceProvider(reason),
        })
    }

    pub fn as_label(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Timeout => "timeout",
            Self::PduTooLarge { .. } => "pdu_too_large",
            Self::Malformed(_) => "malformed_pdu",
            Self::UnexpectedPdu(_) | Self::UnknownPdu(_) => "unexpected_pdu",
            Self::Io(_) => "io_error",
        }
    }
}

/// The data-transfer phase of one association, over any byte stream.
pub struct Wire<'a, S> {
    stream: &'a mut S,
    buffer: BytesMut,
    max_pdu: u32,
    /// Bytes of the current P-DATA PDU not yet consumed.
    pdu_remaining: u32,
    /// Bytes of the current PDV body not yet consumed.
    pdv_remaining: u32,
    deadline: Instant,
}

impl<'a, S> Wire<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// `leftover` holds bytes read past the A-ASSOCIATE-RQ.
    pub fn new(stream: &'a mut S, leftover: BytesMut, max_pdu: u32, deadline: Instant) -> Self {
        let mut buffer = leftover;
        buffer.reserve(CHUNK);
        Self {
            stream,
            buffer,
            max_pdu,
            pdu_remaining: 0,
            pdv_remaining: 0,
            deadline,
        }
    }

    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    /// Reads up to the next PDV header, release request or abort. Any unread
    /// body of the previous PDV is skipped.
    pub async fn next(&mut self) -> Result<Incoming, WireError> {
        while self.pdv_remaining > 0 {
            self.read_chunk().await?;
        }
        if self.pdu_remaining == 0 {
            self.fill(PDU_HEADER).await?;
            let kind = self.buffer[0];
            let length = u32::from_be_bytes([
                self.buffer[2],
                self.buffer[3],
                self.buffer[4],
                self.buffer[5],
            ]);
            match kind {
                pdu_type::P_DATA_TF => {
                    if length > self.max_pdu {
                        return Err(WireError::PduTooLarge {
                            length,
                            max: self.max_pdu,
                        });
                    }
                    if (length as usize) < PDV_HEADER {
                        return Err(WireError::Malformed("P-DATA PDU too short for one PDV"));
                    }
                    self.buffer.advance(PDU_HEADER);
                    self.pdu_remaining = length;
                }
                pdu_type::RELEASE_RQ | pdu_type::ABORT => {
                    if length != SHORT_PDU_BODY {
                        return Err(WireError::Malformed(
                            "release or abort PDU with a wrong length",
                        ));
                    }
                    self.fill(PDU_HEADER + SHORT_PDU_BODY as usize).await?;
                    self.buffer.advance(PDU_HEADER + SHORT_PDU_BODY as usize);
                    return Ok(if kind == pdu_type::ABORT {
                        Incoming::Aborted
                    } else {
                        Incoming::ReleaseRequested
                    });
                }
                pdu_type::ASSOCIATE_RQ
                | pdu_type::ASSOCIATE_AC
                | pdu_type::ASSOCIATE_RJ
                | pdu_type::RELEASE_RP => return Err(WireError::UnexpectedPdu(kind)),
                other => return Err(WireError::UnknownPdu(other)),
            }
        }
        if (self.pdu_remaining as usize) < PDV_HEADER {
            return Err(WireError::Malformed("PDV item header crosses the PDU end"));
        }
        self.fill(PDV_HEADER).await?;
        let item_length = u32::from_be_bytes([
            self.buffer[0],
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
        ]);
        let presentation_context_id = self.buffer[4];
        let control = self.buffer[5];
        if item_length < 2 || item_length > self.pdu_remaining - 4 {
            return Err(WireError::Malformed("PDV item length does not fit its PDU"));
        }
        self.buffer.advance(PDV_HEADER);
        self.pdu_remaining -= 4 + item_length;
        self.pdv_remaining = item_length - 2;
        Ok(Incoming::Pdv(PdvHeader {
            presentation_context_id,
            is_command: control & 0x01 != 0,
            is_last: control & 0x02 != 0,
            length: item_length - 2,
        }))
    }

    /// Bytes of the current PDV body not yet read.
    pub fn pdv_remaining(&self) -> u32 {
        self.pdv_remaining
    }

    /// Reads the next piece (at most 64 KiB) of the current PDV body; empty
    /// when the body is done.
    pub async fn read_chunk(&mut self) -> Result<Bytes, WireError> {
        if self.pdv_remaining == 0 {
            return Ok(Bytes::new());
        }
        if self.buffer.is_empty() {
            self.read_more().await?;
        }
        let take = self
            .buffer
            .len()
            .min(self.pdv_remaining as usize)
            .min(CHUNK);
        self.pdv_remaining -= take as u32;
        Ok(self.buffer.split_to(take).freeze())
    }

    /// Sends one PDU (responses, A-RELEASE-RP, A-ABORT).
    pub async fn send(&mut self, pdu: &Pdu) -> Result<(), WireError> {
        let mut bytes = Vec::with_capacity(512);
        dicom_ul::write_pdu(&mut bytes, pdu).map_err(|e| std::io::Error::other(e.to_string()))?;
        let write = async {
            self.stream.write_all(&bytes).await?;
            self.stream.flush().await
        };
        tokio::time::timeout_at(self.deadline, write)
            .await
            .map_err(|_| WireError::Timeout)??;
        Ok(())
    }

    async fn fill(&mut self, wanted: usize) -> Result<(), WireError> {
        while self.buffer.len() < wanted {
            self.read_more().await?;
        }
        Ok(())
    }

    async fn read_more(&mut self) -> Result<(), WireError> {
        self.buffer.reserve(CHUNK);
        let read = self.stream.read_buf(&mut self.buffer);
        let n = tokio::time::timeout_at(self.deadline, read)
            .await
            .map_err(|_| WireError::Timeout)??;
        if n == 0 {
            return Err(WireError::Closed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn p_data(pc: u8, control: u8, body: &[u8]) -> Vec<u8> {
        let item_len = (body.len() + 2) as u32;
        let pdu_len = item_len + 4;
        let mut out = vec![pdu_type::P_DATA_TF, 0];
        out.extend(pdu_len.to_be_bytes());
        out.extend(item_len.to_be_bytes());
        out.extend([pc, control]);
        out.extend(body);
        out
    }

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn reads_pdvs_and_release() {
        let (mut near, mut far) = tokio::io::duplex(1 << 20);
        let mut bytes = p_data(1, 0b11, b"command");
        bytes.extend(p_data(1, 0b10, &[7u8; 100_000]));
        bytes.extend([pdu_type::RELEASE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
        far.write_all(&bytes).await.unwrap();
        let mut wire = Wire::new(&mut near, BytesMut::new(), 200_000, deadline());

        let Incoming::Pdv(h) = wire.next().await.unwrap() else {
            panic!()
        };
        assert!(h.is_command && h.is_last && h.length == 7);
        assert_eq!(&wire.read_chunk().await.unwrap()[..], b"command");

        let Incoming::Pdv(h) = wire.next().await.unwrap() else {
            panic!()
        };
        assert!(!h.is_command && h.is_last && h.length == 100_000);
        let mut total = 0;
        while wire.pdv_remaining() > 0 {
            let chunk = wire.read_chunk().await.unwrap();
            assert!(chunk.len() <= CHUNK);
            total += chunk.len();
        }
        assert_eq!(total, 100_000);
        assert_eq!(wire.next().await.unwrap(), Incoming::ReleaseRequested);
    }

    #[tokio::test]
    async fn oversized_pdu_is_refused_before_its_body_arrives() {
        let (mut near, mut far) = tokio::io::duplex(1024);
        // Announce 1 GiB, send only the header.
        far.write_all(&[pdu_type::P_DATA_TF, 0, 0x40, 0, 0, 0])
            .await
            .unwrap();
        let mut wire = Wire::new(&mut near, BytesMut::new(), 16_384, deadline());
        assert!(matches!(
            wire.next().await,
            Err(WireError::PduTooLarge {
                length: 0x4000_0000,
                max: 16_384
            })
        ));
    }

    #[tokio::test]
    async fn trickling_peer_hits_the_deadline() {
        let (mut near, mut far) = tokio::io::duplex(1024);
        far.write_all(&[pdu_type::P_DATA_TF, 0]).await.unwrap();
        let mut wire = Wire::new(
            &mut near,
            BytesMut::new(),
            16_384,
            Instant::now() + Duration::from_millis(50),
        );
        assert!(matches!(wire.next().await, Err(WireError::Timeout)));
    }

    #[tokio::test]
    async fn pdv_longer_than_its_pdu_is_malformed() {
        let (mut near, mut far) = tokio::io::duplex(1024);
        let mut bytes = vec![pdu_type::P_DATA_TF, 0, 0, 0, 0, 10];
        bytes.extend(100u32.to_be_bytes());
        bytes.extend([1, 0, 0, 0, 0, 0]);
        far.write_all(&bytes).await.unwrap();
        let mut wire = Wire::new(&mut near, BytesMut::new(), 16_384, deadline());
        assert!(matches!(wire.next().await, Err(WireError::Malformed(_))));
    }

    #[tokio::test]
    async fn association_pdu_mid_transfer_is_unexpected() {
        let (mut near, mut far) = tokio::io::duplex(1024);
        far.write_all(&[pdu_type::ASSOCIATE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0])
            .await
            .unwrap();
        let mut wire = Wire::new(&mut near, BytesMut::new(), 16_384, deadline());
        let err = wire.next().await.unwrap_err();
        assert!(matches!(err, WireError::UnexpectedPdu(0x01)));
        assert!(err.abort_pdu().is_some());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Any byte stream from a peer ends in PDVs, a release, an abort or a
        /// typed error: never a panic, never more than the max PDU buffered.
        #[test]
        fn arbitrary_streams_end_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            runtime.block_on(async {
                let (mut near, mut far) = tokio::io::duplex(4096);
                far.write_all(&bytes).await.unwrap();
                drop(far);
                let mut wire = Wire::new(&mut near, BytesMut::new(), 16_384, Instant::now() + Duration::from_secs(1));
                for _ in 0..4096 {
                    match wire.next().await {
                        Ok(Incoming::Pdv(_)) => {
                            while wire.pdv_remaining() > 0 {
                                if wire.read_chunk().await.is_err() {
                                    return Ok(());
                                }
                            }
                        }
                        Ok(_) | Err(_) => return Ok(()),
                    }
                    prop_assert!(wire.buffer.capacity() <= 16_384 + 2 * CHUNK);
                }
                Ok::<(), TestCaseError>(())
            })?;
        }
    }
}
