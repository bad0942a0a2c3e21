//! Subjects, and ownership by rendezvous hashing.

use super::*;

/// `engine.events.driver.<driver_id>`.
#[must_use]
pub fn driver_subject(id: &str) -> String {
    format!("engine.events.driver.{}", schemas::encode_token(id))
}

/// `engine.events.module.<module_id>`.
#[must_use]
pub fn module_subject(id: &str) -> String {
    format!("engine.events.module.{}", schemas::encode_token(id))
}

/// `engine.events.status.<module_id>`: a module's status reports.
#[must_use]
pub fn status_events_subject(module_id: &str) -> String {
    format!("engine.events.status.{}", schemas::encode_token(module_id))
}

/// `engine.events.audit.<system_id>`: the audit trail of the system's `engine.exec` calls.
#[must_use]
pub fn audit_subject(system_id: &str) -> String {
    format!("engine.events.audit.{}", schemas::encode_token(system_id))
}

/// `engine.events.system.<system_id>`.
#[must_use]
pub fn system_subject(id: &str) -> String {
    format!("engine.events.system.{}", schemas::encode_token(id))
}

/// `engine.status.<module_id>.<name>`.
#[must_use]
pub fn status_subject(module_id: &str, name: &str) -> String {
    format!(
        "engine.status.{}.{}",
        schemas::encode_token(module_id),
        schemas::encode_token(name)
    )
}

/// `engine.watch.<system_id>.<Name>_<index>.<status>`.
#[must_use]
pub fn watch_subject(system_id: &str, place: &Place, status: &str) -> String {
    format!(
        "engine.watch.{}.{}.{}",
        schemas::encode_token(system_id),
        schemas::encode_token(&place.to_string()),
        schemas::encode_token(status)
    )
}

/// A stable 64-bit hash (FNV-1a with a final mix), the same in every process and version.
#[must_use]
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finaliser: spreads FNV's weak low bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// What ownership is computed for: modules run drivers; systems publish watch subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned<'a> {
    Module(&'a str),
    System(&'a str),
}

/// The owner of `key` among `live` instances by rendezvous (highest random weight) hashing:
/// when an instance leaves, only its keys move; when one joins, only the keys it wins move.
#[must_use]
pub fn owner<'a>(live: &'a [String], key: Owned<'_>) -> Option<&'a str> {
    let (kind, id): (&[u8], &str) = match key {
        Owned::Module(m) => (b"m", m),
        Owned::System(s) => (b"s", s),
    };
    live.iter()
        .max_by_key(|i| {
            (
                stable_hash(&[i.as_bytes(), kind, id.as_bytes()]),
                i.as_str(),
            )
        })
        .map(String::as_str)
}

/// The leader of a live set: its lowest id.
#[must_use]
pub fn leader(live: &[String]) -> Option<&str> {
    live.iter().min().map(String::as_str)
}

/// A hash naming one live set (order-independent).
#[must_use]
pub fn live_hash(live: &[String]) -> u64 {
    let mut sorted: Vec<&str> = live.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let parts: Vec<&[u8]> = sorted.iter().map(|s| s.as_bytes()).collect();
    stable_hash(&parts)
}
