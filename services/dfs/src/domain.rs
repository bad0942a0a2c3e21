//! Pure dfs logic: chunk and server ids, the chunk servers' framing (JSON header, `\n\n`, bytes),
//! upload checks, the file and server aggregates, the repair planner and HTTP `Range` parsing.
//! No I/O here: everything is a function of its arguments, tested below.

use schemas::dfs::{CommitFile, DfsEvent, FileChunk, UploadChunk};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Longest chunk id.
pub const MAX_CHUNK_ID: usize = 128;
/// The framing delimiter between the JSON header and the bytes.
pub const DELIMITER: &[u8] = b"\n\n";
/// Room kept for the JSON header beside a chunk in one NATS message.
pub const HEADER_ROOM: usize = 4096;

/// A chunk id: 1..=128 of `[A-Za-z0-9_-]`, so it is a file name and a subject token as it is and no
/// path built from it can leave a data directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(String);

impl ChunkId {
    /// Checks `s` against the rule.
    ///
    /// # Errors
    /// A message naming the rule it broke.
    pub fn parse(s: &str) -> Result<Self, String> {
        check_token("chunk_id", s)?;
        Ok(Self(s.to_string()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A chunk server id: the same rule as chunk ids (it is a subject token and a directory name).
///
/// # Errors
/// A message naming the rule it broke.
pub fn check_server_id(s: &str) -> Result<(), String> {
    check_token("server_id", s)
}

fn check_token(field: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_CHUNK_ID {
        return Err(format!(
            "{field} must be 1 to {MAX_CHUNK_ID} characters; got {}",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{field} may hold only A-Z, a-z, 0-9, '_' and '-'; found {c:?}"
        ));
    }
    Ok(())
}

/// Lower-case hex SHA-256.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// SHA-256 over bytes that arrive in pieces (a whole file, chunk by chunk).
pub struct Sha256Stream(ring::digest::Context);

impl Default for Sha256Stream {
    fn default() -> Self {
        Self(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Sha256Stream {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Lower-case hex of everything given.
    #[must_use]
    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finish())
    }
}

/// Whether `s` is 64 lower- or upper-case hex digits.
#[must_use]
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

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

/// A file as its events leave it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileState {
    pub committed: Option<CommitFile>,
    pub deleted: bool,
}

impl runtime::store::Aggregate for FileState {
    type Event = DfsEvent;
    fn apply(&mut self, event: &DfsEvent) {
        match event {
            DfsEvent::FileCommitted {
                file_id,
                name,
                size,
                sha256,
                replicas,
                chunks,
            } => {
                self.committed = Some(CommitFile {
                    file_id: file_id.clone(),
                    name: name.clone(),
                    size: *size,
                    sha256: sha256.clone(),
                    chunks: chunks.clone(),
                    replicas: Some(*replicas),
                });
                self.deleted = false;
            }
            DfsEvent::FileDeleted { .. } => self.deleted = true,
            _ => {}
        }
    }
}

/// What deciding a file command can say.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Append this event.
    Append(DfsEvent),
    /// Nothing to append: the same commit was already made.
    AlreadyDone,
}

/// Why a file command is refused (`Invalid`, `NotFound`, `Conflict`).
pub type FileError = runtime::DomainError;

/// Checks a commit's shape: id, name, chunk ids, indices 0..n once each, sizes summing to `size`,
/// checksums, replication factor 1..=16.
///
/// # Errors
/// [`FileError::Invalid`] naming the first problem.
pub fn check_commit(c: &CommitFile, max_chunk: u64) -> Result<(), FileError> {
    let bad = |m: String| Err(FileError::Invalid(m));
    if let Err(e) = schemas::check_id("file_id", &c.file_id) {
        return bad(e);
    }
    if c.name.is_empty() || c.name.len() > 1024 {
        return bad("name must be 1 to 1024 bytes".into());
    }
    if !is_sha256(&c.sha256) {
        return bad("sha256 must be 64 hex digits".into());
    }
    if let Some(r) = c.replicas {
        if !(1..=16).contains(&r) {
            return bad(format!("replicas must be 1 to 16; got {r}"));
        }
    }
    let mut seen = BTreeSet::new();
    let mut total: u64 = 0;
    for ch in &c.chunks {
        ChunkId::parse(&ch.chunk_id).map_err(FileError::Invalid)?;
        if !is_sha256(&ch.sha256) {
            return bad(format!(
                "chunk {}: sha256 must be 64 hex digits",
                ch.chunk_id
            ));
        }
        if ch.size > max_chunk {
            return bad(format!(
                "chunk {} is {} bytes; chunks are at most {max_chunk}",
                ch.chunk_id, ch.size
            ));
        }
        if !seen.insert(ch.chunk_index) {
            return bad(format!("chunk_index {} appears twice", ch.chunk_index));
        }
        total = total.saturating_add(ch.size);
    }
    if let Some(missing) = (0..c.chunks.len() as u32).find(|i| !seen.contains(i)) {
        return bad(format!(
            "chunk indices must be 0..{}; {missing} is missing",
            c.chunks.len()
        ));
    }
    let ids: BTreeSet<&str> = c.chunks.iter().map(|c| c.chunk_id.as_str()).collect();
    if ids.len() != c.chunks.len() {
        return bad("a chunk_id appears twice".into());
    }
    if total != c.size {
        return bad(format!(
            "the chunks add up to {total} bytes but size is {}",
            c.size
        ));
    }
    Ok(())
}

/// Sorts a commit's chunks by index and lower-cases its checksums.
#[must_use]
pub fn normalise_commit(mut c: CommitFile, default_replicas: u32) -> CommitFile {
    c.chunks.sort_by_key(|ch| ch.chunk_index);
    c.sha256 = c.sha256.to_ascii_lowercase();
    for ch in &mut c.chunks {
        ch.sha256 = ch.sha256.to_ascii_lowercase();
    }
    c.replicas = Some(c.replicas.unwrap_or(default_replicas).clamp(1, 16));
    c
}

/// Decides `COMMIT_FILE` on a (normalised, checked) commit.
///
/// # Errors
/// `Conflict` when the id holds another file, or a deleted one.
pub fn decide_commit(state: &FileState, c: &CommitFile) -> Result<Decision, FileError> {
    if state.deleted {
        return Err(FileError::Conflict(format!(
            "file {} was deleted; commit it under a new file_id",
            c.file_id
        )));
    }
    if let Some(existing) = &state.committed {
        if existing == c {
            return Ok(Decision::AlreadyDone);
        }
        return Err(FileError::Conflict(format!(
            "file {} is already committed with other content",
            c.file_id
        )));
    }
    Ok(Decision::Append(DfsEvent::FileCommitted {
        file_id: c.file_id.clone(),
        name: c.name.clone(),
        size: c.size,
        sha256: c.sha256.clone(),
        replicas: c.replicas.unwrap_or(3),
        chunks: c.chunks.clone(),
    }))
}

/// Decides `DELETE_FILE`.
///
/// # Errors
/// `NotFound` for a file never committed or already deleted.
pub fn decide_delete(state: &FileState, file_id: &str) -> Result<DfsEvent, FileError> {
    if state.committed.is_none() || state.deleted {
        return Err(FileError::NotFound(format!("no file {file_id:?}")));
    }
    Ok(DfsEvent::FileDeleted {
        file_id: file_id.to_string(),
    })
}

/// A chunk server as its events leave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerState {
    pub live: bool,
}

impl runtime::store::Aggregate for ServerState {
    type Event = DfsEvent;
    fn apply(&mut self, event: &DfsEvent) {
        match event {
            DfsEvent::ServerJoined { .. } => self.live = true,
            DfsEvent::ServerLost { .. } => self.live = false,
            _ => {}
        }
    }
}

/// A heartbeat from a server: `ServerJoined` unless it is already live.
#[must_use]
pub fn decide_heard(state: &ServerState, server_id: &str, subject: &str) -> Option<DfsEvent> {
    (!state.live).then(|| DfsEvent::ServerJoined {
        server_id: server_id.into(),
        subject: subject.into(),
    })
}

/// Silence past the dead-after window: `ServerLost` unless it is already lost.
#[must_use]
pub fn decide_silent(state: &ServerState, server_id: &str) -> Option<DfsEvent> {
    state.live.then(|| DfsEvent::ServerLost {
        server_id: server_id.into(),
    })
}

/// What the repair planner knows of one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkStatus {
    pub chunk_id: String,
    /// Wanted replicas: the largest factor of the live files that hold it; 0 when no live file
    /// does (garbage).
    pub wanted: u32,
    /// Live servers holding it.
    pub holders: Vec<String>,
}

/// A repair step, returned as data so that tests can assert on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Copy a chunk from one of `sources` (tried in order) to `target`.
    Copy {
        chunk_id: String,
        sources: Vec<String>,
        target: String,
    },
    /// Remove a chunk from a server (surplus replica or garbage).
    Drop { chunk_id: String, server: String },
}

