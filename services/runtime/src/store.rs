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

use crate::error::ServiceError;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long JetStream remembers a `Nats-Msg-Id` (and we remember its reply).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Name of the KV bucket that remembers replies of commands sent with `Nats-Msg-Id`.
pub const IDEMPOTENCY_BUCKET: &str = "SWITCHYARD_IDEMPOTENCY";
/// Decide-append attempts before a command gives up with `conflict`.
pub const MAX_ATTEMPTS: usize = 20;

/// A state folded from events. `apply` must be total: an event already stored is a fact.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// The event type; its JSON is `{"type": "...", "data": {...}}` (the envelope adds `id` and
    /// `occurred_at`).
    type Event: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);
}

/// A stored event: its stream sequence, subject and decoded envelope.
#[derive(Debug, Clone)]
pub struct Stored<E> {
    pub seq: u64,
    pub subject: String,
    pub id: uuid::Uuid,
    pub occurred_at: DateTime<Utc>,
    pub event: E,
}

/// The envelope fields beside the event.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct EnvelopeMeta {
    pub id: uuid::Uuid,
    pub occurred_at: DateTime<Utc>,
}

/// Decodes one stored message: the envelope's `id`/`occurred_at` and the typed event.
///
/// # Errors
/// A message that is not an envelope of this event type, with the reason.
pub fn decode_event<E: DeserializeOwned>(payload: &[u8]) -> Result<(EnvelopeMeta, E), String> {
    let meta: EnvelopeMeta =
        serde_json::from_slice(payload).map_err(|e| format!("not an event envelope: {e}"))?;
    let event: E =
        serde_json::from_slice(payload).map_err(|e| format!("unknown or malformed event: {e}"))?;
    Ok((meta, event))
}

/// Encodes an event as the contract's envelope: `{id, type, occurred_at, data}`.
///
/// # Errors
/// The event does not serialise as `{"type", "data"}` (a bug).
pub fn encode_event<E: Serialize>(
    id: uuid::Uuid,
    occurred_at: DateTime<Utc>,
    event: &E,
) -> Result<Bytes, ServiceError> {
    /// The envelope, written in one pass (the event adds `type` and `data`).
    #[derive(Serialize)]
    struct Envelope<'a, E> {
        id: uuid::Uuid,
        occurred_at: String,
        #[serde(flatten)]
        event: &'a E,
    }
    let env = Envelope {
        id,
        occurred_at: occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        event,
    };
    serde_json::to_vec(&env).map(Bytes::from).map_err(|e| {
        ServiceError::internal(format!("event does not serialise as {{type, data}}: {e}"))
    })
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to the aggregate first.
    #[error("the aggregate changed since it was read")]
    WrongLastSequence,
    /// No ack: the event may or may not be stored.
    #[error("the event store did not acknowledge: {0}")]
    Unacknowledged(String),
}

/// The JetStream stream of one context.
#[derive(Clone)]
pub struct EventStore {
    js: jetstream::Context,
    stream: stream::Stream,
    name: String,
    replicas: usize,
}

impl EventStore {
    /// Creates the stream `name` over `<domain>.events.>` with `replicas` replicas, or updates it
    /// in place to that configuration (a change of replicas included; never deleted and recreated).
    ///
    /// # Errors
    /// JetStream is not enabled or not reachable, or has fewer servers than `replicas`.
    pub async fn open(
        js: jetstream::Context,
        domain: &str,
        name: &str,
        replicas: usize,
    ) -> anyhow::Result<Self> {
        let config = stream::Config {
            name: name.to_string(),
            subjects: vec![format!("{domain}.events.>")],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            description: Some(format!("Switchyard {domain} events")),
            ..Default::default()
        };
        let stream = crate::nats::ensure_stream(&js, config, replicas).await?;
        Ok(Self {
            js,
            stream,
            name: name.to_string(),
            replicas,
        })
    }

    /// Opens the stream `name` as it is (creating it with one replica only when it is missing), for
    /// a component that appends but does not own the stream's configuration.
    ///
    /// # Errors
    /// JetStream is not reachable.
    pub async fn open_existing(
        js: jetstream::Context,
        domain: &str,
        name: &str,
    ) -> anyhow::Result<Self> {
        match js.get_stream(name).await {
            Ok(mut stream) => {
                let replicas = stream
                    .info()
                    .await
                    .map_err(|e| anyhow::anyhow!("stream {name}: {e}"))?
                    .config
                    .num_replicas;
                Ok(Self {
                    js,
                    stream,
                    name: name.to_string(),
                    replicas,
                })
            }
            Err(_) => Self::open(js, domain, name, 1).await,
        }
    }

