//! The checks of an `UPLOAD_CHUNK`.

use super::*;

/// An upload that passed every check: safe to write.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidUpload {
    pub chunk_id: ChunkId,
    pub chunk_index: u32,
    pub sha256: String,
}

/// Checks an `UPLOAD_CHUNK`: the id, the size against the header and `max_chunk`, the checksum.
///
/// # Errors
/// The message of the original error shape.
pub fn check_upload(h: &UploadChunk, body: &[u8], max_chunk: u64) -> Result<ValidUpload, String> {
    let chunk_id = ChunkId::parse(&h.chunk_id)?;
    if h.chunk_size > max_chunk {
        return Err(format!(
            "chunk_size {} is over the largest chunk this server takes ({max_chunk} bytes)",
            h.chunk_size
        ));
    }
    if body.len() as u64 != h.chunk_size {
        return Err(format!(
            "size mismatch: chunk_size is {} but {} bytes followed the header",
            h.chunk_size,
            body.len()
        ));
    }
    if !is_sha256(&h.sha256) {
        return Err("sha256 must be 64 hex digits".into());
    }
    let actual = sha256_hex(body);
    if !actual.eq_ignore_ascii_case(&h.sha256) {
        return Err(format!(
            "checksum mismatch: the bytes hash to {actual}, not {}",
            h.sha256
        ));
    }
    Ok(ValidUpload {
        chunk_id,
        chunk_index: h.chunk_index,
        sha256: actual,
    })
}
