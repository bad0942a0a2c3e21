//! The manager aggregate, pure: commands, events, state, `decide`, `evolve`, the network tree and the
//! one delta each event makes to it. No I/O here; the handlers, the projection and the live publisher
//! all fold events through [`Manager::evolve`], so the tree they serve and the deltas they publish
//! agree by construction.
//!
//! Version: every event is one change, so a manager's `version` is the number of its events, and
//! [`delta`] turns one event into exactly one [`Delta`] whose path is the smallest part of the tree
//! that changed (the whole tree, path `""`, when the state changes, since `state` and `state_name`
//! both sit at the root).
//!
//! The files: [`commands`], [`events`], [`state`], `decide`, `evolve`, [`tree`] (views and deltas);
//! errors are [`DomainError`].

pub mod commands;
mod decide;
pub mod events;
mod evolve;
pub mod state;
#[cfg(test)]
mod tests;
pub mod tree;

pub use commands::{Capability, Command, DataType, NodeSpec, WorkerInfo};
pub use events::Event;
pub use state::{Manager, ManagerState, Worker};
use std::collections::BTreeMap;
pub use tree::{
    apply_delta, delta, escape_key, unescape_key, Delta, GraphView, NodeView, Op, TreeView,
    WorkerView,
};

/// Most nodes one graph may hold (keeps the tree, and a whole-tree delta, well under 1 MiB).
pub const MAX_NODES: usize = 2_000;
/// Longest name, ip or dashboard component, in bytes.
pub const MAX_TEXT: usize = 256;

/// Why a command was refused (`Invalid`, `NotFound`, `Conflict`). Nothing is appended.
pub use runtime::DomainError;
