//! P-DATA-TF framing: splits a command or data set into PDUs no larger than
//! the peer's maximum PDU length.
//!
//! We frame messages ourselves instead of using dicom-ul's `AsyncPDataWriter`
//! because its `Drop` calls `block_in_place`, which panics on a
//! current-thread runtime (the default of `#[tokio::test]`), and because
//! batching many PDUs into one write saves system calls on fast links.

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// P-DATA-TF PDU type.
const PDATA_TF: u8 = 0x04;
/// Bytes of a PDU header: type, reserved, 4-byte length.
const PDU_HEADER_LEN: usize = 6;
/// Bytes of a PDV item header: 4-byte length, context ID, control header.
const PDV_HEADER_LEN: usize = 6;
/// Message control header bits, PS3.8 E.2.
const CONTROL_COMMAND: u8 = 0x01;
const CONTROL_LAST: u8 = 0x02;

/// A peer that advertises "no limit" (0) still gets PDUs of at most this
/// size, so one instance never becomes one giant allocation.
pub(crate) const UNLIMITED_PDU_CAP: u32 = 1024 * 1024;
/// Flush the outgoing buffer once it holds this much.
const WRITE_BATCH: usize = 256 * 1024;

/// Whether a fragment carries a command or a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fragment {
    Command,
    DataSet,
}

/// Send `payload` as one message (command or data set) on presentation
/// context `context_id`, in as many PDUs as `peer_max_pdu` requires.
///
/// `peer_max_pdu` is the peer's Maximum Length (PS3.8 D.1), which counts the
/// PDV items of a PDU, headers included.
pub(crate) async fn send_message<W: AsyncWrite + Unpin>(
    stream: &mut W,
    buffer: &mut Vec<u8>,
    context_id: u8,
    fragment: Fragment,
    payload: &[u8],
    peer_max_pdu: u32,
) -> std::io::Result<()> {
    buffer.clear();
    let limit = effective_max_pdu(peer_max_pdu);
    let chunk_len = limit.saturating_sub(PDV_HEADER_LEN).max(1);
    let mut chunks = payload.chunks(chunk_len).peekable();
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
pub(crate) fn effective_max_pdu(peer_max_pdu: u32) -> usize {
    let limit = if peer_max_pdu == 0 {
        UNLIMITED_PDU_CAP
    } else {
        peer_max_pdu.min(UNLIMITED_PDU_CAP)
    };
    // Leave room for at least one byte of payload after the PDV header.
    (limit as usize).max(PDV_HEADER_LEN + 1)
}

fn push_pdu(buffer: &mut Vec<u8>, context_id: u8, fragment: Fragment, chunk: &[u8], is_last: bool) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::Pdu;
    use dicom_ul::pdu::{PDataValueType, read_pdu};

    /// Parse the framed bytes back with dicom-ul's own reader.
    fn pdvs(bytes: &[u8]) -> Vec<(usize, usize, PDataValueType, bool)> {
        let mut cursor = std::io::Cursor::new(bytes);
        let mut out = Vec::new();
        while (cursor.position() as usize) < bytes.len() {
            let start = cursor.position() as usize;
            let pdu = read_pdu(&mut cursor, 1 << 20, true)
                .expect("valid")
                .expect("complete");
            let pdu_len = cursor.position() as usize - start - PDU_HEADER_LEN;
            let Pdu::PData { data } = pdu else {
                panic!("not P-DATA")
            };
            for pdv in data {
                out.push((pdu_len, pdv.data.len(), pdv.value_type, pdv.is_last));
            }
        }
        out
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
