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
//!
//! The pieces: this module (the [`Projection`] trait, [`spawn`], [`rebuild`], the handle),
//! [`runner`] (the consumer and the round: lock, pull, prefetch, retry), [`batch`] (one batch's
//! commit, and [`batch::partition`], the pure split of a batch into covered / to apply / later).

pub mod batch;
mod runner;

use crate::error::ServiceError;
use crate::store::{EventStore, Stored};
use runner::Runner;
use serde::de::DeserializeOwned;
use sqlx::{PgConnection, PgPool};
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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

    /// Events parked in the dead-letter table by this process.
    #[must_use]
    pub fn parked(&self) -> i64 {
        self.inner.parked.load(Ordering::Relaxed)
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

fn consumer_name(name: &str) -> String {
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
        }),
    };
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
        .map_err(anyhow::Error::from)?;
    match stream.delete_consumer(&consumer_name(P::NAME)).await {
        Ok(_) => {}
        Err(e) => tracing::info!(error = %e, "no consumer to delete"),
    }
    Ok(())
}
