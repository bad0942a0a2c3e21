//! A chunk server's data directory: one file per chunk, written atomically (temporary file, fsync,
//! rename, fsync of the directory) and verified against its SHA-256 on every read.
//!
//! Layout under the server's directory: `chunks/<chunk_id>` holds the chunk in the wire framing
//! (a JSON [`Meta`] header, `\n\n`, the bytes); `tmp/` holds writes in progress (emptied at start);
//! `SERVER_ID` keeps the server's id across restarts. Chunk ids are checked ([`ChunkId`]) before
//! they become file names, so no path leaves the directory. Blocking calls: run them on
//! `spawn_blocking`.

use crate::domain::{frame_in_place, sha256_hex, split_frame, ChunkId, DELIMITER, FRAME_ROOM};
use schemas::dfs::StoredChunk;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Alignment of direct I/O buffers, lengths and offsets (the page size, a multiple of every block
/// size in use).
const ALIGN: usize = 4096;

thread_local! {
    /// A blocking thread's buffer for direct writes, kept so that its pages are not faulted in
    /// again for every chunk.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes `parts` to a new file at `path` and fsyncs it. Written with direct I/O (`O_DIRECT`):
/// chunk bytes go from one aligned buffer to the disk without being copied into the page cache,
/// which costs more CPU than the disk does (see `BENCHMARKS.md`), and without evicting what
/// readers use. Where the file system refuses direct I/O (tmpfs, say), a plain buffered write.
fn write_synced(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    match write_direct(path, parts) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => write_buffered(path, parts),
        other => other,
    }
}

fn write_buffered(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    for part in parts {
        f.write_all(part)?;
    }
    f.sync_all()
}

/// `len` rounded up to whole blocks (at least one): direct I/O moves whole blocks.
fn padded(len: usize) -> usize {
    len.div_ceil(ALIGN).max(1) * ALIGN
}

/// Runs `f` on an aligned block of this thread's scratch buffer, `padded(len)` bytes long.
fn with_aligned_block<T>(len: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
    let padded = padded(len);
    SCRATCH.with_borrow_mut(|buf| {
        if buf.len() < padded + ALIGN {
            buf.resize(padded + ALIGN, 0);
        }
        let start = buf.as_ptr().align_offset(ALIGN);
        f(&mut buf[start..start + padded])
    })
}

fn write_direct(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    // The last block is padded, and the file cut to `len` after.
    with_aligned_block(len, |block| {
        let mut at = 0;
        for part in parts {
            block[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        block[at..].fill(0);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)?;
        f.write_all(block)?;
        f.set_len(len as u64)?;
        f.sync_all()
    })
}

/// Reads a whole file into a new buffer with at least `room` bytes before its content (for a frame
/// header); returns the buffer, cut at the file's end, and where the content starts. Read with direct
/// I/O into an aligned part of the buffer, so the bytes come from the disk without a copy through the
/// page cache (replicas are written that way too, so they are seldom cached); buffered where the file
/// system refuses it.
fn read_with_room(path: &Path, room: usize) -> std::io::Result<(Vec<u8>, usize)> {
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    let mut f = match direct {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return read_buffered(path, room),
        Err(e) => return Err(e),
    };
    let len = usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX);
    let padded = padded(len);
    let mut buf = vec![0u8; room + ALIGN + padded];
    let start = room + buf[room..].as_ptr().align_offset(ALIGN);
    let mut got = 0;
    while got < len {
        // Direct reads start on a block boundary: only the last one may come back short.
        if !got.is_multiple_of(ALIGN) {
            return read_buffered(path, room);
        }
        match f.read(&mut buf[start + got..start + padded]) {
            // Shorter than its size said (it changed under us): read it plainly rather than hand a
            // cut copy to the checksum (which would count a good replica as corrupt).
            Ok(0) => return read_buffered(path, room),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return read_buffered(path, room),
            Err(e) => return Err(e),
        }
    }
    buf.truncate(start + got.min(len));
    Ok((buf, start))
}

fn read_buffered(path: &Path, room: usize) -> std::io::Result<(Vec<u8>, usize)> {
    let mut buf = vec![0u8; room];
    std::fs::File::open(path)?.read_to_end(&mut buf)?;
    Ok((buf, room))
}

/// A file written piece by piece at offsets (a download), with direct I/O where the file system
/// and the pieces allow it (every piece but the last a multiple of the block size), else buffered.
/// Not synced: it is the user's file, not a replica.
pub struct OutFile {
    path: PathBuf,
    file: std::fs::File,
    direct: bool,
    len: u64,
}

impl OutFile {
    /// Creates (truncating) `path`; `piece` is the size of every piece but the last.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: &Path, piece: u64) -> std::io::Result<Self> {
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create(true).truncate(true);
        if piece > 0 && piece.is_multiple_of(ALIGN as u64) {
            if let Ok(file) = open.clone().custom_flags(libc::O_DIRECT).open(path) {
                return Ok(Self {
                    path: path.to_path_buf(),
                    file,
                    direct: true,
                    len: 0,
                });
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file: open.open(path)?,
            direct: false,
            len: 0,
        })
    }

    /// Writes `bytes` at `offset`.
    ///
    /// # Errors
    /// Disk errors.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        self.len = self.len.max(offset + bytes.len() as u64);
        if self.direct && offset.is_multiple_of(ALIGN as u64) {
            let done = with_aligned_block(bytes.len(), |block| {
                block[..bytes.len()].copy_from_slice(bytes);
                block[bytes.len()..].fill(0);
                self.file.write_all_at(block, offset)
            });
            match done {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                other => return other,
            }
        }
        // Buffered, on a descriptor without O_DIRECT.
        if self.direct {
            self.file = std::fs::OpenOptions::new().write(true).open(&self.path)?;
            self.direct = false;
        }
        self.file.write_all_at(bytes, offset)
    }

    /// Cuts the padding of the last piece off.
    ///
    /// # Errors
    /// Disk errors.
    pub fn finish(self) -> std::io::Result<u64> {
        self.file.set_len(self.len)?;
        Ok(self.len)
    }
}