/// Plans repairs: under-replicated chunks are copied to the least-loaded live servers that lack
/// them, chunks with the fewest replicas first; surplus replicas are dropped from the most-loaded
/// holders; garbage (`wanted` 0) is dropped everywhere. `load` is the chunk count per live server.
/// A chunk with no live holder cannot be repaired and is skipped.
#[must_use]
pub fn plan(chunks: &[ChunkStatus], load: &BTreeMap<String, u64>) -> Vec<Action> {
    let mut load = load.clone();
    let mut order: Vec<&ChunkStatus> = chunks.iter().collect();
    order.sort_by_key(|c| (c.holders.len(), c.chunk_id.clone()));
    let mut actions = Vec::new();
    for c in order {
        let have = c.holders.len() as u32;
        if c.wanted == 0 {
            for s in &c.holders {
                actions.push(Action::Drop {
                    chunk_id: c.chunk_id.clone(),
                    server: s.clone(),
                });
            }
        } else if have == 0 {
            continue;
        } else if have < c.wanted {
            let mut candidates: Vec<(u64, String)> = load
                .iter()
                .filter(|(s, _)| !c.holders.contains(s))
                .map(|(s, n)| (*n, s.clone()))
                .collect();
            candidates.sort();
            let mut sources = c.holders.clone();
            sources.sort_by_key(|s| load.get(s).copied().unwrap_or(0));
            for (_, target) in candidates.into_iter().take((c.wanted - have) as usize) {
                *load.entry(target.clone()).or_default() += 1;
                actions.push(Action::Copy {
                    chunk_id: c.chunk_id.clone(),
                    sources: sources.clone(),
                    target,
                });
            }
        } else if have > c.wanted {
            let mut holders: Vec<(u64, String)> = c
                .holders
                .iter()
                .map(|s| (load.get(s).copied().unwrap_or(0), s.clone()))
                .collect();
            holders.sort_by(|a, b| b.cmp(a));
            for (_, server) in holders.into_iter().take((have - c.wanted) as usize) {
                if let Some(n) = load.get_mut(&server) {
                    *n = n.saturating_sub(1);
                }
                actions.push(Action::Drop {
                    chunk_id: c.chunk_id.clone(),
                    server,
                });
            }
        }
    }
    actions
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut s = Sha256Stream::default();
        s.update(b"a");
        s.update(b"bc");
        assert_eq!(s.finish_hex(), sha256_hex(b"abc"));
    }

    #[test]
    fn chunk_ids_never_leave_the_directory() {
        for ok in ["a", "abc-DEF_123", &"x".repeat(128)] {
            assert!(ChunkId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../etc",
            "a/b",
            "..",
            ".",
            "a.b",
            "a b",
            "é",
            "a\0",
            &"x".repeat(129),
            "a\\b",
        ] {
            assert!(ChunkId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn frames_split_at_the_delimiter_after_the_header() {
        let f = split_frame(b"{\"a\":1}\n\nxyz\n\n", true).unwrap();
        assert_eq!(f.header["a"], 1);
        assert_eq!(f.body, b"xyz\n\n");
        // A pretty header with blank lines inside still parses.
        let f = split_frame(b"{\n\n\"a\": \"x\\n\\ny\"\n}\n\nB", true).unwrap();
        assert_eq!(f.header["a"], "x\n\ny");
        assert_eq!(f.body, b"B");
        // Empty body.
        assert_eq!(split_frame(b"{}\n\n", true).unwrap().body, b"");
        // Binary bytes after the delimiter.
        let with_room = |room: usize| {
            let mut v = vec![9u8; room];
            v.extend_from_slice(&[0, 255, 10, 10, 1]);
            frame_in_place(v, room, br#"{"k":"v"}"#)
        };
        let (in_place, no_room) = (with_room(16), with_room(3));
        let mut buf = encode_frame(&serde_json::json!({"k": "v"}), &[0, 255, 10, 10, 1]);
        assert_eq!((&in_place[..], &no_room[..]), (&buf[..], &buf[..]));
        assert_eq!(split_frame(&buf, true).unwrap().body, &[0, 255, 10, 10, 1]);
        buf.truncate(3);
        assert_eq!(split_frame(&buf, true), Err(FrameError::NoDelimiter));
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(split_frame(b"", true), Err(FrameError::Empty));
        assert_eq!(
            split_frame(b"{\"a\":1}", true),
            Err(FrameError::NoDelimiter)
        );
        assert_eq!(
            split_frame(b"{\"a\":1}\n", true),
            Err(FrameError::NoDelimiter)
        );
        assert_eq!(split_frame(b"{\"a\":", true), Err(FrameError::NoDelimiter));
        assert_eq!(split_frame(b"[1]\n\n", true), Err(FrameError::NotAnObject));
        assert!(matches!(
            split_frame(b"nope\n\n", true),
            Err(FrameError::BadJson(_))
        ));
        // Without a body requirement, a lone header is fine.
        assert!(split_frame(b"{\"a\":1}", false).unwrap().body.is_empty());
        assert!(split_frame(b"{\"a\":1} junk", false).is_err());
    }

    fn upload(size: u64, sha: &str) -> UploadChunk {
        UploadChunk {
            request_type: "UPLOAD_CHUNK".into(),
            chunk_id: "c1".into(),
            chunk_index: 0,
            chunk_size: size,
            user_id: None,
            file_id: None,
            sha256: sha.into(),
        }
    }

    #[test]
    fn uploads_are_checked() {
        let body = b"hello";
        let sha = sha256_hex(body);
        assert!(check_upload(&upload(5, &sha), body, 10).is_ok());
        assert!(check_upload(&upload(4, &sha), body, 10)
            .unwrap_err()
            .contains("size mismatch"));
        assert!(check_upload(&upload(5, &sha256_hex(b"x")), body, 10)
            .unwrap_err()
            .contains("checksum mismatch"));
        assert!(check_upload(&upload(5, &sha), body, 4)
            .unwrap_err()
            .contains("largest chunk"));
        assert!(check_upload(&upload(5, "abc"), body, 10).is_err());
        let mut u = upload(5, &sha);
        u.chunk_id = "../x".into();
        assert!(check_upload(&u, body, 10).is_err());
    }

    fn commit(chunks: Vec<(u32, u64)>) -> CommitFile {
        CommitFile {
            file_id: "f".into(),
            name: "v.mp4".into(),
            size: chunks.iter().map(|c| c.1).sum(),
            sha256: "a".repeat(64),
            chunks: chunks
                .into_iter()
                .map(|(i, s)| FileChunk {
                    chunk_id: format!("c{i}"),
                    chunk_index: i,
                    size: s,
                    sha256: "b".repeat(64),
                })
                .collect(),
            replicas: None,
        }
    }

    #[test]
    fn commits_are_checked() {
        assert!(check_commit(&commit(vec![]), 10).is_ok());
        assert!(check_commit(&commit(vec![(1, 3), (0, 4)]), 10).is_ok());
        assert!(check_commit(&commit(vec![(0, 3), (2, 4)]), 10).is_err());
        assert!(check_commit(&commit(vec![(0, 3), (0, 4)]), 10).is_err());
        assert!(check_commit(&commit(vec![(0, 11)]), 10).is_err());
        let mut c = commit(vec![(0, 3)]);
        c.size = 4;
        assert!(check_commit(&c, 10).is_err());
    }

    #[test]
    fn file_decisions() {
        let c = normalise_commit(commit(vec![(1, 3), (0, 4)]), 3);
        assert_eq!(c.chunks[0].chunk_index, 0);
        let mut s = FileState::default();
        let Decision::Append(e) = decide_commit(&s, &c).unwrap() else {
            panic!()
        };
        runtime::store::Aggregate::apply(&mut s, &e);
        assert_eq!(decide_commit(&s, &c), Ok(Decision::AlreadyDone));
        let mut other = c.clone();
        other.name = "x".into();
        assert!(matches!(
            decide_commit(&s, &other),
            Err(FileError::Conflict(_))
        ));
        let d = decide_delete(&s, "f").unwrap();
        runtime::store::Aggregate::apply(&mut s, &d);
        assert!(matches!(
            decide_delete(&s, "f"),
            Err(FileError::NotFound(_))
        ));
        assert!(matches!(decide_commit(&s, &c), Err(FileError::Conflict(_))));
        assert!(matches!(
            decide_delete(&FileState::default(), "g"),
            Err(FileError::NotFound(_))
        ));
    }

    #[test]
    fn server_decisions() {
        let mut s = ServerState::default();
        assert!(decide_silent(&s, "a").is_none());
        let j = decide_heard(&s, "a", "dfs.chunk.a").unwrap();
        runtime::store::Aggregate::apply(&mut s, &j);
        assert!(decide_heard(&s, "a", "dfs.chunk.a").is_none());
        let l = decide_silent(&s, "a").unwrap();
        runtime::store::Aggregate::apply(&mut s, &l);
        assert!(!s.live);
    }

    fn status(id: &str, wanted: u32, holders: &[&str]) -> ChunkStatus {
        ChunkStatus {
            chunk_id: id.into(),
            wanted,
            holders: holders.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    #[test]
    fn planner_repairs_fewest_first_and_spreads_load() {
        let load: BTreeMap<String, u64> = [("a", 5), ("b", 5), ("c", 1), ("d", 0)]
            .iter()
            .map(|(s, n)| ((*s).to_string(), *n))
            .collect();
        let actions = plan(
            &[
                status("two", 3, &["a", "b"]),
                status("one", 3, &["a"]),
                status("ok", 3, &["a", "b", "c"]),
            ],
            &load,
        );
        // "one" (1 replica) comes first and gets two copies, on the least-loaded servers.
        assert_eq!(
            actions[0],
            Action::Copy {
                chunk_id: "one".into(),
                sources: vec!["a".into()],
                target: "d".into()
            }
        );
        assert_eq!(
            actions[1],
            Action::Copy {
                chunk_id: "one".into(),
                sources: vec!["a".into()],
                target: "c".into()
            }
        );
        assert!(matches!(&actions[2], Action::Copy { chunk_id, .. } if chunk_id == "two"));
        assert_eq!(actions.len(), 3);
    }

    #[test]
    fn planner_drops_surplus_and_garbage_and_skips_lost() {
        let load: BTreeMap<String, u64> = [("a", 1), ("b", 9), ("c", 2)]
            .iter()
            .map(|(s, n)| ((*s).to_string(), *n))
            .collect();
        let actions = plan(
            &[
                status("x", 2, &["a", "b", "c"]),
                status("g", 0, &["a"]),
                status("lost", 3, &[]),
            ],
            &load,
        );
        assert!(actions.contains(&Action::Drop {
            chunk_id: "x".into(),
            server: "b".into()
        }));
        assert!(actions.contains(&Action::Drop {
            chunk_id: "g".into(),
            server: "a".into()
        }));
        assert_eq!(actions.len(), 2);
        // Not enough servers: copies only where possible.
        let actions = plan(
            &[status("y", 3, &["a"])],
            &[("a".to_string(), 0), ("b".to_string(), 0)]
                .into_iter()
                .collect(),
        );
        assert_eq!(actions.len(), 1);
    }

    #[test]
    fn ranges() {
        let p = |h: &str| parse_range(Some(h), 100);
        assert_eq!(parse_range(None, 100), RangeAsk::Whole);
        assert_eq!(
            p("bytes=0-9"),
            RangeAsk::Part(ByteRange { start: 0, end: 9 })
        );
        assert_eq!(
            p("bytes=50-"),
            RangeAsk::Part(ByteRange { start: 50, end: 99 })
        );
        assert_eq!(
            p("bytes=-10"),
            RangeAsk::Part(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            p("bytes=-1000"),
            RangeAsk::Part(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(
            p("bytes=90-1000"),
            RangeAsk::Part(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(p("bytes=100-"), RangeAsk::Unsatisfiable);
        assert_eq!(p("bytes=-0"), RangeAsk::Unsatisfiable);
        assert_eq!(p("bytes=5-2"), RangeAsk::Whole);
        assert_eq!(p("bytes=0-1,5-6"), RangeAsk::Whole);
        assert_eq!(p("items=0-1"), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=0-"), 0), RangeAsk::Unsatisfiable);
    }

    #[test]
    fn spans_cover_exactly_the_range() {
        let chunks: Vec<FileChunk> = [4u64, 4, 2]
            .iter()
            .enumerate()
            .map(|(i, s)| FileChunk {
                chunk_id: format!("c{i}"),
                chunk_index: i as u32,
                size: *s,
                sha256: String::new(),
            })
            .collect();
        assert_eq!(
            chunk_span(&chunks, 0, 9),
            vec![(0, 0..4), (1, 0..4), (2, 0..2)]
        );
        assert_eq!(chunk_span(&chunks, 3, 4), vec![(0, 3..4), (1, 0..1)]);
        assert_eq!(chunk_span(&chunks, 9, 9), vec![(2, 1..2)]);
        assert_eq!(chunk_span(&chunks, 4, 7), vec![(1, 0..4)]);
    }

    #[test]
    fn coordinator_requests_parse() {
        use schemas::dfs::CoordinatorRequest;
        let r: CoordinatorRequest =
            serde_json::from_str(r#"{"request_type":"GET_CLIENT_ID"}"#).unwrap();
        assert_eq!(r, CoordinatorRequest::GET_CLIENT_ID {});
        let r: CoordinatorRequest = serde_json::from_str(
            r#"{"request_type":"COMMIT_FILE","file_id":"f","name":"n","size":0,"sha256":"x","chunks":[]}"#,
        )
        .unwrap();
        assert!(matches!(r, CoordinatorRequest::COMMIT_FILE(_)));
        assert!(serde_json::from_str::<CoordinatorRequest>(r#"{"request_type":"NOPE"}"#).is_err());
        assert!(
            serde_json::from_str::<CoordinatorRequest>(r#"{"request_type":"GET_FILE"}"#).is_err()
        );
    }
}
