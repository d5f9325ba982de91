//! P-DATA-TF framing (PS3.8 9.3.5, E.2): splits a command or a data set
//! into PDUs no larger than the peer's maximum PDU length.
//!
//! We frame messages ourselves instead of using dicom-ul's `AsyncPDataWriter`
//! because its `Drop` calls `block_in_place`, which panics on a
//! current-thread runtime (the default of `#[tokio::test]`), and because
//! batching many PDUs into one write saves system calls on fast links.
//! Deadlines are the caller's: egress wraps every write in its per-message
//! timeout.

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// P-DATA-TF PDU type.
pub const PDATA_TF: u8 = 0x04;
/// Bytes of a PDU header: type, reserved, 4-byte length.
pub const PDU_HEADER_LEN: usize = 6;
/// Bytes of a PDV item header: 4-byte length, context ID, control header.
pub const PDV_HEADER_LEN: usize = 6;
/// Message control header bits, PS3.8 E.2.
const CONTROL_COMMAND: u8 = 0x01;
const CONTROL_LAST: u8 = 0x02;

/// A peer that advertises "no limit" (0) still gets PDUs of at most this
/// size, so one instance never becomes one giant allocation.
pub const UNLIMITED_PDU_CAP: u32 = 1024 * 1024;
/// Flush the outgoing buffer once it holds this much.
pub const WRITE_BATCH: usize = 256 * 1024;

/// Whether a fragment carries a command or a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    Command,
    DataSet,
}

/// Send `payload` as one message (command or data set) on presentation
/// context `context_id`, in as many PDUs as `peer_max_pdu` requires.
///
/// `peer_max_pdu` is the peer's Maximum Length (PS3.8 D.1), which counts the
/// PDV items of a PDU, headers included.
pub async fn send_message<W: AsyncWrite + Unpin>(
    stream: &mut W,
    buffer: &mut Vec<u8>,
    context_id: u8,
    fragment: Fragment,
    payload: &[u8],
    peer_max_pdu: u32,
) -> std::io::Result<()> {
    buffer.clear();
    let mut chunks = payload.chunks(chunk_len(peer_max_pdu)).peekable();
    // An empty payload still needs one (empty, last) fragment.
    if chunks.peek().is_none() {
        push_pdu(buffer, context_id, fragment, &[], true);
    }
    while let Some(chunk) = chunks.next() {
        let is_last = chunks.peek().is_none();
        push_pdu(buffer, context_id, fragment, chunk, is_last);
        if buffer.len() >= WRITE_BATCH {
            stream.write_all(buffer).await?;
            buffer.clear();
        }
    }
    if !buffer.is_empty() {
        stream.write_all(buffer).await?;
        buffer.clear();
    }
    stream.flush().await
}

/// The PDU length we will actually use for a peer's advertised maximum.
pub fn effective_max_pdu(peer_max_pdu: u32) -> usize {
    let limit = if peer_max_pdu == 0 {
        UNLIMITED_PDU_CAP
    } else {
        peer_max_pdu.min(UNLIMITED_PDU_CAP)
    };
    // Leave room for at least one byte of payload after the PDV header.
    (limit as usize).max(PDV_HEADER_LEN + 1)
}

/// Payload bytes per PDU for a peer's advertised Maximum Length, which
/// counts the PDV item (header included), PS3.8 D.1. At least one.
pub fn chunk_len(peer_max_pdu: u32) -> usize {
    effective_max_pdu(peer_max_pdu) - PDV_HEADER_LEN
}

/// Appends one P-DATA-TF PDU holding one PDV item with `chunk`.
pub fn push_pdu(
    buffer: &mut Vec<u8>,
    context_id: u8,
    fragment: Fragment,
    chunk: &[u8],
    is_last: bool,
) {
    let pdv_len = (chunk.len() + 2) as u32;
    let pdu_len = pdv_len + 4;
    let mut control = 0;
    if fragment == Fragment::Command {
        control |= CONTROL_COMMAND;
    }
    if is_last {
        control |= CONTROL_LAST;
    }
    buffer.reserve(PDU_HEADER_LEN + PDV_HEADER_LEN + chunk.len());
    buffer.extend_from_slice(&[PDATA_TF, 0]);
    buffer.extend_from_slice(&pdu_len.to_be_bytes());
    buffer.extend_from_slice(&pdv_len.to_be_bytes());
    buffer.extend_from_slice(&[context_id, control]);
    buffer.extend_from_slice(chunk);
}

/// Test support (feature `test-support`): parses framed bytes back with
/// dicom-ul's own reader into (PDU length, PDV length, type, is_last) per
/// PDV item. Panics on anything but whole P-DATA PDUs, so never on peer bytes.
#[cfg(any(test, feature = "test-support"))]
pub fn parse_pdvs(
    bytes: &[u8],
    max_pdu: u32,
) -> Vec<(usize, usize, dicom_ul::pdu::PDataValueType, bool)> {
    let mut cursor = std::io::Cursor::new(bytes);
    let mut out = Vec::new();
    while (cursor.position() as usize) < bytes.len() {
        let start = cursor.position() as usize;
        let pdu = dicom_ul::pdu::read_pdu(&mut cursor, max_pdu, true)
            .expect("valid")
            .expect("complete");
        let pdu_len = cursor.position() as usize - start - PDU_HEADER_LEN;
        let dicom_ul::Pdu::PData { data } = pdu else {
            panic!("not P-DATA")
        };
        for pdv in data {
            out.push((pdu_len, pdv.data.len(), pdv.value_type, pdv.is_last));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::PDataValueType;

    /// Parse the framed bytes back with dicom-ul's own reader.
    fn pdvs(bytes: &[u8]) -> Vec<(usize, usize, PDataValueType, bool)> {
        parse_pdvs(bytes, 1 << 20)
    }

    async fn framed(payload: &[u8], fragment: Fragment, max_pdu: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buffer = Vec::new();
        send_message(&mut out, &mut buffer, 3, fragment, payload, max_pdu)
            .await
            .expect("writes to memory");
        out
    }

    #[tokio::test]
    async fn fragments_respect_the_peer_maximum() {
        let payload = vec![7u8; 10_000];
        let out = framed(&payload, Fragment::DataSet, 4096).await;
        let items = pdvs(&out);
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(|&(pdu_len, ..)| pdu_len <= 4096));
        assert_eq!(items.iter().map(|i| i.1).sum::<usize>(), 10_000);
        assert!(items.iter().all(|i| i.2 == PDataValueType::Data));
        assert_eq!(items.iter().filter(|i| i.3).count(), 1);
        assert!(items[2].3);
    }

    #[tokio::test]
    async fn commands_fit_one_pdu_and_are_marked() {
        let out = framed(&[1, 2, 3], Fragment::Command, 16384).await;
        assert_eq!(pdvs(&out), vec![(9, 3, PDataValueType::Command, true)]);
    }

    #[tokio::test]
    async fn unlimited_peers_get_capped_pdus() {
        let payload = vec![0u8; (UNLIMITED_PDU_CAP as usize) * 2];
        let items = pdvs(&framed(&payload, Fragment::DataSet, 0).await);
        assert_eq!(items.len(), 3);
        assert!(
            items
                .iter()
                .all(|&(pdu_len, ..)| pdu_len <= UNLIMITED_PDU_CAP as usize)
        );
    }
}
