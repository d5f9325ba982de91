//! P-DATA-TF framing for outgoing messages: a command from memory, a data
//! set streamed from its file in PDUs no larger than the peer's maximum.
//!
//! We frame PDUs ourselves instead of using dicom-ul's `AsyncPDataWriter`
//! because its `Drop` calls `block_in_place`, which panics on a
//! current-thread runtime, and because it needs the whole payload pushed
//! through it anyway. Every write runs under the per-message timeout, so a
//! destination that stops reading cannot hold the worker forever.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ForwardError;

const PDATA_TF: u8 = 0x04;
const PDU_HEADER_LEN: usize = 6;
const PDV_HEADER_LEN: usize = 6;
const CONTROL_COMMAND: u8 = 0x01;
const CONTROL_LAST: u8 = 0x02;
/// A peer that advertises "no limit" (0) still gets PDUs of at most this.
const UNLIMITED_PDU_CAP: u32 = 1024 * 1024;
/// Flush the outgoing buffer once it holds this much.
const WRITE_BATCH: usize = 256 * 1024;

/// Sends `command` as one command message on context `context_id`.
pub(crate) async fn send_command<W: AsyncWrite + Unpin>(
    stream: &mut W,
    context_id: u8,
    command: &[u8],
    peer_max_pdu: u32,
    timeout: Duration,
) -> Result<(), ForwardError> {
    let chunk_len = chunk_len(peer_max_pdu);
    let mut buffer = Vec::with_capacity(command.len() + 64);
    let mut chunks = command.chunks(chunk_len).peekable();
    if chunks.peek().is_none() {
        push_pdu(&mut buffer, context_id, CONTROL_COMMAND | CONTROL_LAST, &[]);
    }
    while let Some(chunk) = chunks.next() {
        let last = if chunks.peek().is_none() {
            CONTROL_LAST
        } else {
            0
        };
        push_pdu(&mut buffer, context_id, CONTROL_COMMAND | last, chunk);
    }
    write_all(stream, &buffer, timeout, "send C-STORE command").await
}

/// Streams `len` bytes from `source` as one data set message on
/// `context_id`. A source that ends early is a file error (the file changed
/// under us); the association is then mid-message and must be aborted.
pub(crate) async fn send_dataset<W, R>(
    stream: &mut W,
    source: &mut R,
    source_path: &std::path::Path,
    len: u64,
    context_id: u8,
    peer_max_pdu: u32,
    timeout: Duration,
) -> Result<(), ForwardError>
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let chunk_len = chunk_len(peer_max_pdu);
    let mut buffer = Vec::with_capacity(WRITE_BATCH + chunk_len + PDU_HEADER_LEN + PDV_HEADER_LEN);
    let mut chunk = vec![0u8; chunk_len];
    let mut remaining = len;
    loop {
        let this_len = remaining.min(chunk_len as u64) as usize;
        source
            .read_exact(&mut chunk[..this_len])
            .await
            .map_err(|source| ForwardError::File {
                path: source_path.to_path_buf(),
                source,
            })?;
        remaining -= this_len as u64;
        let last = if remaining == 0 { CONTROL_LAST } else { 0 };
        push_pdu(&mut buffer, context_id, last, &chunk[..this_len]);
        if remaining == 0 || buffer.len() >= WRITE_BATCH {
            write_all(stream, &buffer, timeout, "send data set").await?;
            buffer.clear();
        }
        if remaining == 0 {
            return Ok(());
        }
    }
}

async fn write_all<W: AsyncWrite + Unpin>(
    stream: &mut W,
    bytes: &[u8],
    timeout: Duration,
    operation: &'static str,
) -> Result<(), ForwardError> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(ForwardError::Io { operation, source }),
        Err(_) => Err(ForwardError::Timeout {
            operation,
            after: timeout,
        }),
    }
}

/// Payload bytes per PDU for a peer's advertised Maximum Length, which
/// counts the PDV item (header included), PS3.8 D.1.
fn chunk_len(peer_max_pdu: u32) -> usize {
    let limit = if peer_max_pdu == 0 {
        UNLIMITED_PDU_CAP
    } else {
        peer_max_pdu.min(UNLIMITED_PDU_CAP)
    };
    (limit as usize).saturating_sub(PDV_HEADER_LEN).max(1)
}

fn push_pdu(buffer: &mut Vec<u8>, context_id: u8, control: u8, chunk: &[u8]) {
    let pdv_len = (chunk.len() + 2) as u32;
    let pdu_len = pdv_len + 4;
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

    /// (PDU length, PDV length, type, is_last) parsed back with dicom-ul's reader.
    fn pdvs(bytes: &[u8]) -> Vec<(usize, usize, PDataValueType, bool)> {
        let mut cursor = std::io::Cursor::new(bytes);
        let mut out = Vec::new();
        while (cursor.position() as usize) < bytes.len() {
            let start = cursor.position() as usize;
            let pdu = read_pdu(&mut cursor, 1 << 21, true)
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

    #[tokio::test]
    async fn data_set_is_streamed_in_pdus_within_the_peer_maximum() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let mut source = &payload[..];
        send_dataset(
            &mut out,
            &mut source,
            std::path::Path::new("mem"),
            payload.len() as u64,
            3,
            4096,
            Duration::from_secs(5),
        )
        .await
        .expect("writes to memory");
        let items = pdvs(&out);
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(|&(pdu_len, ..)| pdu_len <= 4096));
        assert_eq!(items.iter().map(|i| i.1).sum::<usize>(), 10_000);
        assert!(items.iter().all(|i| i.2 == PDataValueType::Data));
        assert_eq!(
            items.iter().map(|i| i.3).collect::<Vec<_>>(),
            [false, false, true]
        );
    }

    #[tokio::test]
    async fn a_short_source_is_a_file_error() {
        let mut out = Vec::new();
        let mut source = &[1u8, 2, 3][..];
        let err = send_dataset(
            &mut out,
            &mut source,
            std::path::Path::new("short.dcm"),
            10,
            1,
            4096,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ForwardError::File { .. }), "{err}");
    }

    #[tokio::test]
    async fn command_is_one_marked_fragment() {
        let mut out = Vec::new();
        send_command(&mut out, 5, &[1, 2, 3], 16384, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(pdvs(&out), vec![(9, 3, PDataValueType::Command, true)]);
    }
}
