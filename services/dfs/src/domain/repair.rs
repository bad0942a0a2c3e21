//! The repair planner: copies for under-replicated chunks, drops of surplus and garbage.

use super::*;

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
