//! HTTP `Range` parsing, the chunks a range spans, content types.

use super::*;

/// A satisfiable byte range, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No header, or one we serve whole (other units, several ranges, bad syntax).
    Whole,
    /// One satisfiable range: 206.
    Part(ByteRange),
    /// 416.
    Unsatisfiable,
}

/// Parses a `Range` header (RFC 9110 single byte ranges: `a-b`, `a-`, `-n`).
#[must_use]
pub fn parse_range(header: Option<&str>, len: u64) -> RangeAsk {
    let Some(h) = header else {
        return RangeAsk::Whole;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| {
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse::<u64>().ok()
        } else {
            None
        }
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeAsk::Whole,
        (true, false) => match num(b) {
            None => RangeAsk::Whole,
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if len == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Part(ByteRange {
                start: len.saturating_sub(n),
                end: len - 1,
            }),
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return RangeAsk::Whole;
            };
            let end = if b.is_empty() {
                None
            } else {
                match num(b) {
                    Some(e) if e >= start => Some(e),
                    _ => return RangeAsk::Whole,
                }
            };
            if start >= len {
                return RangeAsk::Unsatisfiable;
            }
            let end = end.map_or(len - 1, |e| e.min(len - 1));
            RangeAsk::Part(ByteRange { start, end })
        }
    }
}

/// The chunks (by position in `chunks`) that hold bytes `start..=end`, each with the slice of it
/// that falls in the range.
#[must_use]
pub fn chunk_span(
    chunks: &[FileChunk],
    start: u64,
    end: u64,
) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    for (i, c) in chunks.iter().enumerate() {
        let (c_start, c_end) = (offset, offset + c.size);
        offset = c_end;
        if c.size == 0 || c_end <= start || c_start > end {
            continue;
        }
        let from = start.max(c_start) - c_start;
        let to = (end + 1).min(c_end) - c_start;
        out.push((i, from as usize..to as usize));
    }
    out
}

/// The Content-Type for a file name, by its extension.
#[must_use]
pub fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "mov" => "video/quicktime",
        "avi" => "video/x-msvideo",
        "ts" => "video/mp2t",
        "m3u8" => "application/vnd.apple.mpegurl",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "txt" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "html" => "text/html; charset=utf-8",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}