    /// The stream's replicas (`SWITCHYARD_REPLICAS`), for what is created beside it.
    #[must_use]
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The stream's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The JetStream context.
    #[must_use]
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The last sequence of the stream now (0 when empty).
    ///
    /// # Errors
    /// JetStream is not reachable.
    pub async fn last_seq(&self) -> anyhow::Result<u64> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| anyhow::anyhow!("stream info: {e}"))?;
        Ok(info.state.last_sequence)
    }

    /// The stream sequence of the last event on `subject` (0 when there is none).
    ///
    /// # Errors
    /// `unavailable` when JetStream does not answer.
    pub async fn last_seq_of(&self, subject: &str) -> Result<u64, ServiceError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(ServiceError::unavailable(format!(
                "the event store is unavailable: {e}"
            ))),
        }
    }

    /// Whether the message with stream sequence `seq` exists.
    ///
    /// # Errors
    /// JetStream is not reachable.
    pub async fn exists(&self, seq: u64) -> anyhow::Result<bool> {
        match self.stream.get_raw_message(seq).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(false),
            Err(e) => Err(anyhow::anyhow!("reading message {seq}: {e}")),
        }
    }

    /// Loads every event on `subject`, in order, with the sequence of the last one (0 for none).
    ///
    /// # Errors
    /// JetStream is not reachable, or a stored event does not decode (named in the message).
    pub async fn load<E: DeserializeOwned>(
        &self,
        subject: &str,
    ) -> Result<(Vec<Stored<E>>, u64), ServiceError> {
        let last = match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => m.sequence,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                return Ok((Vec::new(), 0))
            }
            Err(e) => {
                return Err(ServiceError::unavailable(format!(
                    "the event store is unavailable: {e}"
                )))
            }
        };
        let consumer = self
            .stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: subject.to_string(),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                ServiceError::unavailable(format!("the event store is unavailable: {e}"))
            })?;
        let mut messages = consumer.messages().await.map_err(|e| {
            ServiceError::unavailable(format!("the event store is unavailable: {e}"))
        })?;
        let mut out = Vec::new();
        while let Some(msg) = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .map_err(|_| ServiceError::unavailable("loading the aggregate timed out"))?
        {
            let msg =
                msg.map_err(|e| ServiceError::unavailable(format!("loading the aggregate: {e}")))?;
            let seq = msg
                .info()
                .map_err(|e| ServiceError::internal(e.to_string()))?
                .stream_sequence;
            let (meta, event) = decode_event::<E>(&msg.payload).map_err(|e| {
                ServiceError::internal(format!("stored event {seq} on {subject}: {e}"))
            })?;
            out.push(Stored {
                seq,
                subject: subject.to_string(),
                id: meta.id,
                occurred_at: meta.occurred_at,
                event,
            });
            if seq >= last {
                break;
            }
        }
        Ok((out, last))
    }

    /// The events on `subject` after stream sequence `after`, read one by one with direct gets (cheap
    /// when a few arrived since: the catch-up after losing a race). `None` when there are more than
    /// `limit` (load the whole aggregate instead).
    ///
    /// # Errors
    /// JetStream is not reachable, or a stored event does not decode.
    pub async fn load_after<E: DeserializeOwned>(
        &self,
        subject: &str,
        after: u64,
        limit: usize,
    ) -> Result<Option<Vec<Stored<E>>>, ServiceError> {
        let mut out = Vec::new();
        let mut from = after + 1;
        loop {
            match self
                .stream
                .direct_get_next_for_subject(subject, Some(from))
                .await
            {
                Ok(m) => {
                    let (meta, event) = decode_event::<E>(&m.payload).map_err(|e| {
                        ServiceError::internal(format!(
                            "stored event {} on {subject}: {e}",
                            m.sequence
                        ))
                    })?;
                    from = m.sequence + 1;
                    out.push(Stored {
                        seq: m.sequence,
                        subject: subject.to_string(),
                        id: meta.id,
                        occurred_at: meta.occurred_at,
                        event,
                    });
                    if out.len() > limit {
                        return Ok(None);
                    }
                }
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => return Ok(Some(out)),
                Err(e) => {
                    return Err(ServiceError::unavailable(format!(
                        "the event store is unavailable: {e}"
                    )))
                }
            }
        }
    }

    /// Appends one encoded event to `subject` if the subject's last sequence is still `expected`.
    ///
    /// # Errors
    /// [`AppendError::WrongLastSequence`] when another writer was first; `Unacknowledged` otherwise.
    pub async fn append(
        &self,
        subject: &str,
        payload: Bytes,
        expected: u64,
        msg_id: &str,
    ) -> Result<jetstream::publish::PublishAck, AppendError> {
        let msg = jetstream::message::PublishMessage::build()
            .payload(payload)
            .message_id(msg_id)
            .expected_last_subject_sequence(expected);
        let ack = self
            .js
            .send_publish(subject.to_string(), msg)
            .await
            .map_err(|e| AppendError::Unacknowledged(e.to_string()))?;
        match ack.await {
            Ok(ack) => Ok(ack),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(AppendError::WrongLastSequence)
            }
            Err(e) => Err(AppendError::Unacknowledged(e.to_string())),
        }
    }

    /// The stream sequence of the event on `subject` that was stored with `msg_id`, if there is one
    /// (reads the subject's headers only). JetStream's own de-duplication cannot answer this: it
    /// checks the expected last subject sequence first, so a command decided again on a state that
    /// already holds its own event is refused before its msg id is looked at.
    ///
    /// # Errors
    /// JetStream did not answer (then nobody knows yet).
    pub async fn find_msg_id(&self, subject: &str, msg_id: &str) -> Result<Option<u64>, ()> {
        let last = match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => m.sequence,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                return Ok(None)
            }
            Err(_) => return Err(()),
        };
        let consumer = self
            .stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: subject.to_string(),
                headers_only: true,
                ..Default::default()
            })
            .await
            .map_err(|_| ())?;
        let mut messages = consumer.messages().await.map_err(|_| ())?;
        loop {
            let msg = match tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
                Ok(Some(Ok(msg))) => msg,
                _ => return Err(()),
            };
            let seq = msg.info().map_err(|_| ())?.stream_sequence;
            let id = msg.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id"));
            if id.is_some_and(|v| v.as_str() == msg_id) {
                return Ok(Some(seq));
            }
            if seq >= last {
                return Ok(None);
            }
        }
    }

    /// Appends without an expected sequence (for events that need no aggregate check).
    ///
    /// # Errors
    /// No ack.
    pub async fn append_unchecked(
        &self,
        subject: &str,
        payload: Bytes,
        msg_id: &str,
    ) -> Result<jetstream::publish::PublishAck, AppendError> {
        let msg = jetstream::message::PublishMessage::build()
            .payload(payload)
            .message_id(msg_id);
        let ack = self
            .js
            .send_publish(subject.to_string(), msg)
            .await
            .map_err(|e| AppendError::Unacknowledged(e.to_string()))?;
        ack.await
            .map_err(|e| AppendError::Unacknowledged(e.to_string()))
    }
}

