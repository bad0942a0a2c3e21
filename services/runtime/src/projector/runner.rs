//! The projector's loop: take the lease (or stand by), follow the stream from the checkpoint with an
//! ordered consumer, make batches, commit them, retry.

use super::batch::{Batch, Outcome};
use super::{
    legacy_consumer_name, Batching, Projection, ProjectionHandle, LEASE_CHECK, LEASE_POLL,
};
use crate::store::EventStore;
use async_nats::jetstream::{self, consumer::pull};
use futures::{FutureExt as _, StreamExt as _};
use sqlx::{Connection as _, PgConnection, PgPool};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

/// The advisory-lock key of a projection's lease, computed by PostgreSQL.
const LOCK_KEY: &str = "hashtextextended('switchyard.projection.' || $1, 0)";

pub(super) struct Runner<P: Projection> {
    store: EventStore,
    pub(super) pool: PgPool,
    pub(super) p: Arc<P>,
    batch: usize,
    linger: Duration,
    pub(super) sync_commit: bool,
    pub(super) handle: ProjectionHandle,
}

/// Why the owner stopped owning.
enum Stop {
    /// The lease connection is gone: PostgreSQL has dropped (or will drop) the lock.
    LeaseLost(sqlx::Error),
    /// NATS failed (the consumer could not be made, or its messages stopped).
    Nats(anyhow::Error),
}

impl<P: Projection> Runner<P> {
    pub(super) fn new(
        store: EventStore,
        pool: PgPool,
        p: P,
        batching: Batching,
        handle: ProjectionHandle,
    ) -> Self {
        Self {
            store,
            pool,
            p: Arc::new(p),
            batch: batching.max.max(1),
            linger: batching.linger,
            sync_commit: batching.sync_commit,
            handle,
        }
    }

    /// The lease connection: the pool's settings (so its `application_name` too), outside the pool
    /// (a session-level lock belongs to its connection), with TCP keepalives and a user timeout so
    /// that PostgreSQL gives up a connection that was cut (not closed) within seconds.
    async fn lease_connection(&self) -> Result<PgConnection, sqlx::Error> {
        let options = (*self.pool.connect_options()).clone().options([
            ("tcp_keepalives_idle", "2"),
            ("tcp_keepalives_interval", "1"),
            ("tcp_keepalives_count", "3"),
            ("tcp_user_timeout", "5000"),
        ]);
        PgConnection::connect_with(&options).await
    }

