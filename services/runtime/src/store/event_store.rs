//! The JetStream stream of one context: append with the expected subject sequence, dedupe by
//! `Nats-Msg-Id`, load an aggregate.

use super::envelope::{decode_event, Stored};
use super::DUPLICATE_WINDOW;
use crate::error::ServiceError;
use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
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
}

impl EventStore {
    /// Creates the stream `name` over `<domain>.events.>`, or updates it to that configuration.
    ///
    /// # Errors
    /// JetStream is not enabled or not reachable.
    pub async fn open(js: jetstream::Context, domain: &str, name: &str) -> anyhow::Result<Self> {
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
        js.create_or_update_stream(config)
            .await
            .with_context(|| format!("creating stream {name}"))?;
        let stream = js
            .get_stream(name)
            .await
            .with_context(|| format!("opening stream {name}"))?;
        Ok(Self {
            js,
            stream,
            name: name.to_string(),
        })
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
