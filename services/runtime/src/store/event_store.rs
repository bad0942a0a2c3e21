//! The JetStream stream of one context: append with the expected subject sequence, dedupe by
//! `Nats-Msg-Id`, load an aggregate.

use super::envelope::{decode_event, Stored};
use super::group_commit::Appender;
use super::DUPLICATE_WINDOW;
use crate::error::ServiceError;
use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use std::time::Duration;

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
    /// Group commit of concurrent appends, when the stream allows atomic batches.
    appender: Option<Appender>,
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
        Self::open_with(js, domain, name, replicas, false).await
    }

    /// [`Self::open`], with group commit of concurrent appends when `group_commit` is set and the
    /// server has atomic batch publish (nats-server 2.12+; the stream then allows it). See
    /// [`super::group_commit`].
    ///
    /// # Errors
    /// As [`Self::open`].
    pub async fn open_with(
        js: jetstream::Context,
        domain: &str,
        name: &str,
        replicas: usize,
        group_commit: bool,
    ) -> anyhow::Result<Self> {
        let atomic = group_commit
            && crate::nats::parse_version(&js.client().server_info().version)
                .is_some_and(|v| v >= crate::nats::ATOMIC_BATCH_VERSION);
        let config = stream::Config {
            name: name.to_string(),
            subjects: vec![format!("{domain}.events.>")],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            description: Some(format!("Switchyard {domain} events")),
            allow_atomic_publish: atomic,
            ..Default::default()
        };
        let stream = crate::nats::ensure_stream(&js, config, replicas).await?;
        let appender = atomic.then(|| Appender::start(js.clone(), name));
        Ok(Self {
            js,
            stream,
            name: name.to_string(),
            replicas,
            appender,
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
                    appender: None,
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
        let info = self.stream.get_info().await.context("stream info")?;
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
            Err(e) => Err(anyhow::Error::from(e).context(format!("reading message {seq}"))),
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

    /// The events on `subject` after stream sequence `after` up to `until` (the subject's last
    /// sequence, as the stream leader told it: [`EventStore::last_seq_of`]), read one by one with
    /// direct gets: cheap when a few arrived since (the catch-up after losing a race, or before a
    /// refusal on a cached state stands). A direct get may be answered by any replica, and one that
    /// is behind (a node restarted and catching up) does not hold the latest events yet: `None`
    /// then, as when there are more than `limit` (load the whole aggregate from the leader instead).
    ///
    /// # Errors
    /// JetStream is not reachable, or a stored event does not decode.
    pub async fn load_after<E: DeserializeOwned>(
        &self,
        subject: &str,
        after: u64,
        until: u64,
        limit: usize,
    ) -> Result<Option<Vec<Stored<E>>>, ServiceError> {
        let mut out = Vec::new();
        let mut from = after + 1;
        while from <= until {
            match self
                .stream
                .direct_get_next_for_subject(subject, Some(from))
                .await
            {
                Ok(m) if m.sequence > until => return Ok(None),
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
                // The leader holds an event up to `until` that this replica does not.
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => return Ok(None),
                Err(e) => {
                    return Err(ServiceError::unavailable(format!(
                        "the event store is unavailable: {e}"
                    )))
                }
            }
        }
        Ok(Some(out))
    }

    /// Appends one encoded event to `subject` if the subject's last sequence is still `expected`.
    /// With group commit on, events of concurrent commands share one atomic batch and its ack.
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
        match &self.appender {
            Some(appender) => appender.append(subject, payload, expected, msg_id).await,
            None => super::group_commit::single(&self.js, subject, payload, expected, msg_id).await,
        }
    }

    /// What group commit did on this stream (`None` when it is off).
    #[must_use]
    pub fn group_commit_stats(&self) -> Option<&super::group_commit::Stats> {
        self.appender.as_ref().map(Appender::stats)
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
