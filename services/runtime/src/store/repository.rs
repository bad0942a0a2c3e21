//! The command pipeline: read the aggregate's state from a [`StateSource`], run the pure `decide`
//! with bounded optimistic retries, stamp the event (id, time), append it with the aggregate's last
//! sequence, answer, and remember the reply of a command sent with `Nats-Msg-Id`.
//!
//! [`Repository::execute`] reads from the per-process cache of hot aggregates (each with its last
//! sequence); [`Repository::execute_on`] from any other source, such as a context's in-memory view
//! of its whole stream (dispatch). The refusal comes back typed ([`CommandError`]).

use super::envelope::{encode_event, Aggregate};
use super::event_store::{AppendError, EventStore};
use super::idempotency::Idempotency;
use super::MAX_ATTEMPTS;
use crate::error::ServiceError;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Why a command was not carried out. Nothing was appended, except perhaps with `Unavailable`.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandError<E> {
    /// The domain refused the command (decided on a state checked against the stream).
    Refused(E),
    /// The first attempt of this command (same `Nats-Msg-Id`) was refused so; the same answer.
    Repeated(ServiceError),
    /// Lost the race to other writers [`MAX_ATTEMPTS`] times.
    Conflict(String),
    /// The event store did not answer, or failed (its error says which: `unavailable`, or
    /// `internal`). The command may have been stored: retry with the same msg id.
    Unavailable(ServiceError),
}

impl<E> CommandError<E> {
    /// The refusal of the domain, if that is why.
    pub fn refusal(&self) -> Option<&E> {
        match self {
            Self::Refused(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: Clone + Into<ServiceError>> CommandError<E> {
    /// The contract's error (as [`From`], by reference).
    #[must_use]
    pub fn to_service(&self) -> ServiceError {
        self.clone().into()
    }
}

impl<E: Into<ServiceError>> From<CommandError<E>> for ServiceError {
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Refused(e) => e.into(),
            CommandError::Repeated(e) | CommandError::Unavailable(e) => e,
            CommandError::Conflict(m) => ServiceError::conflict(m),
        }
    }
}

/// Where a command reads the state of its aggregate, for the length of one command.
///
/// [`Cached`] is the repository's per-process cache; a context that follows its stream into memory
/// implements it over its view.
pub trait StateSource<A: Aggregate>: Send {
    /// Makes [`StateSource::state`] current enough to decide on (loading it if needed).
    fn load(&mut self) -> impl Future<Output = Result<(), ServiceError>> + Send;
    /// The state to decide on.
    fn state(&self) -> &A;
    /// The stream sequence of the aggregate's last event in that state (0: none).
    fn seq(&self) -> u64;
    /// Whether the state has been read from the stream during this command (a refusal decided on
    /// it stands).
    fn fresh(&self) -> bool;
    /// Brings the state up to date with what other writers appended; true when the command is to be
    /// decided again.
    fn catch_up(&mut self) -> impl Future<Output = Result<bool, ServiceError>> + Send;
    /// The command's event was appended at `seq`: [`StateSource::state`] is the state after it.
    fn appended(&mut self, event: &A::Event, seq: u64) -> impl Future<Output = ()> + Send;
    /// What the store holds is unknown (no ack, or a duplicate): read it again before the next use.
    fn forget(&mut self);
    /// The state after the event at `seq`, stored by another request: [`StateSource::state`].
    fn settle(&mut self, seq: u64) -> impl Future<Output = Result<(), ServiceError>> + Send;
    /// The state to answer with for the stored event `seq` of this command sent again, given
    /// `folded`, the aggregate's own events up to it folded (the cache answers with that).
    fn after(&mut self, folded: A, seq: u64) -> impl Future<Output = A> + Send;
}

struct Slot<A> {
    loaded: bool,
    state: A,
    seq: u64,
}

/// The cached state of one aggregate, locked for one command.
pub struct Cached<'a, A: Aggregate> {
    store: &'a EventStore,
    subject: &'a str,
    slot: OwnedMutexGuard<Slot<A>>,
    fresh: bool,
}

impl<A: Aggregate> Cached<'_, A> {
    async fn reload(&mut self) -> Result<(), ServiceError> {
        let (events, last) = self.store.load::<A::Event>(self.subject).await?;
        let mut state = A::default();
        for e in &events {
            state.apply(&e.event);
        }
        self.slot.state = state;
        self.slot.seq = last;
        self.slot.loaded = true;
        self.fresh = true;
        Ok(())
    }