/// A chunk read from disk and verified. Its bytes sit behind room for a frame header, so that a
/// reply frame is made without copying them ([`Held::into_frame`]).
#[derive(Debug)]
pub struct Held {
    pub meta: Meta,
    buf: Vec<u8>,
    body_start: usize,
}

impl Held {
    /// The chunk's bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.body_start..]
    }

    /// The frame `header`, `\n\n`, the bytes.
    #[must_use]
    pub fn into_frame(self, header: &[u8]) -> bytes::Bytes {
        frame_in_place(self.buf, self.body_start, header)
    }
}

/// What is kept beside a chunk's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub chunk_index: u32,
    pub chunk_size: u64,
    pub sha256: String,
    #[serde(default)]
    pub file_id: Option<String>,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no chunk {0} on this server")]
    Missing(String),
    #[error("chunk {0} is corrupt ({1}); it is not served")]
    Corrupt(String, String),
    #[error("reading chunk {0}: {1}")]
    Io(String, std::io::Error),
}

/// One server's directory.
#[derive(Debug, Clone)]
pub struct Disk {
    root: PathBuf,
}

impl Disk {
    /// Opens (creating) the directory and empties `tmp/`.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("chunks"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The server id kept in `SERVER_ID`, written with `fresh` the first time.
    ///
    /// # Errors
    /// The file cannot be read or written.
    pub fn server_id(&self, fresh: impl FnOnce() -> String) -> std::io::Result<String> {
        let path = self.root.join("SERVER_ID");
        match std::fs::read_to_string(&path) {
            Ok(s) if crate::domain::check_server_id(s.trim()).is_ok() => Ok(s.trim().to_string()),
            _ => {
                let id = fresh();
                std::fs::write(&path, &id)?;
                Ok(id)
            }
        }
    }

    /// Where a chunk's file lives.
    #[must_use]
    pub fn path(&self, id: &ChunkId) -> PathBuf {
        self.root.join("chunks").join(id.as_str())
    }