/// Remembered replies of commands sent with `Nats-Msg-Id`: a stream keeping the last message per
/// subject `switchyard.idem.<key>` for [`DUPLICATE_WINDOW`] (a key-value bucket in all but name; built on
/// a plain stream because async-nats 0.51's KV creation does not parse nats-server 2.9's reply).
#[derive(Clone)]
pub struct Idempotency {
    js: jetstream::Context,
    stream: stream::Stream,
}

impl Idempotency {
    /// Creates or updates the stream.
    ///
    /// # Errors
    /// JetStream not reachable.
    pub async fn open(js: &jetstream::Context, replicas: usize) -> anyhow::Result<Self> {
        let stream = crate::nats::ensure_stream(
            js,
            stream::Config {
                name: IDEMPOTENCY_BUCKET.into(),
                subjects: vec!["switchyard.idem.>".into()],
                max_messages_per_subject: 1,
                max_age: DUPLICATE_WINDOW,
                storage: stream::StorageType::File,
                allow_direct: true,
                description: Some("replies of commands sent with Nats-Msg-Id".into()),
                ..Default::default()
            },
            replicas,
        )
        .await?;
        Ok(Self {
            js: js.clone(),
            stream,
        })
    }

    /// The remembered value of `key`, if any.
    pub async fn get(&self, key: &str) -> Option<Bytes> {
        self.stream
            .get_last_raw_message_by_subject(&format!("switchyard.idem.{key}"))
            .await
            .ok()
            .map(|m| m.payload)
    }

