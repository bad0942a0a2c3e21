//! Projections: read models in PostgreSQL fed from a context's stream, exactly once.
//!
//! **One owner per projection.** Of all the processes that run a projection, one applies it: the
//! one holding the projection's lease, a PostgreSQL session-level advisory lock
//! (`pg_try_advisory_lock(hashtextextended('switchyard.projection.<name>', 0))`) on a connection
//! of its own. The others are standbys: every [`LEASE_POLL`] they *try* the lock (a call that
//! never waits) and read the checkpoint, so `min_seq` and readiness work in every process. Nobody
//! ever waits on a lock, and no lock is held by a statement across a wait on NATS. When the
//! owner's process dies its connection closes and PostgreSQL drops the lock at once, so a standby
//! takes over within one poll; a connection that is cut rather than closed is given up by
//! PostgreSQL after the TCP keepalive and user-timeout settings of the lease connection (about 5 s).
//!
//! **The owner** reads the checkpoint and follows the stream from the next sequence with an ordered
//! consumer of its own (no acks: the checkpoint in PostgreSQL is the only position that counts, so a
//! new owner starts exactly where the last commit left off, without waiting for redeliveries).
//! Messages stream in while a batch commits. A batch (up to `batch` events; one that is not full
//! waits up to `linger` for more) is applied in one transaction that first moves the checkpoint
//! with a compare-and-set (`UPDATE .. SET seq = <last> WHERE seq = <the checkpoint it read>`):
//!
//! - events the checkpoint already covers are skipped;
//! - when the checkpoint is no longer what the owner read (another owner after a partition, or a
//!   rebuild), the transaction changes nothing and rolls back, and the owner starts again from
//!   the checkpoint as it is; so two processes that both believe they own a projection still never
//!   apply an event twice or skip one;
//! - an event that does not decode, or whose SQL fails for a reason other than the connection, is
//!   parked in `runtime.dead_letters` with the reason and counted, and the projection moves on;
//! - a lost connection rolls back and retries the same batch until PostgreSQL is back.
//!
//! [`ProjectionHandle::wait_for`] implements the contract's `min_seq`; [`ProjectionHandle::drain`]
//! waits for everything the stream holds now (for tests, instead of sleeping).
//!
//! The pieces: this module (the [`Projection`] trait, [`spawn`], [`rebuild`], the handle),
//! [`runner`] (the lease, the consumer, the batches) and [`batch`] (one batch's commit, and
//! [`batch::partition`], the pure split of a batch into what the checkpoint covers and what to apply).

pub mod batch;
mod runner;

use crate::error::ServiceError;
use crate::store::{EventStore, Stored};
use runner::Runner;
use serde::de::DeserializeOwned;
use sqlx::{PgConnection, PgPool};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often a standby tries to take a projection's lease (and reads its checkpoint).
pub const LEASE_POLL: Duration = Duration::from_millis(200);
/// How often the owner checks that its lease connection is still there.
pub const LEASE_CHECK: Duration = Duration::from_secs(1);

/// A read model fed from a context's events.
pub trait Projection: Send + Sync + 'static {
    /// The context's event type.
    type Event: DeserializeOwned + Send + Sync + 'static;
    /// Unique name, used for the lease, the checkpoint and health.
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

