//! The event-sourcing runtime every Switchyard context stands on.
//!
//! - [`store`]: the JetStream event store (append with the expected subject sequence, dedupe by
//!   `Nats-Msg-Id`, load an aggregate) and [`store::Repository`], which caches hot aggregates and runs
//!   `decide` with bounded optimistic retries.
//! - [`service`]: command and query endpoints on the NATS micro service API, JSON or postcard bodies,
//!   error replies exactly as the contract says.
//! - [`projector`]: durable pull consumers writing read models to PostgreSQL, one transaction per
//!   batch together with the checkpoint, poison messages parked, lag measured, `min_seq` waits.
//! - [`health`]: readiness, `sys.query.health`, and the `ready` announcement on `engine.system`.

pub mod allocator;
pub mod client;
pub mod codec;
pub mod config;
pub mod ctx;
pub mod db;
pub mod error;
pub mod follow;
pub mod health;
pub mod http;
pub mod nats;
pub mod projector;
pub mod service;
pub mod sqltext;
pub mod store;
pub mod telemetry;
pub mod testing;

pub use config::Config;
pub use ctx::Ctx;
pub use error::{DomainError, ServiceError};
