//! Projections: durable pull consumers that write read models into PostgreSQL exactly once.
//!
//! Each projection has a durable consumer `proj_<name>` over its context's whole stream (explicit
//! acks, so several processes can pull from it at once). Messages arrive in batches of up to
//! `batch` (whatever is ready, so latency stays low when idle). A batch is applied in one
//! transaction that first locks the projection's checkpoint row:
//!
//! - events the checkpoint already covers are skipped (a redelivery after a crash);
//! - only the run of events that directly follows the checkpoint is applied, in stream order; events
//!   after a hole are handed back (nak) so that another process's earlier batch commits first —
//!   that keeps the read model in stream order however many processes share the consumer;
//! - an event that does not decode, or whose SQL fails for a reason other than the connection, is
//!   parked in `runtime.dead_letters` with the reason and counted, and the projection moves on;
//! - the checkpoint is moved to the last event in the same transaction; the acks go out after the
//!   commit. A lost connection rolls back and retries the same batch until PostgreSQL is back.
//!
//! [`ProjectionHandle::wait_for`] implements the contract's `min_seq`.

use crate::error::ServiceError;
use crate::store::{decode_event, EventStore, Stored};
use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use sqlx::{PgConnection, PgPool};
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

/// How long a delivered message stays with one process before JetStream hands it to another.
pub const ACK_WAIT: Duration = Duration::from_secs(5);

/// A read model fed from a context's events.
pub trait Projection: Send + Sync + 'static {
    /// The context's event type.
    type Event: DeserializeOwned + Send + Sync + 'static;
    /// Unique name, used for the consumer (`proj_<name>`), the checkpoint and health.
    const NAME: &'static str;
    /// Applies events (in stream order) inside the batch's transaction.
    fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[Stored<Self::Event>],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Empties the read model (for a rebuild from the stream).
    fn reset(&self, tx: &mut PgConnection) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

/// Shared view of a running projection: checkpoint, lag, parked count.
#[derive(Clone)]
pub struct ProjectionHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    name: &'static str,
    pool: PgPool,
    checkpoint: watch::Sender<u64>,
    start_seq: u64,
    lag: AtomicI64,
    parked: AtomicI64,
    /// Why the last event was parked (for health).
    last_parked: std::sync::Mutex<Option<String>>,
}

impl ProjectionHandle {
    /// The projection's name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// The last checkpoint this process knows.
    #[must_use]
    pub fn checkpoint(&self) -> u64 {
        *self.inner.checkpoint.borrow()
    }

    /// Events delivered to nobody yet plus the batch in hand (0 when caught up).
    #[must_use]
    pub fn lag(&self) -> i64 {
        self.inner.lag.load(Ordering::Relaxed)
    }

    /// Events parked in the dead-letter table (those of earlier runs counted at start).
    #[must_use]
    pub fn parked(&self) -> i64 {
        self.inner.parked.load(Ordering::Relaxed)
    }

    /// Why the last event was parked: its sequence and the cause.
    #[must_use]
    pub fn last_parked(&self) -> Option<String> {
        self.inner.last_parked.lock().ok().and_then(|g| g.clone())
    }

    /// Whether the projection has reached the stream as it stood when it started.
    #[must_use]
    pub fn caught_up(&self) -> bool {
        self.checkpoint() >= self.inner.start_seq
    }

