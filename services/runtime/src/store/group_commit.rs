//! Group commit of appends: the events of commands that arrive together, on different aggregates,
//! go to the stream as one atomic batch (ADR-50, nats-server 2.12+) with one acknowledgement for
//! all of them, instead of one acknowledgement per command.
//!
//! What a command is promised does not change:
//! - each event still carries its own `Nats-Expected-Last-Subject-Sequence` and `Nats-Msg-Id`, and
//!   the server checks both for every message of the batch when it commits it;
//! - a command is answered only after the ack of the batch holding its event, so only once its
//!   event is stored (and replicated, on a replicated stream);
//! - a batch is all or nothing: when the server refuses it (one event lost its race, one msg id is a
//!   duplicate, too many batches in flight) nothing of it is stored, and every event of it is
//!   appended again on its own, so that each command gets its own answer (`WrongLastSequence`,
//!   duplicate, or stored);
//! - when no ack comes at all, every command of the batch is told so (`Unacknowledged`): it may
//!   have been stored, and sending it again with the same msg id is safe.
//!
//! A lone command is not delayed: a batch is sent as soon as the appender has a free slot (at most
//! [`BATCHES_IN_FLIGHT`] batches wait for their ack at once), and a batch of one is a plain
//! publish. Batches form only when appends arrive faster than acks come back.

use super::event_store::AppendError;
use async_nats::jetstream::{self, context::PublishErrorKind, publish::PublishAck};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Batches one process has waiting for their ack at once, per stream (the server allows 50 per
/// stream; three processes stay well below it). `SWITCHYARD_APPEND_BATCHES_IN_FLIGHT` overrides it.
pub const BATCHES_IN_FLIGHT: usize = 4;
/// Events in one batch at most (the server allows 1,000).
pub const MAX_BATCH: usize = 256;
/// Bytes of payload in one batch at most.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

struct Pending {
    subject: String,
    payload: Bytes,
    expected: u64,
    msg_id: String,
    done: oneshot::Sender<Result<PublishAck, AppendError>>,
}

/// Counters of what the appender did (for benchmarks and the health report).
#[derive(Debug, Default)]
pub struct Stats {
    /// Events appended through the appender.
    pub appends: AtomicU64,
    /// Batches of more than one event committed.
    pub batches: AtomicU64,
    /// Events in those batches.
    pub batched: AtomicU64,
    /// Batches the server refused, whose events were then appended one by one.
    pub refused: AtomicU64,
}

/// What every appender of this process did, summed (plain numbers, for benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub appends: u64,
    pub batches: u64,
    pub batched: u64,
    pub refused: u64,
}

static TOTALS: Stats = Stats {
    appends: AtomicU64::new(0),
    batches: AtomicU64::new(0),
    batched: AtomicU64::new(0),
    refused: AtomicU64::new(0),
};

/// What every appender of this process did so far.
#[must_use]
pub fn totals() -> Totals {
    Totals {
        appends: TOTALS.appends.load(Ordering::Relaxed),
        batches: TOTALS.batches.load(Ordering::Relaxed),
        batched: TOTALS.batched.load(Ordering::Relaxed),
        refused: TOTALS.refused.load(Ordering::Relaxed),
    }
}

impl Stats {
    fn add(&self, field: fn(&Stats) -> &AtomicU64, n: u64) {
        field(self).fetch_add(n, Ordering::Relaxed);
        field(&TOTALS).fetch_add(n, Ordering::Relaxed);
    }
}

/// The group-commit appender of one stream (cheap to clone).
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Pending>,
    stats: Arc<Stats>,
}

