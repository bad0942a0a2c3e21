//! The DHT's key hash and shard function.

/// The contract's `hash_key`: SHA-1 of the key's UTF-8 bytes read as a big-endian integer, modulo 2^63
/// (that is, its low 63 bits).
#[must_use]
pub fn hash_key(key: &str) -> u64 {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(key.as_bytes());
    let mut low = [0u8; 8];
    low.copy_from_slice(&digest[12..20]);
    u64::from_be_bytes(low) & (u64::MAX >> 1)
}

/// The shard that holds a key: `hash_key(key) % shards`.
#[must_use]
pub fn shard_of(hash_key: u64, shards: u32) -> u32 {
    (hash_key % u64::from(shards.max(1))) as u32
}
