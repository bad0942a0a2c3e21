//! The engine's pure domain: drivers, modules and systems as aggregates (`decide` and `apply`),
//! driver metadata with its parameter types, argument checking for `exec`, role checks, places
//! (`Display_2`) and rendezvous hashing. No I/O here: adapters call these functions.
//!
//! The files: [`errors`], [`events`], [`names`], [`metadata`], [`roles`], [`aggregates`] (state,
//! `apply`, `decide`), [`ownership`] (subjects, rendezvous hashing).

pub mod aggregates;
pub mod errors;
pub mod events;
pub mod metadata;
pub mod names;
pub mod ownership;
pub mod roles;
#[cfg(test)]
mod tests;

pub use aggregates::*;
pub use errors::*;
pub use events::*;
pub use metadata::*;
pub use names::*;
pub use ownership::*;
pub use roles::*;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
