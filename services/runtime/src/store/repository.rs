//! The aggregate repository: hot aggregates cached with their last sequence, `decide` run with
//! bounded optimistic retries, replies of commands with `Nats-Msg-Id` remembered.

use super::envelope::{encode_event, Aggregate};
use super::event_store::{AppendError, EventStore};
use super::idempotency::Idempotency;
use super::MAX_ATTEMPTS;
use crate::error::ServiceError;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

struct Slot<A> {
    loaded: bool,
    state: A,
    seq: u64,
}

/// Loads, caches and changes aggregates of one type.
pub struct Repository<A: Aggregate> {
    store: EventStore,
    idem: Idempotency,
    domain: String,
    cache: moka::sync::Cache<String, Arc<Mutex<Slot<A>>>>,
}

impl<A: Aggregate> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            idem: self.idem.clone(),
            domain: self.domain.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository over `store` keeping at most `capacity` aggregates in memory.
    #[must_use]
    pub fn new(store: EventStore, idem: Idempotency, domain: &str, capacity: u64) -> Self {
        Self {
            store,
            idem,
            domain: domain.into(),
            cache: moka::sync::Cache::new(capacity),
        }
    }

    /// The event store.
    #[must_use]
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    fn slot(&self, subject: &str) -> Arc<Mutex<Slot<A>>> {
        self.cache.get_with(subject.to_string(), || {
            Arc::new(Mutex::new(Slot {
                loaded: false,
                state: A::default(),
                seq: 0,
            }))
        })
    }

    async fn reload(&self, subject: &str, slot: &mut Slot<A>) -> Result<(), ServiceError> {
        let (events, last) = self.store.load::<A::Event>(subject).await?;
        let mut state = A::default();
        for e in &events {
            state.apply(&e.event);
        }
        slot.state = state;
        slot.seq = last;
        slot.loaded = true;
        Ok(())
    }

    /// Forgets the cached state of `subject`: the next command on it loads it from the store (for a
    /// caller that found the cache behind the stream, e.g. written by another process).
    pub fn forget(&self, subject: &str) {
        self.cache.invalidate(subject);
    }

    /// The last sequence of the cached state of `subject`, when it is cached and loaded (without
    /// waiting for a command that holds it).
    #[must_use]
    pub fn cached_seq(&self, subject: &str) -> Option<u64> {
        let slot = self.cache.get(subject)?;
        let slot = slot.try_lock().ok()?;
        slot.loaded.then_some(slot.seq)
    }

    /// Brings a cached aggregate up to date with what other writers appended since.
    async fn catch_up(&self, subject: &str, slot: &mut Slot<A>) -> Result<(), ServiceError> {
        if slot.loaded {
            if let Some(events) = self
                .store
                .load_after::<A::Event>(subject, slot.seq, 64)
                .await?
            {
                for e in &events {
                    slot.state.apply(&e.event);
                    slot.seq = e.seq;
                }
                return Ok(());
            }
        }
        self.reload(subject, slot).await
    }

    /// The current state of an aggregate and its last sequence (from the cache when known).
    ///
    /// # Errors
    /// The event store is unavailable.
    pub async fn state(&self, subject: &str) -> Result<(A, u64), ServiceError> {
        let slot = self.slot(subject);
        let mut slot = slot.lock().await;
        if !slot.loaded {
            self.reload(subject, &mut slot).await?;
        }
        Ok((slot.state.clone(), slot.seq))
    }

    /// Runs one command on the aggregate at `subject`.
    ///
    /// `decide` sees the current state and returns the one event to append (or the user's error);
    /// `reply` turns the state after the event, the event and its stream sequence into the reply.
    /// `msg_id` is the request's `Nats-Msg-Id`, if any.
    ///
    /// # Errors
    /// The decision's own error; `conflict` after [`MAX_ATTEMPTS`] lost races; `unavailable` when the
    /// store does not answer (the command may then have been stored: retry with the same msg id).
    pub async fn execute<R, D, F>(
        &self,
        subject: &str,
        msg_id: Option<&str>,
        decide: D,
        reply: F,
    ) -> Result<R, ServiceError>
    where
        R: Serialize + DeserializeOwned,
        D: Fn(&A) -> Result<(uuid::Uuid, DateTime<Utc>, A::Event), ServiceError>,
        F: Fn(&A, &A::Event, u64) -> R,
    {
        let key = msg_id.map(|m| Idempotency::key(&self.domain, m));
        if let Some(key) = &key {
            if let Some(r) = self.idem.recall::<R>(key).await {
                return r;
            }
        }
        let result = self
            .execute_inner(subject, msg_id, &decide, &reply, key.as_deref())
            .await;
        if let Some(key) = &key {
            self.idem.record(key, &result).await;
        }
        result
    }

    async fn execute_inner<R, D, F>(
        &self,
        subject: &str,
        msg_id: Option<&str>,
        decide: &D,
        reply: &F,
        key: Option<&str>,
    ) -> Result<R, ServiceError>
    where
        R: Serialize + DeserializeOwned,
        D: Fn(&A) -> Result<(uuid::Uuid, DateTime<Utc>, A::Event), ServiceError>,
        F: Fn(&A, &A::Event, u64) -> R,
    {
        let slot = self.slot(subject);
        let mut slot = slot.lock().await;
        // Whether the state has been read from the stream during this command. A refusal decided on
        // a cached state is checked against the stream first: another process may have appended
        // what makes the command valid (an append would catch that, a refusal would not).
        let mut fresh = false;
        if !slot.loaded {
            // An aggregate this process has not seen is most often a new one: decide on the empty
            // state and append expecting no event on the subject. If the subject has events after
            // all, the append is refused (wrong last sequence) and they are read then, as after a
            // lost race; a refusal decided on the guess is checked against the stream (`fresh` is
            // false). So a new aggregate costs no read, and an old one no more than before.
            slot.state = A::default();
            slot.seq = 0;
            slot.loaded = true;
        }
        let mut attempt = 0;
        while attempt < MAX_ATTEMPTS {
            attempt += 1;
            if !slot.loaded {
                self.reload(subject, &mut slot).await?;
                fresh = true;
            }
            let (id, at, event) = match decide(&slot.state) {
                Ok(decided) => decided,
                Err(e) if !fresh => {
                    let before = slot.seq;
                    if let Err(load) = self.catch_up(subject, &mut slot).await {
                        slot.loaded = false;
                        return Err(load);
                    }
                    fresh = true;
                    if slot.seq != before {
                        continue;
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let payload = encode_event(id, at, &event)?;
            let id_text = id.to_string();
            let dedupe_id = msg_id.unwrap_or(&id_text);
            match self
                .store
                .append(subject, payload, slot.seq, dedupe_id)
                .await
            {
                Ok(ack) if ack.duplicate => {
                    // The same Nats-Msg-Id was stored by a concurrent request: answer as it did.
                    slot.loaded = false;
                    if let Some(key) = key {
                        for _ in 0..40 {
                            if let Some(r) = self.idem.recall::<R>(key).await {
                                return r;
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    self.reload(subject, &mut slot).await?;
                    return Ok(reply(&slot.state, &event, ack.sequence));
                }
                Ok(ack) => {
                    slot.state.apply(&event);
                    slot.seq = ack.sequence;
                    return Ok(reply(&slot.state, &event, ack.sequence));
                }
                Err(AppendError::WrongLastSequence) => {
                    tracing::debug!(subject, attempt, "lost a race; catching up");
                    if attempt >= 2 {
                        // Back off (randomly, growing) so that writers in other processes interleave.
                        let cap = 1u64 << attempt.min(7);
                        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % cap))
                            .await;
                    }
                    if let Err(e) = self.catch_up(subject, &mut slot).await {
                        slot.loaded = false;
                        return Err(e);
                    }
                    fresh = true;
                }
                Err(AppendError::Unacknowledged(e)) => {
                    slot.loaded = false;
                    return Err(ServiceError::unavailable(format!(
                        "the event store did not acknowledge the event ({e}); it may have been stored: retry with the same Nats-Msg-Id"
                    )));
                }
            }
        }
        Err(ServiceError::conflict(format!(
            "too many concurrent writers on {subject}: gave up after {MAX_ATTEMPTS} attempts; retry"
        )))
    }
}