/// Shared view of a running projection: checkpoint, lag, parked count, ownership.
#[derive(Clone)]
pub struct ProjectionHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    name: &'static str,
    pool: PgPool,
    /// The stream the projection follows (for [`ProjectionHandle::drain`]).
    store: EventStore,
    checkpoint: watch::Sender<u64>,
    start_seq: u64,
    lag: AtomicI64,
    parked: AtomicI64,
    owner: AtomicBool,
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

    /// Events in the stream after the checkpoint (0 when caught up): as the owner last saw it, or
    /// as a standby last measured it.
    #[must_use]
    pub fn lag(&self) -> i64 {
        self.inner.lag.load(Ordering::Relaxed)
    }

    /// Events parked in the dead-letter table (those of earlier runs counted at start).
    #[must_use]
    pub fn parked(&self) -> i64 {
        self.inner.parked.load(Ordering::Relaxed)
    }

    /// Whether this process holds the projection's lease (applies its events) now.
    #[must_use]
    pub fn is_owner(&self) -> bool {
        self.inner.owner.load(Ordering::Relaxed)
    }

    /// Why the last event was parked: its sequence and the cause.
    #[must_use]
    pub fn last_parked(&self) -> Option<String> {
        self.inner.last_parked.lock().ok().and_then(|g| g.clone())
    }

    /// Records events just parked (count and the last one's sequence and cause).
    pub(crate) fn note_parked(&self, count: usize, last: Option<String>) {
        self.inner.parked.fetch_add(count as i64, Ordering::Relaxed);
        if let Some(last) = last {
            if let Ok(mut g) = self.inner.last_parked.lock() {
                *g = Some(last);
            }
        }
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

    /// Sets this process's copy of the checkpoint (it may go back: a rebuild).
    fn set_checkpoint(&self, seq: u64) {
        self.inner.checkpoint.send_if_modified(|c| {
            if *c != seq {
                *c = seq;
                true
            } else {
                false
            }
        });
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

    /// Waits until the read model has applied every event the stream held when called (committed
    /// by this or any other process), and returns the checkpoint then. For tests and tools that
    /// must see a projection caught up, instead of sleeping.
    ///
    /// # Errors
    /// `unavailable` when the stream's last sequence cannot be read, or after `timeout` (naming
    /// where the projection is).
    pub async fn drain(&self, timeout: Duration) -> Result<u64, ServiceError> {
        let last = self.inner.store.last_seq().await.map_err(|e| {
            ServiceError::unavailable(format!(
                "the {} read model cannot be drained: {e:#}",
                self.inner.name
            ))
        })?;
        self.wait_for(Some(last), timeout).await?;
        Ok(self.checkpoint())
    }
}

/// The durable consumer earlier versions shared between processes (`proj_<name>`); deleted by a
/// rebuild and by an owner when it takes the lease, since nothing reads it any more.
fn legacy_consumer_name(name: &str) -> String {
    format!("proj_{name}")
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
    /// Whether a batch's commit waits for its WAL to be flushed (`synchronous_commit`; on by
    /// default). Off is safe for a read model: it and its checkpoint are lost or kept together,
    /// and the stream holds what a lost batch applied.
    pub sync_commit: bool,
}

impl Default for Batching {
    /// 2,000 events, a 5 ms linger, commits that wait for the WAL flush.
    fn default() -> Self {
        Self {
            max: 2000,
            linger: Duration::from_millis(5),
            sync_commit: true,
        }
    }
}

impl Batching {
    /// At most `max` events a batch, no waiting.
    #[must_use]
    pub fn max(max: usize) -> Self {
        Self {
            max,
            linger: Duration::ZERO,
            ..Self::default()
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
            store: store.clone(),
            checkpoint: tx,
            start_seq,
            lag: AtomicI64::new(start_seq as i64),
            parked: AtomicI64::new(0),
            owner: AtomicBool::new(false),
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
    let runner = Runner::new(store, pool, p, batching, handle.clone());
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
    // Setting the checkpoint back locks its row for this transaction: an owner's batch commit
    // (whose compare-and-set expects the old checkpoint) then changes nothing and starts again.
    sqlx::query("INSERT INTO runtime.checkpoints (projection, seq) VALUES ($1, 0) ON CONFLICT (projection) DO UPDATE SET seq = 0, updated_at = now()")
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
    if let Err(e) = stream.delete_consumer(&legacy_consumer_name(P::NAME)).await {
        tracing::debug!(error = %e, "no legacy consumer to delete");
    }
    Ok(())
}