    /// The key under which the reply to `msg_id` is kept, for commands of `scope` (a context).
    #[must_use]
    pub fn key(scope: &str, msg_id: &str) -> String {
        let mut h = Sha256::new();
        h.update(scope.as_bytes());
        h.update([0]);
        h.update(msg_id.as_bytes());
        hex::encode(h.finalize())
    }

    /// The reply remembered under `key`, if any: the first reply, success or definitive error.
    pub async fn recall<R: DeserializeOwned>(&self, key: &str) -> Option<Result<R, ServiceError>> {
        let entry = self.get(key).await?;
        match serde_json::from_slice::<Remembered<R>>(&entry).ok()? {
            Remembered::Ok(r) => Some(Ok(r)),
            Remembered::Err(b) => Some(Err(ServiceError::new(b.error.code, b.error.message))),
        }
    }

    /// Remembers a reply under `key`; a transient error (`unavailable`, `internal`) is not
    /// remembered, so that sending the command again can succeed.
    pub async fn record<R: Serialize>(&self, key: &str, result: &Result<R, ServiceError>) {
        let value = match result {
            Ok(r) => Remembered::Ok(r),
            Err(e) if e.is_transient() => return,
            Err(e) => Remembered::Err(e.body()),
        };
        if let Ok(bytes) = serde_json::to_vec(&value) {
            if let Err(e) = self.put(key, bytes.into()).await {
                tracing::warn!(error = %e, "could not remember the reply of a command");
            }
        }
    }

    /// Remembers `value` under `key` (waits for the ack).
    ///
    /// # Errors
    /// No ack.
    pub async fn put(&self, key: &str, value: Bytes) -> anyhow::Result<()> {
        self.js
            .publish(format!("switchyard.idem.{key}"), value)
            .await?
            .await?;
        Ok(())
    }
}

struct Slot<A> {
    loaded: bool,
    state: A,
    seq: u64,
}

/// A remembered reply (success or a definitive error).
#[derive(Serialize, Deserialize)]
enum Remembered<R> {
    Ok(R),
    Err(schemas::ErrorBody),
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
        let mut result = self
            .execute_inner(subject, msg_id, &decide, &reply, key.as_deref())
            .await;
        // A command sent again after its first attempt was stored but not answered (the reply was
        // lost, or the store acknowledged too late): deciding it again on the state that already
        // holds its own event refuses it ("not in the cart", "already exists"). The first attempt's
        // event is found by its msg id, and the first reply is given.
        if let (Err(e), Some(m)) = (&result, msg_id) {
            if !e.is_transient() {
                match self.first_reply(subject, m, &reply).await {
                    Ok(Some(first)) => result = Ok(first),
                    Ok(None) => {}
                    Err(e) => result = Err(e),
                }
            }
        }
        if let Some(key) = &key {
            self.idem.record(key, &result).await;
        }
        result
    }

    /// The reply to the command whose event was stored on `subject` with `msg_id`, if there is one:
    /// the state after that event, the event and its sequence.
    ///
    /// # Errors
    /// `unavailable` when the store cannot tell (retry with the same msg id).
    async fn first_reply<R, F>(
        &self,
        subject: &str,
        msg_id: &str,
        reply: &F,
    ) -> Result<Option<R>, ServiceError>
    where
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
                return Ok(Some(reply(&state, &e.event, seq)));
            }
        }
        Err(cannot_tell())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    enum Ev {
        Happened { what: String, n: i64 },
        Nothing,
    }

    #[test]
    fn events_are_envelopes_and_round_trip() {
        let id = uuid::Uuid::now_v7();
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let bytes = encode_event(
            id,
            at,
            &Ev::Happened {
                what: "x.y".into(),
                n: 3,
            },
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["id"], id.to_string());
        assert_eq!(v["type"], "Happened");
        assert_eq!(v["occurred_at"], "2026-11-23T10:00:00.123456Z");
        assert_eq!(v["data"], serde_json::json!({"what": "x.y", "n": 3}));
        let (meta, ev) = decode_event::<Ev>(&bytes).unwrap();
        assert_eq!(meta.id, id);
        assert_eq!(meta.occurred_at, at);
        assert_eq!(
            ev,
            Ev::Happened {
                what: "x.y".into(),
                n: 3
            }
        );
        assert!(decode_event::<Ev>(b"garbage").is_err());
        let unknown = br#"{"id":"0190c3c0-0000-7000-8000-000000000000","type":"Other","occurred_at":"2026-01-01T00:00:00Z","data":{}}"#;
        assert!(decode_event::<Ev>(unknown).unwrap_err().contains("unknown"));
    }
}