    /// Brings a cached aggregate up to date with what other writers appended since: up to the
    /// subject's last sequence as the stream leader tells it (a replica answering direct gets may be
    /// behind, and a refusal decided on what it lacks would not stand).
    async fn catch_up_inner(&mut self) -> Result<(), ServiceError> {
        if self.slot.loaded {
            let last = self.store.last_seq_of(self.subject).await?;
            if last == self.slot.seq {
                self.fresh = true;
                return Ok(());
            }
            if last > self.slot.seq {
                let after = self.slot.seq;
                if let Some(events) = self
                    .store
                    .load_after::<A::Event>(self.subject, after, last, 64)
                    .await?
                {
                    for e in &events {
                        self.slot.state.apply(&e.event);
                        self.slot.seq = e.seq;
                    }
                    self.fresh = true;
                    return Ok(());
                }
            }
        }
        self.reload().await
    }
}

impl<A: Aggregate> StateSource<A> for Cached<'_, A> {
    async fn load(&mut self) -> Result<(), ServiceError> {
        if self.slot.loaded {
            return Ok(());
        }
        self.reload().await
    }
    fn state(&self) -> &A {
        &self.slot.state
    }
    fn seq(&self) -> u64 {
        self.slot.seq
    }
    fn fresh(&self) -> bool {
        self.fresh
    }
    async fn catch_up(&mut self) -> Result<bool, ServiceError> {
        let before = self.slot.seq;
        if let Err(e) = self.catch_up_inner().await {
            self.slot.loaded = false;
            return Err(e);
        }
        Ok(self.slot.seq != before)
    }
    async fn appended(&mut self, event: &A::Event, seq: u64) {
        self.slot.state.apply(event);
        self.slot.seq = seq;
    }
    fn forget(&mut self) {
        self.slot.loaded = false;
    }
    async fn settle(&mut self, _seq: u64) -> Result<(), ServiceError> {
        self.reload().await
    }
    async fn after(&mut self, folded: A, _seq: u64) -> A {
        folded
    }
}

