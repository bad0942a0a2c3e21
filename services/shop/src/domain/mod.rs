//! The cart aggregate, pure: no I/O, time and new ids are passed in. Money is integer minor units
//! (cents) inside and a decimal number on the wire.
//!
//! [`commands`] (validated from the wire), [`events`], [`state`], [`decide`](decide()),
//! [`evolve`] (`Aggregate::apply`), errors ([`ShopError`]), [`money`] and the DHT's [`dht`]
//! functions.

pub mod commands;
mod decide;
pub mod dht;
pub mod events;
mod evolve;
pub mod money;
pub mod state;
#[cfg(test)]
mod tests;

pub use commands::Command;
pub use decide::decide;
pub use dht::{hash_key, shard_of};
pub use events::{Event, OrderLine};
pub use money::Money;
pub use state::{Cart, Line};

/// Largest count of one item in a cart.
pub const MAX_COUNT: i64 = 1_000_000_000;
/// Largest price, in cents (one hundred billion units).
pub const MAX_CENTS: i64 = 10_000_000_000_000;

/// A user error of the shop context (`Invalid`, `NotFound`, `Conflict`).
pub type ShopError = runtime::DomainError;
