//! Talking to chunk servers as a client: `UPLOAD_CHUNK` and `DOWNLOAD_CHUNK` in the original framing,
//! with the downloaded bytes checked against the checksum the caller expects. Used by the
//! command-line client, the gateway and the coordinator's re-replication.

use crate::domain::{encode_frame, sha256_hex, split_frame};
use bytes::Bytes;
use schemas::dfs::{ChunkReply, DownloadChunk, UploadChunk};
use std::time::Duration;

/// How long one chunk transfer may take.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// The subject of chunk server `id`.
#[must_use]
pub fn chunk_subject(id: &str) -> String {
    format!("dfs.chunk.{id}")
}

async fn request(
    client: &async_nats::Client,
    subject: &str,
    payload: Bytes,
) -> Result<async_nats::Message, String> {
    let req = async_nats::Request::new()
        .payload(payload)
        .timeout(Some(CHUNK_TIMEOUT));
    client
        .send_request(subject.to_string(), req)
        .await
        .map_err(|e| format!("{subject}: {e}"))
}

/// Uploads one chunk; `Ok` once the server has stored it.
///
/// # Errors
/// The server's error message, or why it did not answer.
pub async fn upload(
    client: &async_nats::Client,
    subject: &str,
    header: &UploadChunk,
    bytes: &[u8],
) -> Result<(), String> {
    upload_frame(client, subject, encode_frame(header, bytes).into()).await
}

/// Uploads an already framed chunk (so that replicas share one buffer).
///
/// # Errors
/// The server's error message, or why it did not answer.
pub async fn upload_frame(
    client: &async_nats::Client,
    subject: &str,
    frame: Bytes,
) -> Result<(), String> {
    let msg = request(client, subject, frame).await?;
    let reply: ChunkReply =
        serde_json::from_slice(&msg.payload).map_err(|e| format!("{subject}: bad reply: {e}"))?;
    if reply.status == "success" {
        Ok(())
    } else {
        Err(format!("{subject}: {}", reply.message.unwrap_or_default()))
    }
}

/// Downloads one chunk and checks it against `sha256` (when given) and the reply's own header.
///
/// # Errors
/// The server's error message, a bad reply, or bytes that do not match.
pub async fn download(
    client: &async_nats::Client,
    subject: &str,
    chunk_id: &str,
    sha256: Option<&str>,
) -> Result<(ChunkReply, Bytes), String> {
    let body = serde_json::to_vec(&DownloadChunk {
        request_type: "DOWNLOAD_CHUNK".into(),
        chunk_id: chunk_id.into(),
    })
    .map_err(|e| e.to_string())?;
    let msg = request(client, subject, body.into()).await?;
    let frame =
        split_frame(&msg.payload, false).map_err(|e| format!("{subject}: bad reply: {e}"))?;
    let reply: ChunkReply =
        serde_json::from_value(frame.header).map_err(|e| format!("{subject}: bad reply: {e}"))?;
    if reply.status != "success" {
        return Err(format!("{subject}: {}", reply.message.unwrap_or_default()));
    }
    let offset = msg.payload.len() - frame.body.len();
    let bytes = msg.payload.slice(offset..);
    if reply.chunk_size != Some(bytes.len() as u64) {
        return Err(format!(
            "{subject}: chunk {chunk_id}: {} bytes arrived, the header says {:?}",
            bytes.len(),
            reply.chunk_size
        ));
    }
    let actual = sha256_hex(&bytes);
    let expected = sha256
        .map(str::to_string)
        .or_else(|| reply.sha256.clone())
        .unwrap_or_default();
    if !actual.eq_ignore_ascii_case(&expected) {
        return Err(format!(
            "{subject}: chunk {chunk_id}: the bytes hash to {actual}, not {expected}"
        ));
    }
    Ok((reply, bytes))
}

/// Sends a JSON request to a chunk server and reads its JSON reply header.
///
/// # Errors
/// No reply or a reply that is not JSON.
pub async fn simple(
    client: &async_nats::Client,
    subject: &str,
    body: &serde_json::Value,
) -> Result<ChunkReply, String> {
    let msg = request(
        client,
        subject,
        serde_json::to_vec(body).map_err(|e| e.to_string())?.into(),
    )
    .await?;
    let frame =
        split_frame(&msg.payload, false).map_err(|e| format!("{subject}: bad reply: {e}"))?;
    serde_json::from_value(frame.header).map_err(|e| format!("{subject}: bad reply: {e}"))
}
