//! Chunk and server ids, and SHA-256 checksums.

use super::*;

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

pub(super) fn check_token(field: &str, s: &str) -> Result<(), String> {
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
