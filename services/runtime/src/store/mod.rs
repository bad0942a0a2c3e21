//! The JetStream event store and the aggregate repository.
//!
//! One stream per context (`SHOP` over `shop.events.>`, ...). An aggregate is the set of events on one
//! subject. Appending sends `Nats-Expected-Last-Subject-Sequence` (the stream sequence of the
//! aggregate's last event, 0 for none) and `Nats-Msg-Id`, and always waits for the publish ack.
//!
//! [`Repository`] keeps hot aggregates in memory with their last sequence, so a command on a known
//! aggregate costs one append. Commands on one aggregate are serialised inside a process by a
//! per-aggregate lock; between processes optimistic concurrency decides: on a wrong-sequence reply the
//! aggregate is reloaded and the command decided again, a bounded number of times.
//!
//! Idempotency: a command carrying `Nats-Msg-Id` has its reply remembered in the stream
//! `SWITCHYARD_IDEMPOTENCY` for two minutes (the stream's duplicate window), so sending it again
//! returns the first reply and appends nothing; a concurrent duplicate is caught by JetStream's own
//! de-duplication and answered from the bucket once the first one has finished.

//!
//! The pieces: [`envelope`] (the stored form of an event), [`event_store`] (the stream),
//! [`idempotency`] (remembered replies), [`repository`] (the command pipeline).

use std::time::Duration;

pub mod envelope;
pub mod event_store;
pub mod group_commit;
pub mod idempotency;
pub mod repository;

pub use envelope::{decode_event, encode_event, stamp, Aggregate, EnvelopeMeta, NewEvent, Stored};
pub use event_store::{AppendError, EventStore};
pub use idempotency::Idempotency;
pub use repository::{Cached, CommandError, Repository, StateSource};

/// How long JetStream remembers a `Nats-Msg-Id` (and we remember its reply).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Name of the KV bucket that remembers replies of commands sent with `Nats-Msg-Id`.
pub const IDEMPOTENCY_BUCKET: &str = "SWITCHYARD_IDEMPOTENCY";
/// Decide-append attempts before a command gives up with `conflict`.
pub const MAX_ATTEMPTS: usize = 20;
