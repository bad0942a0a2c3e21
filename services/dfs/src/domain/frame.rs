//! The chunk servers' framing: a JSON header, `\n\n`, the bytes.

use super::*;

/// Why a framed message does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the message is empty; expected a JSON header")]
    Empty,
    #[error("the header is not valid JSON: {0}")]
    BadJson(String),
    #[error("the header must be a JSON object")]
    NotAnObject,
    #[error("truncated framing: the JSON header must be followed by \"\\n\\n\" and the bytes")]
    NoDelimiter,
}

/// A framed message split into its JSON header and the bytes after `\n\n` (empty when there is
/// no delimiter and `need_body` is false).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<'a> {
    pub header: serde_json::Value,
    pub body: &'a [u8],
    /// Whether the `\n\n` delimiter was there.
    pub delimited: bool,
}

/// Splits `buf` into a JSON object header and the bytes after the `\n\n` that follows it. The
/// header is read as one JSON value (so a pretty-printed header holding blank lines still parses);
/// only white space may stand between it and the delimiter. Without a delimiter the frame is
/// truncated when `need_body`, else the body is empty.
///
/// # Errors
/// [`FrameError`] saying what is wrong.
pub fn split_frame(buf: &[u8], need_body: bool) -> Result<Frame<'_>, FrameError> {
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Err(FrameError::Empty);
    }
    let mut stream = serde_json::Deserializer::from_slice(buf).into_iter::<serde_json::Value>();
    let header = match stream.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) if e.is_eof() => return Err(FrameError::NoDelimiter),
        Some(Err(e)) => return Err(FrameError::BadJson(e.to_string())),
        None => return Err(FrameError::Empty),
    };
    if !header.is_object() {
        return Err(FrameError::NotAnObject);
    }
    let rest = &buf[stream.byte_offset()..];
    let mut i = 0;
    while i < rest.len() {
        if rest[i..].starts_with(DELIMITER) {
            return Ok(Frame {
                header,
                body: &rest[i + DELIMITER.len()..],
                delimited: true,
            });
        }
        if !rest[i].is_ascii_whitespace() {
            break;
        }
        i += 1;
    }
    if need_body {
        return Err(FrameError::NoDelimiter);
    }
    if rest[i..].is_empty() {
        Ok(Frame {
            header,
            body: &[],
            delimited: false,
        })
    } else {
        Err(FrameError::BadJson(
            "unexpected bytes after the JSON header".into(),
        ))
    }
}

/// Encodes a header, `\n\n` and the bytes.
#[must_use]
pub fn encode_frame<H: Serialize>(header: &H, body: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec(header).unwrap_or_else(|_| b"{}".to_vec());
    out.reserve(DELIMITER.len() + body.len());
    out.extend_from_slice(DELIMITER);
    out.extend_from_slice(body);
    out
}

/// Room kept in front of a chunk's bytes for the header of the frame that will carry them, so
/// that [`frame_in_place`] adds the header without copying the bytes.
pub const FRAME_ROOM: usize = 512;

/// The frame `header`, `\n\n`, `buf[body_start..]`, written into the room in front of the body
/// when it fits (no copy of the bytes), else built anew.
#[must_use]
pub fn frame_in_place(mut buf: Vec<u8>, body_start: usize, header: &[u8]) -> bytes::Bytes {
    let need = header.len() + DELIMITER.len();
    if need <= body_start {
        let start = body_start - need;
        buf[start..start + header.len()].copy_from_slice(header);
        buf[start + header.len()..body_start].copy_from_slice(DELIMITER);
        bytes::Bytes::from(buf).slice(start..)
    } else {
        let mut out = Vec::with_capacity(need + buf.len() - body_start);
        out.extend_from_slice(header);
        out.extend_from_slice(DELIMITER);
        out.extend_from_slice(&buf[body_start..]);
        out.into()
    }
}
