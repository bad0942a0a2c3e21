//! The live publisher: follows the `CLUSTER` stream with an ordered consumer of its own and, for each
//! event in stream order, publishes the one delta it makes to its manager's tree on
//! `cluster.tree.<manager_id>`. The deltas are computed by the pure domain from the manager's state
//! before the event, so they are gap-free per manager and each applies to the previous version.
//!
//! Following the stream (rather than publishing from the command handler) means a delta is not lost
//! when the process that appended dies before publishing: whoever follows the stream publishes it.
//! How far it has published is saved every half second in `cluster.live_checkpoint`, so a restart
//! resumes there (a dashboard may see a few deltas again; it ignores versions it already has).
//!
//! With several `switchyard run` processes only one publishes: the holder of a lease, the key
//! `publisher` in the KV bucket `CLUSTER_LIVE`. The holder renews it every second with a
//! compare-and-set on its revision; a process that sees the revision unchanged for 3 s of its own
//! time takes it over with a compare-and-set on that revision (no clocks are compared). A process that
//! takes the lease over starts from the saved checkpoint, so the deltas of a leader that died are
//! published by the next one.

use crate::domain::{self, Event, Manager};
use crate::handlers::{manager_subject, tree_subject};
use async_nats::jetstream::kv;
use runtime::follow::Follower;
use runtime::store::{decode_event, EventStore};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;
use tracing::Instrument;

/// Longest backlog a restart replays; beyond it the publisher starts at the stream's end.
const MAX_REPLAY: u64 = 10_000;
/// Managers kept in memory before the cache is cleared (they reload from the stream on demand).
const MAX_CACHED: usize = 10_000;
const CHECKPOINT: &str = "tree";

/// The lease bucket and key.
const LEASE_BUCKET: &str = "CLUSTER_LIVE";
const LEASE_KEY: &str = "publisher";
/// A lease not renewed for this long expires.
const LEASE_TTL: Duration = Duration::from_secs(3);
const LEASE_RENEW: Duration = Duration::from_secs(1);

/// Starts the publisher: takes the lease now if it is free, and keeps trying in the background.
///
/// # Errors
/// JetStream or PostgreSQL unreachable at start.
pub async fn spawn(
    client: async_nats::Client,
    store: EventStore,
    pool: PgPool,
    instance: &str,
) -> anyhow::Result<()> {
    let js = store.jetstream();
    let kv = runtime::nats::ensure_kv(
        js,
        async_nats::jetstream::kv::Config {
            bucket: LEASE_BUCKET.into(),
            description: "which process publishes cluster.tree deltas".into(),
            history: 1,
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: store.replicas().max(1),
            ..Default::default()
        },
    )
    .await?;
    let mut lease = Lease {
        kv,
        me: instance.to_string(),
        revision: None,
        seen: None,
        task: None,
        client,
        store,
        pool,
    };
    lease.step().await;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(LEASE_RENEW).await;
            lease.step().await;
        }
    });
    Ok(())
}

/// This process's claim on publishing.
struct Lease {
    kv: kv::Store,
    me: String,
    /// The revision of our entry while we hold the lease.
    revision: Option<u64>,
    /// Another holder's revision and when we first saw it.
    seen: Option<(u64, tokio::time::Instant)>,
    task: Option<tokio::task::JoinHandle<()>>,
    client: async_nats::Client,
    store: EventStore,
    pool: PgPool,
}

impl Lease {
    /// Renews or takes the lease, and starts or stops publishing to match.
    async fn step(&mut self) {
        let held = match self.revision {
            Some(rev) => self
                .kv
                .update(LEASE_KEY, self.me.clone().into(), rev)
                .await
                .ok(),
            None => self.claim().await,
        };
        self.revision = held;
        let running = self.task.as_ref().is_some_and(|t| !t.is_finished());
        match (held.is_some(), running) {
            (true, false) => match self.start().await {
                Ok(task) => {
                    tracing::info!(instance = %self.me, "publishing cluster tree deltas");
                    self.task = Some(task);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the live tree publisher; retrying")
                }
            },
            (false, true) => {
                tracing::info!(instance = %self.me, "lost the live tree lease; another process publishes");
                if let Some(t) = self.task.take() {
                    t.abort();
                }
            }
            _ => {}
        }
    }

