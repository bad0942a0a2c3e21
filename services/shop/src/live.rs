//! Live subjects for dashboards (additions, `schemas::live`): `shop.live.checkouts` (each checkout as
//! it is recorded), `shop.live.dht-stats` (keys per shard, at most twice a second while carts change
//! and once after the last change) and the query `shop.query.checkouts` (the latest checkouts this
//! process has seen since it started, newest first, at most [`KEEP`]).
//!
//! A task follows stream `SHOP` with an ordered consumer of its own from the stream's end. Every
//! process publishes (several processes publish the same checkout; each message is complete in
//! itself, so a dashboard keys them by `order_id`).

use runtime::follow::Follower;
use runtime::service::Endpoints;
use runtime::ServiceError;
use schemas::live::{CheckoutsQuery, LiveCheckout, RecentCheckouts};
use schemas::shop::ShopEvent;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Checkouts kept for `shop.query.checkouts`.
pub const KEEP: usize = 200;
/// Subject of each checkout.
pub const CHECKOUTS: &str = "shop.live.checkouts";
/// Subject of the keys-per-shard histogram.
pub const DHT_STATS: &str = "shop.live.dht-stats";
/// Shortest time between two `shop.live.dht-stats` messages.
const STATS_EVERY: Duration = Duration::from_millis(500);
/// The stats query counts every key (a scan of `shop.dht`, which grows with the carts): the next
/// message waits at least this many times as long as the last query took, so that the publisher
/// of each process keeps PostgreSQL busy for at most 1/20 of the time. Measured here (`EXPLAIN
/// ANALYZE`): 2-3 ms at 25,000 keys, 42-47 ms at 1,000,000, where twice a second from every
/// process would cost PostgreSQL 9 % of a core per process; the cost grows with the keys.
const STATS_COST_FACTOR: u32 = 20;

/// How long after the last stats message the next may go, given how long its query took.
fn stats_interval(query_took: Duration) -> Duration {
    STATS_EVERY.max(query_took.saturating_mul(STATS_COST_FACTOR))
}

type Recent = Arc<Mutex<VecDeque<LiveCheckout>>>;

/// Adds `shop.query.checkouts` to the shop's endpoints and starts the live publisher.
///
/// # Errors
/// The endpoint could not be added.
pub async fn start(
    ctx: &runtime::Ctx,
    ep: &Endpoints,
    dht: runtime::projector::ProjectionHandle,
    shards: u32,
) -> anyhow::Result<()> {
    let recent: Recent = Arc::new(Mutex::new(VecDeque::new()));
    ep.with_state(recent.clone())
        .on("shop.query.checkouts", checkouts)
        .await?;
    let publisher = Publisher {
        js: async_nats::jetstream::new(ctx.client.clone()),
        client: ctx.client.clone(),
        pool: ctx.pool.clone(),
        dht,
        shards,
        recent,
    };
    tokio::spawn(publisher.run());
    Ok(())
}

/// `shop.query.checkouts`.
async fn checkouts(
    recent: Recent,
    q: CheckoutsQuery,
    _: runtime::service::Request,
) -> Result<RecentCheckouts, ServiceError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=KEEP as u32).contains(&limit) {
        return Err(ServiceError::invalid(format!(
            "limit must be 1..={KEEP}, got {limit}"
        )));
    }
    let checkouts = recent
        .lock()
        .map(|g| g.iter().take(limit as usize).cloned().collect())
        .unwrap_or_default();
    Ok(RecentCheckouts { checkouts })
}

struct Publisher {
    js: async_nats::jetstream::Context,
    client: async_nats::Client,
    pool: sqlx::PgPool,
    dht: runtime::projector::ProjectionHandle,
    shards: u32,
    recent: Recent,
}

impl Publisher {
    /// Follows the stream from its end, publishing every checkout at once and the DHT stats at
    /// most every [`STATS_EVERY`] while events come.
    async fn run(self) {
        let mut follower = Follower::new(&self.js, crate::STREAM, "shop live publisher");
        // The newest sequence a stats message must include, when one is due.
        let mut stats_due: Option<u64> = None;
        let mut last_stats = tokio::time::Instant::now() - STATS_EVERY;
        let mut every = STATS_EVERY;
        loop {
            let wait = match stats_due {
                Some(_) => (last_stats + every).max(tokio::time::Instant::now()),
                None => tokio::time::Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                chunk = follower.next(256) => {
                    for m in chunk {
                        stats_due = Some(m.seq);
                        self.checkout(m.seq, &m.payload).await;
                    }
                }
                () = tokio::time::sleep_until(wait) => {
                    if let Some(seq) = stats_due.take() {
                        last_stats = tokio::time::Instant::now();
                        every = stats_interval(self.stats(seq).await);
                    }
                }
            }
        }
    }

    async fn checkout(&self, seq: u64, payload: &[u8]) {
        let Ok((meta, ShopEvent::CartCheckedOut(c))) =
            runtime::store::decode_event::<ShopEvent>(payload)
        else {
            return;
        };
        let live = LiveCheckout {
            order_id: c.order_id,
            customer_id: c.customer_id,
            items: c.items,
            total: c.total,
            occurred_at: meta.occurred_at,
            seq,
        };
        if let Ok(body) = serde_json::to_vec(&live) {
            if let Err(e) = self.client.publish(CHECKOUTS, body.into()).await {
                tracing::debug!(error = %e, "could not publish a checkout");
            }
        }
        if let Ok(mut g) = self.recent.lock() {
            g.push_front(live);
            g.truncate(KEEP);
        }
    }

    /// Publishes keys per shard once the read model holds `seq`; returns how long the query took.
    async fn stats(&self, seq: u64) -> Duration {
        if self
            .dht
            .wait_for(Some(seq), Duration::from_secs(5))
            .await
            .is_err()
        {
            tracing::debug!(
                seq,
                "dht stats: the projection is behind; publishing what it has"
            );
        }
        let started = tokio::time::Instant::now();
        let stats = crate::queries::dht_stats(&self.pool, self.shards).await;
        let took = started.elapsed();
        match stats {
            Ok(s) => {
                if let Ok(body) = serde_json::to_vec(&s) {
                    let _ = self.client.publish(DHT_STATS, body.into()).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "dht stats query failed"),
        }
        took
    }
}

#[cfg(test)]
mod tests {
    use super::{stats_interval, STATS_EVERY};
    use std::time::Duration;

    #[test]
    fn stats_go_twice_a_second_while_their_query_is_cheap_and_back_off_as_it_grows() {
        assert_eq!(stats_interval(Duration::ZERO), STATS_EVERY);
        assert_eq!(stats_interval(Duration::from_millis(5)), STATS_EVERY);
        assert_eq!(stats_interval(Duration::from_millis(25)), STATS_EVERY);
        assert_eq!(
            stats_interval(Duration::from_millis(200)),
            Duration::from_secs(4)
        );
        assert_eq!(stats_interval(Duration::MAX), Duration::MAX, "no overflow");
    }
}