    async fn db_checkpoint(&self) -> Result<u64, sqlx::Error> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM runtime.checkpoints WHERE projection = $1")
                .bind(self.inner.name)
                .fetch_optional(&self.inner.pool)
                .await?;
        Ok(seq.unwrap_or(0).max(0) as u64)
    }

    /// Waits until the read model has projected `min_seq` (committed by this or any other process).
    ///
    /// # Errors
    /// `unavailable` after `timeout`, naming where the projection is.
    pub async fn wait_for(
        &self,
        min_seq: Option<u64>,
        timeout: Duration,
    ) -> Result<(), ServiceError> {
        let Some(min_seq) = min_seq else {
            return Ok(());
        };
        // The checkpoint in PostgreSQL is the truth (another process may have moved it, and a rebuild
        // moves it back), so no shortcut through this process's copy.
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.inner.checkpoint.subscribe();
        loop {
            if let Ok(seq) = self.db_checkpoint().await {
                if seq >= min_seq {
                    self.inner.checkpoint.send_if_modified(|c| {
                        if seq > *c {
                            *c = seq;
                            true
                        } else {
                            false
                        }
                    });
                    return Ok(());
                }
            }
            rx.borrow_and_update();
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ServiceError::unavailable(format!(
                    "the {} read model has not reached min_seq {min_seq} within {} ms (it is at {}); retry later",
                    self.inner.name,
                    timeout.as_millis(),
                    self.checkpoint()
                )));
            }
            let step = (deadline - now).min(Duration::from_millis(25));
            let _ = tokio::time::timeout(step, rx.changed()).await;
        }
    }
}

/// Pulls up to `n` messages into `out`, waiting at most `expires` (the server ends the pull then; a pull
/// lost in a server restart never ends, so the client also gives up a little later).
async fn pull_into(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    n: usize,
    expires: Duration,
    out: &mut Vec<jetstream::Message>,
) -> anyhow::Result<()> {
    let msgs = consumer
        .batch()
        .max_messages(n)
        .expires(expires)
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("pull: {e}"))?;
    collect(msgs, expires + Duration::from_secs(1), out).await
}

/// Reads a pull's messages into `out` until it ends, or for at most `patience`.
async fn collect(
    mut msgs: pull::Batch,
    patience: Duration,
    out: &mut Vec<jetstream::Message>,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, msgs.next()).await {
        out.push(m.map_err(|e| anyhow::anyhow!("pull: {e}"))?);
    }
    Ok(())
}

/// Takes up to `n` messages that are already there, without waiting for more.
async fn fetch_into(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    n: usize,
    out: &mut Vec<jetstream::Message>,
) -> anyhow::Result<()> {
    let msgs = consumer
        .fetch()
        .max_messages(n)
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("fetch: {e}"))?;
    collect(msgs, Duration::from_secs(2), out).await
}

/// Naks `msgs` without delay (they are redelivered at once) and empties the vector.
async fn hand_back(msgs: &mut Vec<jetstream::Message>) {
    for m in msgs.drain(..) {
        let _ = m.ack_with(AckKind::Nak(None)).await;
    }
}

fn consumer_name(name: &str) -> String {
    format!("proj_{name}")
}

fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            code.starts_with("08")
                || code.starts_with("57")
                || code.starts_with("53")
                || code == "40001"
                || code == "40P01"
        }
        _ => true,
    }
}

/// How a projector makes batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Most events in one transaction.
    pub max: usize,
    /// How long a batch that is not full waits for more events once it holds one. A transaction
    /// per event costs PostgreSQL several round trips and a commit; under a steady trickle of
    /// commands, waiting a few milliseconds turns many such transactions into one, which leaves the
    /// CPU to the commands (see `BENCHMARKS.md`). It delays read-model visibility by as much.
    pub linger: Duration,
}

impl Batching {
    /// At most `max` events a batch, no waiting.
    #[must_use]
    pub fn max(max: usize) -> Self {
        Self {
            max,
            linger: Duration::ZERO,
        }
    }
}