impl Appender {
    /// Starts the appender's task on `js`'s connection.
    #[must_use]
    pub fn start(js: jetstream::Context, stream: &str) -> Self {
        let in_flight = std::env::var("SWITCHYARD_APPEND_BATCHES_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(BATCHES_IN_FLIGHT);
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let stats = Arc::new(Stats::default());
        tokio::spawn(run(js, rx, in_flight, stats.clone(), stream.to_string()));
        Self { tx, stats }
    }

    /// What the appender did so far.
    #[must_use]
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Appends one event (see [`super::EventStore::append`]).
    ///
    /// # Errors
    /// As a single append: `WrongLastSequence` or `Unacknowledged`.
    pub async fn append(
        &self,
        subject: &str,
        payload: Bytes,
        expected: u64,
        msg_id: &str,
    ) -> Result<PublishAck, AppendError> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Pending {
                subject: subject.to_string(),
                payload,
                expected,
                msg_id: msg_id.to_string(),
                done,
            })
            .await
            .map_err(|_| AppendError::Unacknowledged("the appender has stopped".into()))?;
        answer.await.map_err(|_| {
            AppendError::Unacknowledged(
                "the appender dropped the append; it may have been stored".into(),
            )
        })?
    }
}

/// Takes what is waiting (up to the limits, one event per subject: two events of one aggregate
/// would be checked against the stream as it was before the batch) whenever a slot is free.
async fn run(
    js: jetstream::Context,
    mut rx: mpsc::Receiver<Pending>,
    in_flight: usize,
    stats: Arc<Stats>,
    stream: String,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut carry: Vec<Pending> = Vec::new();
    loop {
        if carry.is_empty() {
            match rx.recv().await {
                Some(p) => carry.push(p),
                None => return,
            }
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        let mut subjects = HashSet::new();
        let mut bytes = 0usize;
        let mut later = Vec::new();
        let mut take = |p: Pending, batch: &mut Vec<Pending>, later: &mut Vec<Pending>| {
            if batch.len() < MAX_BATCH
                && (batch.is_empty() || bytes + p.payload.len() <= MAX_BATCH_BYTES)
                && subjects.insert(p.subject.clone())
            {
                bytes += p.payload.len();
                batch.push(p);
            } else {
                later.push(p);
            }
        };
        for p in std::mem::take(&mut carry) {
            take(p, &mut batch, &mut later);
        }
        while batch.len() < MAX_BATCH && later.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => take(p, &mut batch, &mut later),
                Err(_) => break,
            }
        }
        carry = later;
        stats.add(|s| &s.appends, batch.len() as u64);
        let (js, stats, stream) = (js.clone(), stats.clone(), stream.clone());
        tokio::spawn(async move {
            commit(&js, batch, &stats, &stream).await;
            drop(permit);
        });
    }
}

/// One event on its own: a publish with the expected subject sequence and msg id, and its ack.
///
/// On a replicated stream, a publish whose msg id another publish is still proposing is refused
/// with "duplicate message id is in process" (10158) rather than de-duplicated: it is sent again
/// shortly, and then gets the duplicate ack (or the other publish failed, and it is stored).
pub(super) async fn single(
    js: &jetstream::Context,
    subject: &str,
    payload: Bytes,
    expected: u64,
    msg_id: &str,
) -> Result<PublishAck, AppendError> {
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let msg = jetstream::message::PublishMessage::build()
            .payload(payload.clone())
            .message_id(msg_id)
            .expected_last_subject_sequence(expected);
        let ack = js
            .send_publish(subject.to_string(), msg)
            .await
            .map_err(|e| AppendError::Unacknowledged(e.to_string()))?;
        match ack.await {
            Ok(ack) => return Ok(ack),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                return Err(AppendError::WrongLastSequence)
            }
            Err(e) if attempt < 40 && msg_id_in_process(&e) => {
                tracing::debug!(
                    subject,
                    msg_id,
                    attempt,
                    "the same msg id is being stored by another publish; sending again"
                );
                tokio::time::sleep(std::time::Duration::from_millis(25 * attempt.min(8))).await;
            }
            Err(e) => return Err(AppendError::Unacknowledged(e.to_string())),
        }
    }
}

/// Whether the server refused a publish because another one with its msg id is still in flight.
fn msg_id_in_process(e: &async_nats::jetstream::context::PublishError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|j| {
            j.error_code() == async_nats::jetstream::ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT
        })
}

