//! The projector's loop: open the durable consumer, and round after round take the checkpoint lock,
//! pull a batch (or take the prefetched one), commit it (see [`super::batch`]), retry while
//! PostgreSQL is away.

use super::{consumer_name, Projection, ProjectionHandle, ACK_WAIT};
use crate::store::EventStore;
use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use sqlx::PgPool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

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
        .context("pull")?;
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
        out.push(m.map_err(|e| anyhow::anyhow!(e)).context("pull")?);
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
        .context("fetch")?;
    collect(msgs, Duration::from_secs(2), out).await
}

/// Naks `msgs` without delay (they are redelivered at once) and empties the vector.
async fn hand_back(msgs: &mut Vec<jetstream::Message>) {
    for m in msgs.drain(..) {
        let _ = m.ack_with(AckKind::Nak(None)).await;
    }
}

pub(super) struct Runner<P: Projection> {
    pub(super) store: EventStore,
    pub(super) pool: PgPool,
    pub(super) p: Arc<P>,
    pub(super) batch: usize,
    pub(super) linger: Duration,
    pub(super) handle: ProjectionHandle,
    /// The next batch, fetched while the last one was being committed (catching up only).
    pub(super) prefetched: Vec<jetstream::Message>,
    /// The checkpoint this process committed last; another value under the lock means another
    /// process is sharing the work.
    pub(super) last_committed: Option<u64>,
}

pub(super) enum Outcome {
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
            .map_err(anyhow::Error::from)?;
        let name = consumer_name(P::NAME);
        let cp = self.handle.db_checkpoint().await?;
        let mut consumer = stream
            .get_or_create_consumer(&name, self.consumer_config(cp + 1))
            .await
            .with_context(|| format!("consumer {name}"))?;
        let floor = consumer
            .info()
            .await
            .with_context(|| format!("consumer {name}"))?
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
                .with_context(|| format!("consumer {name}"))?;
        }
        Ok(consumer)
    }

    /// Hands prefetched messages back (a failed round): they are redelivered at once.
    async fn drop_prefetched(&mut self) {
        hand_back(&mut self.prefetched).await;
    }

    pub(super) async fn run(mut self) {
        let mut consumer = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if consumer.is_none() {
                match self.consumer().await {
                    Ok(c) => consumer = Some(c),
                    Err(e) => {
                        tracing::warn!(projection = P::NAME, error = %format!("{e:#}"), "cannot open the consumer; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let Some(c) = consumer.as_ref() else { continue };
            match self.round(c).await {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(projection = P::NAME, error = %format!("{e:#}"), "projection round failed; retrying");
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
                tracing::debug!(parent: &span, error = %format!("{e:#}"), "prefetch failed");
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
}
