//! The dispatch domain, pure: the facility graph and its shortest routes, the cart / SSD / request
//! states with their `decide` functions (one command, one event) and `apply`, and [`Model`], the fold
//! of every event that the dispatcher and the command handlers read (queues, planning, reservations,
//! re-planning after a fault). No tokio, NATS or SQL here.
//!
//! The files: [`graph`], [`cart`], [`ssd`], [`request`], [`model`]; errors are [`DomainError`].

pub mod cart;
pub mod graph;
pub mod model;
pub mod request;
pub mod ssd;
#[cfg(test)]
mod tests;

pub use cart::*;
pub use graph::*;
pub use model::*;
pub use request::*;
pub use ssd::*;

use chrono::{DateTime, Utc};
use schemas::dispatch::{self as w, CartStatus, DispatchEvent, NodeKind, Report, SsdHealth};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

/// What a command did wrong (`Invalid`, `NotFound`, `Conflict`), mapped to the contract's codes
/// by `From<DomainError> for ServiceError`.
pub use runtime::DomainError;

fn check_id(field: &str, id: &str) -> Result<(), DomainError> {
    schemas::check_id(field, id).map_err(DomainError::Invalid)
}
