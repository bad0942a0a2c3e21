//! Wire types of every Switchyard subject.
//!
//! This crate is the project's machine-readable copy of `CONTRACT.md`: every request, reply and event
//! payload is a serde type here, and `gen-schemas` writes their JSON Schemas and an AsyncAPI document
//! of the subject catalogue into `schemas/json` and `schemas/asyncapi.json` (a test checks that the
//! checked-in files are what the types generate). Domain crates convert to and from these types
//! explicitly, so the domain never becomes the schema by accident.

pub mod catalogue;
pub mod cluster;
pub mod common;
pub mod dfs;
pub mod dispatch;
pub mod engine;
pub mod live;
pub mod shop;
pub mod sys;

pub use common::*;