/// Starts projection `p` over `store`'s stream, writing into `pool`.
///
/// # Errors
/// JetStream or PostgreSQL is not reachable at start.
pub async fn spawn<P: Projection>(
    store: EventStore,
    pool: PgPool,
    p: P,
    batching: Batching,
) -> anyhow::Result<ProjectionHandle> {
    sqlx::query(
        "INSERT INTO runtime.checkpoints (projection, seq) VALUES ($1, 0) ON CONFLICT DO NOTHING",
    )
    .bind(P::NAME)
    .execute(&pool)
    .await?;
    let start_seq = store.last_seq().await?;
    let (tx, _) = watch::channel(0);
    let handle = ProjectionHandle {
        inner: Arc::new(HandleInner {
            name: P::NAME,
            pool: pool.clone(),
            checkpoint: tx,
            start_seq,
            lag: AtomicI64::new(start_seq as i64),
            parked: AtomicI64::new(0),
            last_parked: std::sync::Mutex::new(None),
        }),
    };
    // Events parked by an earlier run still make the read model diverge: health says so.
    let (parked, last): (i64, Option<String>) = sqlx::query_as(
        "SELECT count(*), (SELECT 'seq ' || seq || ': ' || reason FROM runtime.dead_letters WHERE projection = $1 ORDER BY seq DESC LIMIT 1) FROM runtime.dead_letters WHERE projection = $1",
    )
    .bind(P::NAME)
    .fetch_one(&pool)
    .await?;
    handle.inner.parked.store(parked, Ordering::Relaxed);
    if let Ok(mut g) = handle.inner.last_parked.lock() {
        *g = last;
    }
    if parked > 0 {
        tracing::error!(projection = P::NAME, parked, "the read model has parked events: it does not match the stream (see runtime.dead_letters, then `switchyard projections rebuild`)");
    }
    let cp = handle.db_checkpoint().await?;
    handle.inner.checkpoint.send_replace(cp);
    handle
        .inner
        .lag
        .store(start_seq.saturating_sub(cp) as i64, Ordering::Relaxed);
    let runner = Runner {
        store,
        pool,
        p: Arc::new(p),
        batch: batching.max.max(1),
        linger: batching.linger,
        handle: handle.clone(),
        prefetched: Vec::new(),
        last_committed: None,
    };
    tokio::spawn(async move { runner.run().await });
    Ok(handle)
}

/// Empties a projection's read model and replays it from the first event.
///
/// # Errors
/// PostgreSQL or JetStream unreachable.
pub async fn rebuild<P: Projection>(
    store: &EventStore,
    pool: &PgPool,
    p: &P,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO runtime.checkpoints (projection, seq) VALUES ($1, 0) ON CONFLICT (projection) DO UPDATE SET seq = 0, updated_at = now()")
        .bind(P::NAME)
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT seq FROM runtime.checkpoints WHERE projection = $1 FOR UPDATE")
        .bind(P::NAME)
        .execute(&mut *tx)
        .await?;
    p.reset(&mut tx).await?;
    sqlx::query("DELETE FROM runtime.dead_letters WHERE projection = $1")
        .bind(P::NAME)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let stream = store
        .jetstream()
        .get_stream(store.name())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match stream.delete_consumer(&consumer_name(P::NAME)).await {
        Ok(_) => {}
        Err(e) => tracing::info!(error = %e, "no consumer to delete"),
    }
    Ok(())
}

struct Runner<P: Projection> {
    store: EventStore,
    pool: PgPool,
    p: Arc<P>,
    batch: usize,
    linger: Duration,
    handle: ProjectionHandle,
    /// The next batch, fetched while the last one was being committed (catching up only).
    prefetched: Vec<jetstream::Message>,
    /// The checkpoint this process committed last; another value under the lock means another
    /// process is sharing the work.
    last_committed: Option<u64>,
}

enum Outcome {
    /// Committed up to this sequence.
    Committed(u64),
    /// PostgreSQL is not reachable: try the same batch again.
    Retry(sqlx::Error),
}