    /// Takes the lease when it is free, ours, or not renewed for [`LEASE_TTL`].
    async fn claim(&mut self) -> Option<u64> {
        let entry = match self.kv.entry(LEASE_KEY).await {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the live tree lease");
                return None;
            }
        };
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return self.kv.create(LEASE_KEY, self.me.clone().into()).await.ok();
        };
        let now = tokio::time::Instant::now();
        let mine = entry.value.as_ref() == self.me.as_bytes();
        let stale = match self.seen {
            Some((rev, since)) if rev == entry.revision => now.duration_since(since) >= LEASE_TTL,
            _ => {
                self.seen = Some((entry.revision, now));
                false
            }
        };
        if mine || stale {
            self.seen = None;
            return self
                .kv
                .update(LEASE_KEY, self.me.clone().into(), entry.revision)
                .await
                .ok();
        }
        None
    }

    async fn start(&self) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let saved: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM cluster.live_checkpoint WHERE name = $1")
                .bind(CHECKPOINT)
                .fetch_optional(&self.pool)
                .await?;
        let last = self.store.last_seq().await?;
        let next = match saved {
            Some(cp) if last.saturating_sub(cp.max(0) as u64) <= MAX_REPLAY => cp.max(0) as u64 + 1,
            _ => last + 1,
        };
        let mut publisher = Publisher {
            client: self.client.clone(),
            store: self.store.clone(),
            pool: self.pool.clone(),
            next,
            saved: u64::MAX,
            cache: HashMap::new(),
        };
        publisher.save().await;
        Ok(tokio::spawn(publisher.run()))
    }
}

struct Publisher {
    client: async_nats::Client,
    store: EventStore,
    pool: PgPool,
    /// The next stream sequence to publish.
    next: u64,
    /// What the checkpoint row says.
    saved: u64,
    cache: HashMap<String, Manager>,
}

impl Publisher {
    async fn run(mut self) {
        let mut follower = Follower::new(
            self.store.jetstream(),
            self.store.name(),
            "cluster live tree publisher",
        )
        .from(self.next.max(1));
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                chunk = follower.next(256) => {
                    for m in chunk {
                        let span = tracing::debug_span!("tree_delta", seq = m.seq);
                        self.publish(m.seq, &m.payload).instrument(span).await;
                        self.next = m.seq + 1;
                    }
                }
                _ = tick.tick() => self.save().await,
            }
        }
    }

    async fn save(&mut self) {
        let done = self.next.saturating_sub(1);
        if done == self.saved {
            return;
        }
        let r = sqlx::query(
            "INSERT INTO cluster.live_checkpoint (name, seq) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET seq = GREATEST(cluster.live_checkpoint.seq, EXCLUDED.seq)",
        )
        .bind(CHECKPOINT)
        .bind(done as i64)
        .execute(&self.pool)
        .await;
        match r {
            Ok(_) => self.saved = done,
            Err(e) => tracing::debug!(error = %e, "could not save the live checkpoint"),
        }
    }

    async fn state_before(&mut self, manager_id: &str, seq: u64) -> Option<&mut Manager> {
        if !self.cache.contains_key(manager_id) {
            if self.cache.len() >= MAX_CACHED {
                self.cache.clear();
            }
            let (events, _) = match self.store.load::<Event>(&manager_subject(manager_id)).await {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::warn!(manager_id, error = %e.message, "cannot load the manager; its delta is skipped");
                    return None;
                }
            };
            let mut m = Manager::default();
            for e in events.iter().filter(|e| e.seq < seq) {
                m.evolve(&e.event);
            }
            self.cache.insert(manager_id.to_string(), m);
        }
        self.cache.get_mut(manager_id)
    }

    async fn publish(&mut self, seq: u64, payload: &[u8]) {
        let event = match decode_event::<Event>(payload) {
            Ok((_, e)) => e,
            Err(reason) => {
                tracing::warn!(seq, reason = %reason, "skipping an event the live publisher cannot read");
                return;
            }
        };
        let manager_id = event.manager_id().to_string();
        let Some(state) = self.state_before(&manager_id, seq).await else {
            return;
        };
        let delta = domain::delta(state, &event);
        state.evolve(&event);
        let body = match serde_json::to_vec(&delta) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "delta does not serialise");
                return;
            }
        };
        if let Err(e) = self
            .client
            .publish(tree_subject(&manager_id), body.into())
            .await
        {
            tracing::warn!(error = %e, "could not publish a tree delta");
        }
    }
}