    /// Writes a chunk atomically: a reader sees the old file or the whole new one, never a part.
    ///
    /// # Errors
    /// Disk errors.
    pub fn write(&self, id: &ChunkId, meta: &Meta, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.root.join("tmp").join(format!(
            "{}.{}",
            id.as_str(),
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| {
            let header = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
            write_synced(&tmp, &[&header, DELIMITER, bytes])?;
            std::fs::rename(&tmp, self.path(id))?;
            std::fs::File::open(self.root.join("chunks"))?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Reads a chunk and checks its bytes against the stored SHA-256.
    ///
    /// # Errors
    /// [`ReadError::Corrupt`] when the file does not parse or the bytes do not match.
    pub fn read(&self, id: &ChunkId) -> Result<Held, ReadError> {
        let (buf, start) = match read_with_room(&self.path(id), FRAME_ROOM) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReadError::Missing(id.to_string()))
            }
            Err(e) => return Err(ReadError::Io(id.to_string(), e)),
        };
        let corrupt = |why: String| ReadError::Corrupt(id.to_string(), why);
        let frame = split_frame(&buf[start..], true).map_err(|e| corrupt(e.to_string()))?;
        let meta: Meta =
            serde_json::from_value(frame.header).map_err(|e| corrupt(e.to_string()))?;
        if frame.body.len() as u64 != meta.chunk_size {
            return Err(corrupt(format!(
                "{} bytes on disk, {} expected",
                frame.body.len(),
                meta.chunk_size
            )));
        }
        let actual = sha256_hex(frame.body);
        if actual != meta.sha256 {
            return Err(corrupt("checksum mismatch".into()));
        }
        let body_start = buf.len() - frame.body.len();
        Ok(Held {
            meta,
            buf,
            body_start,
        })
    }

    /// The checksum a held chunk's header records (its bytes are not read).
    #[must_use]
    pub fn recorded_sha(&self, id: &ChunkId) -> Option<String> {
        let mut head = vec![0u8; 4096];
        let mut f = std::fs::File::open(self.path(id)).ok()?;
        let n = f.read(&mut head).ok()?;
        head.truncate(n);
        let frame = split_frame(&head, true).ok()?;
        serde_json::from_value::<Meta>(frame.header)
            .ok()
            .map(|m| m.sha256)
    }

    /// Removes a chunk; true when it was there.
    ///
    /// # Errors
    /// Disk errors other than "not there".
    pub fn delete(&self, id: &ChunkId) -> std::io::Result<bool> {
        match std::fs::remove_file(self.path(id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Chunks held and the bytes their files take.
    #[must_use]
    pub fn usage(&self) -> (u64, u64) {
        let Ok(rd) = std::fs::read_dir(self.root.join("chunks")) else {
            return (0, 0);
        };
        rd.flatten().fold((0, 0), |(n, b), e| {
            (n + 1, b + e.metadata().map(|m| m.len()).unwrap_or(0))
        })
    }

    /// Every chunk held, from the headers (the bytes are checked when read).
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn list(&self) -> std::io::Result<Vec<StoredChunk>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.root.join("chunks"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(id) = ChunkId::parse(&name) else {
                continue;
            };
            let mut head = vec![0u8; 4096];
            let Ok(mut f) = std::fs::File::open(entry.path()) else {
                continue;
            };
            let Ok(n) = f.read(&mut head) else { continue };
            head.truncate(n);
            let Ok(frame) = split_frame(&head, true) else {
                continue;
            };
            let Ok(meta) = serde_json::from_value::<Meta>(frame.header) else {
                continue;
            };
            out.push(StoredChunk {
                chunk_id: id.to_string(),
                chunk_index: meta.chunk_index,
                size: meta.chunk_size,
                sha256: meta.sha256,
            });
        }
        out.sort_by(|a, b| a.chunk_id.cmp(&b.chunk_id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_files_are_read_behind_the_room_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 4095, 4096, 4097, 3 * 4096, 1_048_579] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &bytes).unwrap();
            for (buf, start) in [
                read_with_room(&path, FRAME_ROOM).unwrap(),
                read_buffered(&path, FRAME_ROOM).unwrap(),
            ] {
                assert!(start >= FRAME_ROOM);
                assert_eq!(buf.len() - start, len, "length of a {len}-byte file");
                assert!(buf[start..] == bytes[..], "content of a {len}-byte file");
            }
        }
        assert_eq!(
            read_with_room(&dir.path().join("none"), 8)
                .unwrap_err()
                .kind(),
            std::io::ErrorKind::NotFound
        );
    }

    #[test]
    fn write_read_verify_delete() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        let id = ChunkId::parse("c1").unwrap();
        let bytes = b"hello\n\nworld".to_vec();
        let meta = Meta {
            chunk_index: 2,
            chunk_size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
            file_id: None,
        };
        disk.write(&id, &meta, &bytes).unwrap();
        let held = disk.read(&id).unwrap();
        assert_eq!((&held.meta, held.bytes()), (&meta, &bytes[..]));
        let frame = held.into_frame(b"{}");
        assert_eq!(
            &frame[..],
            &crate::domain::encode_frame(&serde_json::json!({}), &bytes)[..]
        );
        assert_eq!(disk.list().unwrap()[0].chunk_index, 2);
        assert_eq!(disk.recorded_sha(&id), Some(meta.sha256.clone()));
        // Flip one byte: never served.
        let path = disk.path(&id);
        let mut raw = std::fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        std::fs::write(&path, raw).unwrap();
        assert!(matches!(disk.read(&id), Err(ReadError::Corrupt(..))));
        assert!(disk.delete(&id).unwrap());
        assert!(matches!(disk.read(&id), Err(ReadError::Missing(_))));
        assert!(std::fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
        let sid = disk.server_id(|| "abc".into()).unwrap();
        assert_eq!(disk.server_id(|| "other".into()).unwrap(), sid);
    }

    #[test]
    fn out_files_hold_exactly_the_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * 8192 + 100).map(|i| (i % 251) as u8).collect();
        // Aligned pieces (direct I/O where the file system has it), then pieces of odd sizes.
        for piece in [8192usize, 1000] {
            let path = dir.path().join(format!("out{piece}"));
            let mut out = OutFile::create(&path, piece as u64).unwrap();
            for (k, chunk) in data.chunks(piece).enumerate() {
                out.write_at((k * piece) as u64, chunk).unwrap();
            }
            assert_eq!(out.finish().unwrap(), data.len() as u64);
            assert_eq!(std::fs::read(&path).unwrap(), data, "piece {piece}");
        }
        let path = dir.path().join("empty");
        OutFile::create(&path, 0).unwrap().finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 0);
    }
}
