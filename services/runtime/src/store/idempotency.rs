//! Remembered replies of commands sent with `Nats-Msg-Id`.

use super::{DUPLICATE_WINDOW, IDEMPOTENCY_BUCKET};
use crate::error::ServiceError;
use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    pub async fn open(js: &jetstream::Context) -> anyhow::Result<Self> {
        js.create_or_update_stream(stream::Config {
            name: IDEMPOTENCY_BUCKET.into(),
            subjects: vec!["switchyard.idem.>".into()],
            max_messages_per_subject: 1,
            max_age: DUPLICATE_WINDOW,
            storage: stream::StorageType::File,
            allow_direct: true,
            description: Some("replies of commands sent with Nats-Msg-Id".into()),
            ..Default::default()
        })
        .await
        .context("creating the idempotency stream")?;
        let stream = js
            .get_stream(IDEMPOTENCY_BUCKET)
            .await
            .map_err(anyhow::Error::from)?;
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
                tracing::warn!(error = %format!("{e:#}"), "could not remember the reply of a command");
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

/// A remembered reply (success or a definitive error).
#[derive(Serialize, Deserialize)]
enum Remembered<R> {
    Ok(R),
    Err(schemas::ErrorBody),
}
