//! Pure dfs logic: chunk and server ids, the chunk servers' framing (JSON header, `\n\n`, bytes),
//! upload checks, the file and server aggregates, the repair planner and HTTP `Range` parsing.
//! No I/O here: everything is a function of its arguments, tested below.
//!
//! The files: [`ids`], [`frame`], [`upload`], [`file`] (the file aggregate and its decisions),
//! [`server`], [`repair`], [`range`].

pub mod file;
pub mod frame;
pub mod ids;
pub mod range;
pub mod repair;
pub mod server;
#[cfg(test)]
mod tests;
pub mod upload;

pub use file::*;
pub use frame::*;
pub use ids::*;
pub use range::*;
pub use repair::*;
pub use server::*;
pub use upload::*;

use schemas::dfs::{CommitFile, DfsEvent, FileChunk, UploadChunk};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Longest chunk id.
pub const MAX_CHUNK_ID: usize = 128;
/// The framing delimiter between the JSON header and the bytes.
pub const DELIMITER: &[u8] = b"\n\n";
/// Room kept for the JSON header beside a chunk in one NATS message.
pub const HEADER_ROOM: usize = 4096;