/// How a batch ended.
enum Committed {
    /// Stored: the sequence of its last event.
    Stored(u64),
    /// Refused by the server: nothing of it is stored.
    Refused(String),
    /// No ack: it may or may not be stored.
    Unknown(String),
}

async fn commit(js: &jetstream::Context, mut batch: Vec<Pending>, stats: &Stats, stream: &str) {
    if batch.len() == 1 {
        let p = batch.pop().expect("one");
        let r = single(js, &p.subject, p.payload, p.expected, &p.msg_id).await;
        let _ = p.done.send(r);
        return;
    }
    let n = batch.len();
    let span = tracing::debug_span!("append_batch", stream, size = n);
    let outcome = send_batch(js, &batch).await;
    match outcome {
        Committed::Stored(last) => {
            stats.add(|s| &s.batches, 1);
            stats.add(|s| &s.batched, n as u64);
            // An atomic batch is stored as consecutive sequences, ending at the ack's.
            let first = last + 1 - n as u64;
            for (i, p) in batch.into_iter().enumerate() {
                let _ = p.done.send(Ok(PublishAck {
                    stream: stream.to_string(),
                    sequence: first + i as u64,
                    ..PublishAck::default()
                }));
            }
        }
        Committed::Refused(why) => {
            stats.add(|s| &s.refused, 1);
            tracing::debug!(parent: &span, reason = %why, "the batch was refused; appending its events one by one");
            futures::future::join_all(batch.into_iter().map(|p| async move {
                let r = single(js, &p.subject, p.payload, p.expected, &p.msg_id).await;
                let _ = p.done.send(r);
            }))
            .await;
        }
        Committed::Unknown(why) => {
            tracing::debug!(parent: &span, reason = %why, "no ack for the batch");
            for p in batch {
                let _ = p.done.send(Err(AppendError::Unacknowledged(why.clone())));
            }
        }
    }
}

/// Sends the batch: every event but the last as a plain publish carrying the batch's headers (the
/// server answers none of them), the last with the commit header as a publish that waits for the
/// batch's ack.
async fn send_batch(js: &jetstream::Context, batch: &[Pending]) -> Committed {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let client = js.client();
    let n = batch.len();
    for (i, p) in batch[..n - 1].iter().enumerate() {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Batch-Id", id.as_str());
        h.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
        h.insert("Nats-Msg-Id", p.msg_id.as_str());
        h.insert(
            "Nats-Expected-Last-Subject-Sequence",
            p.expected.to_string().as_str(),
        );
        if let Err(e) = client
            .publish_with_headers(p.subject.clone(), h, p.payload.clone())
            .await
        {
            // Not all of it went out: the server abandons the batch (after 10 s), storing nothing.
            return Committed::Refused(format!("sending the batch: {e}"));
        }
    }
    let last = &batch[n - 1];
    let msg = jetstream::message::PublishMessage::build()
        .payload(last.payload.clone())
        .message_id(&last.msg_id)
        .expected_last_subject_sequence(last.expected)
        .header("Nats-Batch-Id", id.as_str())
        .header("Nats-Batch-Sequence", n.to_string().as_str())
        .header("Nats-Batch-Commit", "1");
    let ack = match js.send_publish(last.subject.clone(), msg).await {
        Ok(ack) => ack,
        // The commit did not go out: the batch is abandoned, nothing stored.
        Err(e) => return Committed::Refused(format!("sending the commit: {e}")),
    };
    match ack.await {
        Ok(ack)
            if ack.batch_id.as_deref() == Some(id.as_str())
                && ack.batch_size == Some(n as u64)
                && ack.sequence >= n as u64 =>
        {
            Committed::Stored(ack.sequence)
        }
        Ok(ack) => Committed::Unknown(format!("unexpected batch ack {ack:?}")),
        Err(e) => match e.kind() {
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                Committed::Unknown(e.to_string())
            }
            _ => Committed::Refused(e.to_string()),
        },
    }
}
