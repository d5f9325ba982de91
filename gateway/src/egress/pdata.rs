//! Egress's use of the shared P-DATA-TF framing (`dimse_message::pdata`):
//! a command from memory, a data set streamed from its file in PDUs no
//! larger than the peer's maximum, never the whole file in memory.
//!
//! Every write runs under the per-message timeout, so a destination that
//! stops reading cannot hold the worker forever.

use std::time::Duration;

use dimse_message::pdata::{
    Fragment, PDU_HEADER_LEN, PDV_HEADER_LEN, WRITE_BATCH, chunk_len, push_pdu,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ForwardError;

/// Sends `command` as one command message on context `context_id`.
pub(crate) async fn send_command<W: AsyncWrite + Unpin>(
    stream: &mut W,
    context_id: u8,
    command: &[u8],
    peer_max_pdu: u32,
    timeout: Duration,
) -> Result<(), ForwardError> {
    let mut buffer = Vec::with_capacity(command.len() + 64);
    let mut chunks = command.chunks(chunk_len(peer_max_pdu)).peekable();
    if chunks.peek().is_none() {
        push_pdu(&mut buffer, context_id, Fragment::Command, &[], true);
    }
    while let Some(chunk) = chunks.next() {
        let is_last = chunks.peek().is_none();
        push_pdu(&mut buffer, context_id, Fragment::Command, chunk, is_last);
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
        let is_last = remaining == 0;
        push_pdu(
            &mut buffer,
            context_id,
            Fragment::DataSet,
            &chunk[..this_len],
            is_last,
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::PDataValueType;

    /// (PDU length, PDV length, type, is_last) parsed back with dicom-ul's reader.
    fn pdvs(bytes: &[u8]) -> Vec<(usize, usize, PDataValueType, bool)> {
        dimse_message::pdata::parse_pdvs(bytes, 1 << 21)
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
