//! Following a stream into memory: the one follower behind every in-process view and live
//! publisher (dispatch's view, engine's view, the live subjects of shop, cluster and dfs).
//!
//! A [`Follower`] reads a stream in order with an ordered consumer, from a given sequence or from
//! its end, and never fails: a consumer that errs or ends is logged and made again, after a short
//! pause, from the sequence after the last one delivered, so nothing is skipped and nothing is
//! delivered twice. [`Follower::next`] is cancel-safe, so it can sit in a `tokio::select!` beside a
//! timer.
//!
//! ```ignore
//! let mut follower = Follower::new(store.jetstream(), store.name(), "dispatch view")
//!     .subjects("dispatch.events.>")
//!     .from(view.seq() + 1);
//! loop {
//!     for m in follower.next(1000).await {
//!         match m.event::<DispatchEvent>() { Ok((_, e)) => model.apply(m.seq, &e), Err(r) => .. }
//!     }
//! }
//! ```

use crate::store::{decode_event, EnvelopeMeta};
use async_nats::jetstream::{self, consumer::pull, consumer::DeliverPolicy};
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _};
use serde::de::DeserializeOwned;
use std::time::Duration;
use tokio::time::Instant;

/// The pause before a failed consumer is made again.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// One message of the followed stream.
#[derive(Debug, Clone)]
pub struct Followed {
    /// Its stream sequence.
    pub seq: u64,
    /// Its subject.
    pub subject: String,
    /// The stored envelope.
    pub payload: Bytes,
}

impl Followed {
    /// The message decoded as an event envelope of `E`.
    ///
    /// # Errors
    /// Not an envelope, or not an `E`: the reason, for the caller's log.
    pub fn event<E: DeserializeOwned>(&self) -> Result<(EnvelopeMeta, E), String> {
        decode_event(&self.payload)
    }
}

/// An ordered reader of one stream that outlives its consumers.
pub struct Follower {
    js: jetstream::Context,
    stream: String,
    subjects: Option<String>,
    description: String,
    /// The next sequence to deliver (`None`: whatever comes after the stream's end at the start).
    next: Option<u64>,
    messages: Option<pull::Ordered>,
    retry_at: Option<Instant>,
}

impl Follower {
    /// A follower of `stream`, from the stream's end (see [`Follower::from`]); `description` names
    /// it in logs and in the server's consumer list.
    #[must_use]
    pub fn new(js: &jetstream::Context, stream: &str, description: &str) -> Self {
        Self {
            js: js.clone(),
            stream: stream.into(),
            subjects: None,
            description: description.into(),
            next: None,
            messages: None,
            retry_at: None,
        }
    }

    /// Only the subjects `filter` (a subject with wildcards); every subject by default.
    #[must_use]
    pub fn subjects(mut self, filter: &str) -> Self {
        self.subjects = Some(filter.into());
        self
    }

    /// From the sequence `seq` on (1: the whole stream).
    #[must_use]
    pub fn from(mut self, seq: u64) -> Self {
        self.next = Some(seq.max(1));
        self
    }

    /// The next sequence it delivers (`None` before the first message when it started at the end).
    #[must_use]
    pub fn next_seq(&self) -> Option<u64> {
        self.next
    }

    /// The next messages in order: waits for one, then takes up to `max` in all of those that have
    /// already arrived. Cancel-safe: a message is taken only where it is also returned.
    pub async fn next(&mut self, max: usize) -> Vec<Followed> {
        loop {
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
            }
            if self.messages.is_none() {
                let made = consumer(
                    &self.js,
                    &self.stream,
                    self.subjects.as_deref(),
                    &self.description,
                    self.next,
                )
                .await;
                match made {
                    Ok(messages) => self.messages = Some(messages),
                    Err(e) => {
                        self.failed(&e);
                        continue;
                    }
                }
            }
            let Some(messages) = self.messages.as_mut() else {
                continue;
            };
            let first = messages.next().await;
            let mut out = Vec::new();
            let mut failure = take(&mut self.next, first, &mut out);
            while failure.is_none() && out.len() < max.max(1) {
                let Some(more) = messages.next().now_or_never() else {
                    break;
                };
                failure = take(&mut self.next, more, &mut out);
            }
            if let Some(e) = failure {
                self.failed(&e);
            }
            if !out.is_empty() {
                return out;
            }
        }
    }

    fn failed(&mut self, e: &anyhow::Error) {
        tracing::warn!(follower = %self.description, next = ?self.next, error = %format!("{e:#}"), "stream follower interrupted; resuming");
        self.messages = None;
        self.retry_at = Some(Instant::now() + RETRY_AFTER);
    }
}

/// An ordered consumer of `stream` from `next` (its end when `None`). Free of `self`, so that the
/// follower need not be `Sync` for its future to be `Send`.
async fn consumer(
    js: &jetstream::Context,
    stream: &str,
    subjects: Option<&str>,
    description: &str,
    next: Option<u64>,
) -> anyhow::Result<pull::Ordered> {
    use anyhow::Context as _;
    let opened = js
        .get_stream(stream)
        .await
        .with_context(|| format!("opening stream {stream}"))?;
    let deliver_policy = match next {
        Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        None => DeliverPolicy::New,
    };
    let consumer = opened
        .create_consumer(pull::OrderedConfig {
            deliver_policy,
            filter_subject: subjects.unwrap_or_default().to_string(),
            description: Some(description.to_string()),
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating the ordered consumer of {description}"))?;
    consumer
        .messages()
        .await
        .with_context(|| format!("reading the ordered consumer of {description}"))
}

/// Adds one delivery to `out`; the failure, when it is one.
fn take(
    next: &mut Option<u64>,
    delivery: Option<Result<jetstream::Message, pull::OrderedError>>,
    out: &mut Vec<Followed>,
) -> Option<anyhow::Error> {
    let m = match delivery {
        None => return Some(anyhow::anyhow!("the ordered consumer ended")),
        Some(Err(e)) => return Some(anyhow::Error::new(e).context("the ordered consumer")),
        Some(Ok(m)) => m,
    };
    let Ok(info) = m.info() else { return None };
    let seq = info.stream_sequence;
    if next.is_some_and(|n| seq < n) {
        return None;
    }
    *next = Some(seq + 1);
    out.push(Followed {
        seq,
        subject: m.subject.to_string(),
        payload: m.payload.clone(),
    });
    None
}