/// Runs commands on aggregates of one type; caches hot aggregates with their last sequence.
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
    /// A repository over `store` keeping at most `capacity` aggregates in memory; the replies of
    /// commands sent with `Nats-Msg-Id` are remembered under `domain` (a scope of msg ids).
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

    /// The cached state of `subject`, locked until the returned source is dropped.
    async fn cached<'a>(&'a self, subject: &'a str) -> Cached<'a, A> {
        Cached {
            store: &self.store,
            subject,
            slot: self.slot(subject).lock_owned().await,
            fresh: false,
        }
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

    /// The current state of an aggregate and its last sequence (from the cache when known).
    ///
    /// # Errors
    /// The event store is unavailable.
    pub async fn state(&self, subject: &str) -> Result<(A, u64), ServiceError> {
        let mut cached = self.cached(subject).await;
        cached.load().await?;
        Ok((cached.slot.state.clone(), cached.slot.seq))
    }

    /// Runs one command on the aggregate at `subject`, its state read from the cache.
    ///
    /// `decide` gets the current state and the command's time (`now`, also the event's
    /// `occurred_at`) and returns the one event to append, or the domain's refusal; `reply` turns
    /// the state after the event, the event and its stream sequence into the reply. `msg_id` is the
    /// request's `Nats-Msg-Id`, if any. The event's id and time are stamped here.
    ///
    /// # Errors
    /// See [`CommandError`].
    pub async fn execute<R, E, D, F>(
        &self,
        subject: &str,
        msg_id: Option<&str>,
        decide: D,
        reply: F,
    ) -> Result<R, CommandError<E>>
    where
        R: Serialize + DeserializeOwned + Send,
        E: Clone + Into<ServiceError> + Send,
        D: Fn(&A, DateTime<Utc>) -> Result<A::Event, E> + Send + Sync,
        F: Fn(&A, &A::Event, u64) -> R + Send + Sync,
    {
        if let Some(r) = self.recall(msg_id).await {
            return r;
        }
        // An aggregate this process has not seen is most often a new one: decide on the empty
        // state and append expecting no event on the subject. If the subject has events after
        // all, the append is refused (wrong last sequence) and they are read then, as after a lost
        // race; a refusal decided on the guess is checked against the stream (the state is not
        // fresh). So a new aggregate costs no read, and an old one no more than before.
        let mut source = self.cached(subject).await;
        if !source.slot.loaded {
            source.slot.state = A::default();
            source.slot.seq = 0;
            source.slot.loaded = true;
        }
        self.run(source, subject, msg_id, decide, reply).await
    }

    /// As [`Repository::execute`], the state read from `source` (not the cache).
    ///
    /// # Errors
    /// See [`CommandError`].
    pub async fn execute_on<S, R, E, D, F>(
        &self,
        source: S,
        subject: &str,
        msg_id: Option<&str>,
        decide: D,
        reply: F,
    ) -> Result<R, CommandError<E>>
    where
        S: StateSource<A>,
        R: Serialize + DeserializeOwned + Send,
        E: Clone + Into<ServiceError> + Send,
        D: Fn(&A, DateTime<Utc>) -> Result<A::Event, E> + Send + Sync,
        F: Fn(&A, &A::Event, u64) -> R + Send + Sync,
    {
        if let Some(r) = self.recall(msg_id).await {
            return r;
        }
        self.run(source, subject, msg_id, decide, reply).await
    }

    fn key(&self, msg_id: Option<&str>) -> Option<String> {
        msg_id.map(|m| Idempotency::key(&self.domain, m))
    }

    /// The remembered reply of a command sent again, if there is one.
    async fn recall<R: DeserializeOwned, E>(
        &self,
        msg_id: Option<&str>,
    ) -> Option<Result<R, CommandError<E>>> {
        let key = self.key(msg_id)?;
        let r = self.idem.recall::<R>(&key).await?;
        Some(r.map_err(CommandError::Repeated))
    }

    async fn run<S, R, E, D, F>(
        &self,
        mut source: S,
        subject: &str,
        msg_id: Option<&str>,
        decide: D,
        reply: F,
    ) -> Result<R, CommandError<E>>
    where
        S: StateSource<A>,
        R: Serialize + DeserializeOwned + Send,
        E: Clone + Into<ServiceError> + Send,
        D: Fn(&A, DateTime<Utc>) -> Result<A::Event, E> + Send + Sync,
        F: Fn(&A, &A::Event, u64) -> R + Send + Sync,
    {
        let key = self.key(msg_id);
        let mut result = self
            .attempts(
                &mut source,
                subject,
                msg_id,
                &decide,
                &reply,
                key.as_deref(),
            )
            .await;
        // A command sent again after its first attempt was stored but not answered (the reply was
        // lost, or the store acknowledged too late): deciding it again on the state that already
        // holds its own event refuses it ("not in the cart", "already exists"). The first attempt's
        // event is found by its msg id, and the first reply is given.
        if let (Err(e), Some(m)) = (&result, msg_id) {
            let transient = match e {
                CommandError::Refused(e) => Into::<ServiceError>::into(e.clone()).is_transient(),
                CommandError::Unavailable(e) | CommandError::Repeated(e) => e.is_transient(),
                CommandError::Conflict(_) => false,
            };
            if !transient {
                match self.first_reply(&mut source, subject, m, &reply).await {
                    Ok(Some(first)) => result = Ok(first),
                    Ok(None) => {}
                    Err(e) => result = Err(CommandError::Unavailable(e)),
                }
            }
        }
        drop(source);
        if let Some(key) = &key {
            let answered: Result<&R, ServiceError> = result.as_ref().map_err(|e| e.to_service());
            self.idem.record(key, &answered).await;
        }
        result
    }

    /// The reply to the command whose event was stored on `subject` with `msg_id`, if there is one:
    /// the state after that event, the event and its sequence.
    ///
    /// # Errors
    /// `unavailable` when the store cannot tell (retry with the same msg id).
    async fn first_reply<S, R, F>(
        &self,
        source: &mut S,
        subject: &str,
        msg_id: &str,
        reply: &F,
    ) -> Result<Option<R>, ServiceError>
    where
        S: StateSource<A>,
        F: Fn(&A, &A::Event, u64) -> R,
    {
        let cannot_tell = || {
            ServiceError::unavailable(
                "the event store did not answer whether this command was stored already: retry with the same Nats-Msg-Id",
            )
        };
        let Some(seq) = self
            .store
            .find_msg_id(subject, msg_id)
            .await
            .map_err(|()| cannot_tell())?
        else {
            return Ok(None);
        };
        let (events, _) = self.store.load::<A::Event>(subject).await?;
        let mut state = A::default();
        for e in &events {
            state.apply(&e.event);
            if e.seq == seq {
                tracing::info!(
                    subject,
                    msg_id,
                    seq,
                    "a command sent again was stored already: answering as the first time"
                );
                let state = source.after(state, seq).await;
                return Ok(Some(reply(&state, &e.event, seq)));
            }
        }
        Err(cannot_tell())
    }

    async fn attempts<S, R, E, D, F>(
        &self,
        source: &mut S,
        subject: &str,
        msg_id: Option<&str>,
        decide: &D,
        reply: &F,
        key: Option<&str>,
    ) -> Result<R, CommandError<E>>
    where
        S: StateSource<A>,
        R: Serialize + DeserializeOwned + Send,
        E: Send,
        D: Fn(&A, DateTime<Utc>) -> Result<A::Event, E> + Send + Sync,
        F: Fn(&A, &A::Event, u64) -> R + Send + Sync,
    {
        let now = Utc::now();
        let mut attempt = 0;
        while attempt < MAX_ATTEMPTS {
            attempt += 1;
            source.load().await.map_err(CommandError::Unavailable)?;
            let event = match decide(source.state(), now) {
                Ok(event) => event,
                // A refusal decided on a state not read from the stream during this command is
                // checked against the stream first: another process may have appended what makes
                // the command valid (an append would catch that, a refusal would not).
                Err(e) if !source.fresh() => {
                    if source.catch_up().await.map_err(CommandError::Unavailable)? {
                        continue;
                    }
                    return Err(CommandError::Refused(e));
                }
                Err(e) => return Err(CommandError::Refused(e)),
            };
            let id = uuid::Uuid::now_v7();
            let payload = encode_event(id, now, &event).map_err(CommandError::Unavailable)?;
            let id_text = id.to_string();
            let dedupe_id = msg_id.unwrap_or(&id_text);
            match self
                .store
                .append(subject, payload, source.seq(), dedupe_id)
                .await
            {
                Ok(ack) if ack.duplicate => {
                    // The same Nats-Msg-Id was stored by a concurrent request: answer as it did.
                    source.forget();
                    if let Some(key) = key {
                        for _ in 0..40 {
                            if let Some(r) = self.idem.recall::<R>(key).await {
                                return r.map_err(CommandError::Repeated);
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    source
                        .settle(ack.sequence)
                        .await
                        .map_err(CommandError::Unavailable)?;
                    return Ok(reply(source.state(), &event, ack.sequence));
                }
                Ok(ack) => {
                    source.appended(&event, ack.sequence).await;
                    return Ok(reply(source.state(), &event, ack.sequence));
                }
                Err(AppendError::WrongLastSequence) => {
                    tracing::debug!(subject, attempt, "lost a race; catching up");
                    if attempt >= 2 {
                        // Back off (randomly, growing) so that writers in other processes interleave.
                        let cap = 1u64 << attempt.min(7);
                        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % cap))
                            .await;
                    }
                    source.catch_up().await.map_err(CommandError::Unavailable)?;
                }
                Err(AppendError::Unacknowledged(e)) => {
                    source.forget();
                    return Err(CommandError::Unavailable(ServiceError::unavailable(format!(
                        "the event store did not acknowledge the event ({e}); it may have been stored: retry with the same Nats-Msg-Id"
                    ))));
                }
            }
        }
        Err(CommandError::Conflict(format!(
            "too many concurrent writers on {subject}: gave up after {MAX_ATTEMPTS} attempts; retry"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::CommandError;
    use crate::error::{DomainError, ServiceError};
    use schemas::ErrorCode;

    #[test]
    fn each_refusal_answers_with_its_contract_code() {
        let code = |e: CommandError<DomainError>| ServiceError::from(e).code;
        assert_eq!(
            code(CommandError::Refused(DomainError::NotFound("x".into()))),
            ErrorCode::NotFound
        );
        assert_eq!(
            code(CommandError::Refused(DomainError::Invalid("x".into()))),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(CommandError::Conflict("raced".into())),
            ErrorCode::Conflict
        );
        assert_eq!(
            code(CommandError::Unavailable(ServiceError::unavailable("down"))),
            ErrorCode::Unavailable
        );
        let first = ServiceError::conflict("the cart is empty");
        assert_eq!(
            ServiceError::from(CommandError::<DomainError>::Repeated(first.clone())),
            first
        );
        let refused = CommandError::Refused(DomainError::Conflict("no".into()));
        assert_eq!(refused.refusal(), Some(&DomainError::Conflict("no".into())));
        assert_eq!(refused.to_service(), ServiceError::conflict("no"));
    }
}