impl<P: Projection> Runner<P> {
    fn consumer_config(&self, from: u64) -> pull::Config {
        let name = consumer_name(P::NAME);
        pull::Config {
            durable_name: Some(name),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending: 20_000,
            deliver_policy: if from <= 1 {
                jetstream::consumer::DeliverPolicy::All
            } else {
                jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                }
            },
            description: Some(format!("projection {}", P::NAME)),
            ..Default::default()
        }
    }

    /// Opens the projection's durable consumer. The checkpoint in PostgreSQL is the truth: a consumer
    /// that has already acknowledged events past it (the database was replaced or restored) is made
    /// again from the checkpoint, so nothing is skipped.
    async fn consumer(&self) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
        let stream = self
            .store
            .jetstream()
            .get_stream(self.store.name())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let name = consumer_name(P::NAME);
        let cp = self.handle.db_checkpoint().await?;
        let mut consumer = stream
            .get_or_create_consumer(&name, self.consumer_config(cp + 1))
            .await
            .map_err(|e| anyhow::anyhow!("consumer {name}: {e}"))?;
        let floor = consumer
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("consumer {name}: {e}"))?
            .ack_floor
            .stream_sequence;
        if floor > cp {
            tracing::warn!(
                projection = P::NAME,
                checkpoint = cp,
                ack_floor = floor,
                "the consumer is ahead of the read model; replaying from the checkpoint"
            );
            let _ = stream.delete_consumer(&name).await;
            consumer = stream
                .create_consumer(self.consumer_config(cp + 1))
                .await
                .map_err(|e| anyhow::anyhow!("consumer {name}: {e}"))?;
        }
        Ok(consumer)
    }

    /// Hands prefetched messages back (a failed round): they are redelivered at once.
    async fn drop_prefetched(&mut self) {
        hand_back(&mut self.prefetched).await;
    }

    async fn run(mut self) {
        let mut consumer = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if consumer.is_none() {
                match self.consumer().await {
                    Ok(c) => consumer = Some(c),
                    Err(e) => {
                        tracing::warn!(projection = P::NAME, error = %e, "cannot open the consumer; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let Some(c) = consumer.as_ref() else { continue };
            match self.round(c).await {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(projection = P::NAME, error = %e, "projection round failed; retrying");
                    self.drop_prefetched().await;
                    consumer = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// One round: take the checkpoint lock, wait (up to a second) for the next message, fetch what
    /// else is pending, apply and commit, then release the lock. Only the lock holder has a pull
    /// open, so several processes share the batches of one consumer and still apply them in stream
    /// order; the others wait on the lock as standbys.
    ///
    /// The one exception: while catching up alone (at least a whole batch more is pending), the next
    /// batch is fetched while this one commits, so that PostgreSQL and NATS work at the same time;
    /// it is applied in the next round, under the lock, like any other (a batch that no longer
    /// follows the checkpoint is handed back, as always).
    async fn round(
        &mut self,
        consumer: &jetstream::consumer::Consumer<pull::Config>,
    ) -> anyhow::Result<usize> {
        let started = std::time::Instant::now();
        let (tx, cp) = match self.lock().await {
            Ok(l) => l,
            Err(e) => {
                self.drop_prefetched().await;
                tracing::warn!(projection = P::NAME, error = %e, "PostgreSQL unavailable; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(0);
            }
        };
        // Keep this process's copy in step (it goes back after a rebuild).
        let known = cp.max(0) as u64;
        self.handle.inner.checkpoint.send_if_modified(|c| {
            if *c != known {
                *c = known;
                true
            } else {
                false
            }
        });
        // Prefetching is for one process catching up alone: when another has committed since this
        // one did, what was prefetched may no longer follow the checkpoint; it goes back at once.
        let alone = self.last_committed == Some(known);
        if !alone && !self.prefetched.is_empty() {
            self.drop_prefetched().await;
        }
        let mut batch = std::mem::take(&mut self.prefetched);
        let was_prefetched = !batch.is_empty();
        if batch.is_empty() {
            batch.reserve(self.batch);
            // Under load the last batch said how many more are pending: ask for that many at once (the
            // pull completes as soon as it is filled). When idle, wait for one, then take the rest.
            let known_pending = self.handle.lag().clamp(0, self.batch as i64) as usize;
            let first = known_pending.max(1);
            pull_into(consumer, first, Duration::from_secs(1), &mut batch).await?;
            let Some(pending) = batch.last().and_then(|m| m.info().ok()).map(|i| i.pending) else {
                self.handle.inner.lag.store(0, Ordering::Relaxed);
                return Ok(0);
            };
            let more = (pending as usize).min(self.batch.saturating_sub(batch.len()));
            if more > 0 {
                pull_into(consumer, more, Duration::from_millis(200), &mut batch).await?;
            }
            if !self.linger.is_zero() && batch.len() < self.batch {
                // Not full: give the events that are on their way a moment to join this batch, then
                // take what is there (a pull that does not wait: a pull that waits for only a few
                // milliseconds is not reliably ended by nats-server 2.9).
                tokio::time::sleep(self.linger).await;
                fetch_into(consumer, self.batch - batch.len(), &mut batch).await?;
            }
        }
        batch.sort_by_key(|m| m.info().map(|i| i.stream_sequence).unwrap_or(0));
        let pulled = started.elapsed();
        let span = tracing::info_span!(
            "projection_batch",
            projection = P::NAME,
            size = batch.len(),
            from = cp + 1
        );
        let behind = batch
            .last()
            .and_then(|m| m.info().ok())
            .map_or(0, |i| i.pending);
        // The batch is the run that directly follows the checkpoint (nothing held back).
        let contiguous = batch
            .first()
            .and_then(|m| m.info().ok())
            .map(|i| i.stream_sequence)
            == Some(known + 1)
            && batch
                .last()
                .and_then(|m| m.info().ok())
                .map(|i| i.stream_sequence)
                == Some(known + batch.len() as u64);
        let mut next = Vec::new();
        let mut attempt = if alone && contiguous && behind >= self.batch as u64 {
            let (attempt, fetched) = tokio::join!(
                self.commit(tx, cp, &batch).instrument(span.clone()),
                fetch_into(consumer, self.batch, &mut next)
            );
            if let Err(e) = fetched {
                tracing::debug!(parent: &span, error = %e, "prefetch failed");
            }
            attempt
        } else {
            self.commit(tx, cp, &batch).instrument(span.clone()).await
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            match attempt {
                Ok(Outcome::Committed(cp)) => {
                    self.last_committed = Some(cp);
                    break;
                }
                Ok(Outcome::Retry(e)) | Err(e) => {
                    tracing::warn!(parent: &span, error = %e, "PostgreSQL unavailable; the batch will be retried");
                    // What was prefetched would outlive its ack wait: hand it back.
                    hand_back(&mut next).await;
                    for m in &batch {
                        let _ = m.ack_with(AckKind::Progress).await;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    attempt = match self.lock().await {
                        Ok((tx, cp)) => self.commit(tx, cp, &batch).instrument(span.clone()).await,
                        Err(e) => Err(e),
                    };
                }
            }
        }
        self.prefetched = next;
        self.handle
            .inner
            .lag
            .store(behind as i64, Ordering::Relaxed);
        tracing::debug!(parent: &span, lag = behind, was_prefetched, lock_and_pull_us = pulled.as_micros() as u64, total_us = started.elapsed().as_micros() as u64, "batch committed");
        Ok(batch.len())
    }

    /// Opens a transaction holding the projection's checkpoint row.
    async fn lock(&self) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, i64), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let cp: i64 = sqlx::query_scalar(
            "SELECT seq FROM runtime.checkpoints WHERE projection = $1 FOR UPDATE",
        )
        .bind(P::NAME)
        .fetch_one(&mut *tx)
        .await?;
        Ok((tx, cp))
    }

    /// One attempt at committing a batch. Acks (or naks) the messages once the outcome is known.
    async fn commit(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        cp: i64,
        batch: &[jetstream::Message],
    ) -> Result<Outcome, sqlx::Error> {
        let mut next = cp.max(0) as u64 + 1;
        let mut take: Vec<&jetstream::Message> = Vec::new();
        let mut covered: Vec<&jetstream::Message> = Vec::new();
        let mut later: Vec<&jetstream::Message> = Vec::new();
        for m in batch {
            let Ok(info) = m.info() else { continue };
            let seq = info.stream_sequence;
            if seq < next {
                covered.push(m);
            } else if seq == next || (later.is_empty() && self.hole_is_empty(next, seq).await) {
                take.push(m);
                next = seq + 1;
            } else {
                later.push(m);
            }
        }
        let mut events = Vec::with_capacity(take.len());
        let mut poison: Vec<(u64, &jetstream::Message, String)> = Vec::new();
        for m in &take {
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            match decode_event::<P::Event>(&m.payload) {
                Ok((meta, event)) => events.push(Stored {
                    seq,
                    subject: m.subject.to_string(),
                    id: meta.id,
                    occurred_at: meta.occurred_at,
                    event,
                }),
                Err(reason) => poison.push((seq, *m, reason)),
            }
        }
        if !events.is_empty() {
            sqlx::query("SAVEPOINT batch").execute(&mut *tx).await?;
            if let Err(e) = self.p.apply(&mut tx, &events).await {
                if is_transient(&e) {
                    return Ok(Outcome::Retry(e));
                }
                // Find the event(s) at fault: apply one at a time, parking what fails.
                sqlx::query("ROLLBACK TO SAVEPOINT batch")
                    .execute(&mut *tx)
                    .await?;
                for (i, ev) in events.iter().enumerate() {
                    sqlx::query("SAVEPOINT one").execute(&mut *tx).await?;
                    if let Err(e) = self.p.apply(&mut tx, std::slice::from_ref(ev)).await {
                        if is_transient(&e) {
                            return Ok(Outcome::Retry(e));
                        }
                        sqlx::query("ROLLBACK TO SAVEPOINT one")
                            .execute(&mut *tx)
                            .await?;
                        if let Some(m) = take
                            .iter()
                            .find(|m| m.info().map(|i| i.stream_sequence).ok() == Some(ev.seq))
                        {
                            poison.push((
                                ev.seq,
                                *m,
                                format!("applying event {i} of the batch failed: {e}"),
                            ));
                        }
                    } else {
                        sqlx::query("RELEASE SAVEPOINT one")
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
        }
        for (seq, m, reason) in &poison {
            tracing::error!(projection = P::NAME, seq, subject = %m.subject, reason = %reason, "parking an event that cannot be projected: the read model no longer matches the stream");
            sqlx::query("INSERT INTO runtime.dead_letters (projection, seq, subject, payload, reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
                .bind(P::NAME)
                .bind(*seq as i64)
                .bind(m.subject.as_str())
                .bind(m.payload.as_ref())
                .bind(reason)
                .execute(&mut *tx)
                .await?;
        }
        let new_cp = next - 1;
        if new_cp as i64 != cp {
            sqlx::query(
                "UPDATE runtime.checkpoints SET seq = $2, updated_at = now() WHERE projection = $1",
            )
            .bind(P::NAME)
            .bind(new_cp as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        for m in take.iter().chain(covered.iter()) {
            let _ = m.ack().await;
        }
        if !later.is_empty() {
            tracing::debug!(
                projection = P::NAME,
                next,
                held_back = later.len(),
                "events after a hole handed back"
            );
        }
        for m in &later {
            let _ = m
                .ack_with(AckKind::Nak(Some(Duration::from_millis(50))))
                .await;
        }
        self.handle
            .inner
            .parked
            .fetch_add(poison.len() as i64, Ordering::Relaxed);
        if let Some((seq, _, reason)) = poison.last() {
            if let Ok(mut g) = self.handle.inner.last_parked.lock() {
                *g = Some(format!("seq {seq}: {reason}"));
            }
        }
        self.handle.inner.checkpoint.send_if_modified(|c| {
            if new_cp > *c {
                *c = new_cp;
                true
            } else {
                false
            }
        });
        Ok(Outcome::Committed(new_cp))
    }

    /// Whether the stream holds no message in `from..to` (a hole left by deleted messages).
    async fn hole_is_empty(&self, from: u64, to: u64) -> bool {
        if to.saturating_sub(from) > 1000 {
            return false;
        }
        for seq in from..to {
            match self.store.exists(seq).await {
                Ok(false) => {}
                _ => return false,
            }
        }
        true
    }
}