    pub(super) async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut lease = match self.lease_connection().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(projection = P::NAME, error = %e, "PostgreSQL unavailable for the projection's lease; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = self.stand_by(&mut lease).await {
                tracing::warn!(projection = P::NAME, error = %e, "lost the lease connection while standing by; reconnecting");
                tokio::time::sleep(LEASE_POLL).await;
                continue;
            }
            tracing::info!(projection = P::NAME, "took the projection's lease");
            self.handle.inner.owner.store(true, Ordering::Relaxed);
            let stop = self.own(&mut lease).await;
            self.handle.inner.owner.store(false, Ordering::Relaxed);
            match stop {
                Stop::LeaseLost(e) => {
                    tracing::warn!(projection = P::NAME, error = %e, "lost the projection's lease; standing by");
                }
                Stop::Nats(e) => {
                    tracing::warn!(projection = P::NAME, error = %format!("{e:#}"), "projection stopped on a NATS error; giving the lease up and retrying");
                }
            }
            // Closing the connection releases the lock (dropping it does too, once PostgreSQL sees it).
            let _ = lease.close().await;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Tries the lease every [`LEASE_POLL`] until it is this process's, keeping this process's
    /// checkpoint and lag current meanwhile. Never waits on a lock.
    async fn stand_by(&self, lease: &mut PgConnection) -> Result<(), sqlx::Error> {
        let mut polls = 0u32;
        loop {
            let got: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT pg_try_advisory_lock({LOCK_KEY})"
            )))
            .bind(P::NAME)
            .fetch_one(&mut *lease)
            .await?;
            if got {
                return Ok(());
            }
            if let Ok(cp) = self.handle.db_checkpoint().await {
                self.handle.set_checkpoint(cp);
                // The lag as a standby sees it, about once a second.
                if polls.is_multiple_of(5) {
                    if let Ok(last) = self.store.last_seq().await {
                        self.handle
                            .inner
                            .lag
                            .store(last.saturating_sub(cp) as i64, Ordering::Relaxed);
                    }
                }
            }
            polls = polls.wrapping_add(1);
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    /// The consumer of an owner: ordered (no acks, no redeliveries to wait for), from `from` on.
    async fn consumer(&self, from: u64) -> anyhow::Result<pull::Ordered> {
        let stream = self
            .store
            .jetstream()
            .get_stream(self.store.name())
            .await
            .map_err(|e| anyhow::anyhow!("opening stream {}: {e}", self.store.name()))?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: if from <= 1 {
                    jetstream::consumer::DeliverPolicy::All
                } else {
                    jetstream::consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: from,
                    }
                },
                description: Some(format!("projection {} (its owner)", P::NAME)),
                // Pulls of a second, so heartbeats every half second: a consumer lost with a
                // nats-server restart is noticed and made again within a couple of seconds.
                max_expires: Duration::from_secs(1),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating the consumer of projection {}: {e}", P::NAME))?;
        consumer
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("following stream {}: {e}", self.store.name()))
    }

    /// Applies the stream while the lease is this process's.
    async fn own(&self, lease: &mut PgConnection) -> Stop {
        let stream = self.store.name().to_string();
        if let Ok(s) = self.store.jetstream().get_stream(&stream).await {
            // What earlier versions shared; nothing reads it any more.
            let _ = s.delete_consumer(&legacy_consumer_name(P::NAME)).await;
        }
        let mut checked = tokio::time::Instant::now();
        'from_checkpoint: loop {
            let cp = loop {
                match self.handle.db_checkpoint().await {
                    Ok(cp) => break cp,
                    Err(e) => {
                        if let Err(e) = check(lease, &mut checked, true).await {
                            return Stop::LeaseLost(e);
                        }
                        tracing::warn!(projection = P::NAME, error = %e, "PostgreSQL unavailable; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            };
            self.handle.set_checkpoint(cp);
            let mut messages = match self.consumer(cp + 1).await {
                Ok(m) => m,
                Err(e) => return Stop::Nats(e),
            };
            let mut cp = cp;
            let mut batch = Batch::with_capacity(self.batch);
            // Events that arrived while the previous batch was committing: the next batch.
            let mut next = Batch::with_capacity(self.batch);
            loop {
                std::mem::swap(&mut batch, &mut next);
                if batch.is_empty() {
                    // Idle: wait for the next message, checking the lease meanwhile.
                    let first = loop {
                        tokio::select! {
                            m = messages.next() => break m,
                            () = tokio::time::sleep(LEASE_CHECK) => {
                                if let Err(e) = check(lease, &mut checked, false).await {
                                    return Stop::LeaseLost(e);
                                }
                                // Idle: a checkpoint moved by someone else (a rebuild sets it
                                // back to 0) would otherwise be noticed only at the next event.
                                if matches!(self.handle.db_checkpoint().await, Ok(now) if now != cp) {
                                    tracing::info!(projection = P::NAME, "the checkpoint moved under this owner (a rebuild, or another owner); starting again from it");
                                    continue 'from_checkpoint;
                                }
                            }
                        }
                    };
                    match first {
                        Some(Ok(m)) => batch.push(m),
                        Some(Err(e)) => {
                            return Stop::Nats(anyhow::anyhow!("following stream {stream}: {e}"))
                        }
                        None => {
                            return Stop::Nats(anyhow::anyhow!(
                                "the consumer of stream {stream} ended"
                            ))
                        }
                    }
                }
                // Then what is already there, and (a batch that is not full, when nothing was
                // waiting) what comes within the linger.
                let linger_until = tokio::time::Instant::now() + self.linger;
                let lingering = batch.len() == 1;
                loop {
                    while batch.len() < self.batch {
                        match messages.next().now_or_never() {
                            Some(Some(Ok(m))) => batch.push(m),
                            Some(Some(Err(e))) => {
                                return Stop::Nats(anyhow::anyhow!(
                                    "following stream {stream}: {e}"
                                ))
                            }
                            Some(None) => {
                                return Stop::Nats(anyhow::anyhow!(
                                    "the consumer of stream {stream} ended"
                                ))
                            }
                            None => break,
                        }
                    }
                    if batch.len() >= self.batch || self.linger.is_zero() || !lingering {
                        break;
                    }
                    match tokio::time::timeout_at(linger_until, messages.next()).await {
                        Ok(Some(Ok(m))) => batch.push(m),
                        Ok(Some(Err(e))) => {
                            return Stop::Nats(anyhow::anyhow!("following stream {stream}: {e}"))
                        }
                        Ok(None) => {
                            return Stop::Nats(anyhow::anyhow!(
                                "the consumer of stream {stream} ended"
                            ))
                        }
                        Err(_) => break,
                    }
                }
                let behind = batch.behind();
                let span = tracing::info_span!(
                    "projection_batch",
                    projection = P::NAME,
                    size = batch.len(),
                    from = cp + 1
                );
                // Commit, and meanwhile take what arrives into the next batch: the fetch of the
                // next events overlaps this batch's transaction.
                let committed = {
                    let commit = self
                        .commit_retrying(cp, &mut batch, lease, &mut checked)
                        .instrument(span.clone());
                    tokio::pin!(commit);
                    loop {
                        tokio::select! {
                            biased;
                            r = &mut commit => break r,
                            m = messages.next(), if next.len() < self.batch => match m {
                                Some(Ok(m)) => next.push(m),
                                Some(Err(e)) => {
                                    return Stop::Nats(anyhow::anyhow!("following stream {stream}: {e}"))
                                }
                                None => {
                                    return Stop::Nats(anyhow::anyhow!(
                                        "the consumer of stream {stream} ended"
                                    ))
                                }
                            },
                        }
                    }
                };
                match committed {
                    Ok(Some(to)) => cp = to,
                    Ok(None) => {
                        tracing::info!(parent: &span, "the checkpoint moved under this owner (a rebuild, or another owner); starting again from it");
                        continue 'from_checkpoint;
                    }
                    Err(stop) => return stop,
                }
                batch.clear();
                self.handle
                    .inner
                    .lag
                    .store(behind as i64, Ordering::Relaxed);
                if checked.elapsed() >= LEASE_CHECK {
                    if let Err(e) = check(lease, &mut checked, false).await {
                        return Stop::LeaseLost(e);
                    }
                }
            }
        }
    }

    /// Commits `batch` on top of `cp`, retrying while PostgreSQL is unavailable (as long as the
    /// lease holds): `Some(new checkpoint)`, or `None` when the checkpoint moved under this owner.
    async fn commit_retrying(
        &self,
        cp: u64,
        batch: &mut Batch<P::Event>,
        lease: &mut PgConnection,
        checked: &mut tokio::time::Instant,
    ) -> Result<Option<u64>, Stop> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.commit(cp, &mut *batch, &mut *lease).await {
                Ok(Outcome::Committed(to)) => return Ok(Some(to)),
                Ok(Outcome::Moved) => return Ok(None),
                Ok(Outcome::Retry(e)) | Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL unavailable; the batch will be retried");
                    if let Err(e) = check(lease, checked, true).await {
                        return Err(Stop::LeaseLost(e));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// Checks that the lease connection is still there (so the lock is still held), at most once per
/// [`LEASE_CHECK`] unless `now`.
async fn check(
    lease: &mut PgConnection,
    checked: &mut tokio::time::Instant,
    now: bool,
) -> Result<(), sqlx::Error> {
    if !now && checked.elapsed() < LEASE_CHECK {
        return Ok(());
    }
    lease.ping().await?;
    *checked = tokio::time::Instant::now();
    Ok(())
}
