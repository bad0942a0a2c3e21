//! The file aggregate: its state, the commit checks and `decide` of COMMIT_FILE / DELETE_FILE.

use super::*;

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
