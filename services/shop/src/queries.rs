//! The shop's queries on the DHT read model (after waiting for `min_seq`).

use crate::{domain, projection, Shop};
use runtime::service::Request;
use runtime::ServiceError;
use schemas::shop as w;
use std::sync::Arc;

/// Keys per shard from the read model.
///
/// # Errors
/// PostgreSQL failed.
pub async fn dht_stats(pool: &sqlx::PgPool, shards: u32) -> Result<w::DhtStatsReply, sqlx::Error> {
    let rows: Vec<(i32, i64)> =
        sqlx::query_as("SELECT shard, count(*) FROM shop.dht GROUP BY shard")
            .fetch_all(pool)
            .await?;
    let mut keys_per_shard = vec![0u64; shards as usize];
    for (shard, n) in rows {
        if let Some(slot) = keys_per_shard.get_mut(shard as usize) {
            *slot = n as u64;
        }
    }
    Ok(w::DhtStatsReply {
        shards,
        keys_per_shard,
    })
}

/// `shop.query.cart`: an unknown customer has an empty cart.
pub(crate) async fn cart(
    s: Arc<Shop>,
    q: w::CartQuery,
    _: Request,
) -> Result<w::Cart, ServiceError> {
    schemas::check_id("customer_id", &q.customer_id).map_err(ServiceError::invalid)?;
    s.dht.wait_for(q.min_seq, s.wait).await?;
    Ok(projection::read_cart(&s.pool, &q.customer_id)
        .await?
        .unwrap_or(w::Cart {
            customer_id: q.customer_id,
            items: vec![],
            seq: 0,
        }))
}

/// `shop.query.dht-get`.
pub(crate) async fn dht_get(
    s: Arc<Shop>,
    q: w::DhtGet,
    _: Request,
) -> Result<w::DhtGetReply, ServiceError> {
    schemas::check_id("key", &q.key).map_err(ServiceError::invalid)?;
    s.dht.wait_for(q.min_seq, s.wait).await?;
    let hash_key = domain::hash_key(&q.key);
    let value = projection::read_cart(&s.pool, &q.key).await?;
    Ok(w::DhtGetReply {
        shard: domain::shard_of(hash_key, s.shards),
        key: q.key,
        hash_key,
        value,
    })
}

/// `shop.query.dht-stats`.
pub(crate) async fn dht_stats_query(
    s: Arc<Shop>,
    q: w::DhtStats,
    _: Request,
) -> Result<w::DhtStatsReply, ServiceError> {
    s.dht.wait_for(q.min_seq, s.wait).await?;
    Ok(dht_stats(&s.pool, s.shards).await?)
}

/// `shop.query.shard-carts` (an addition): the carts one shard holds, in customer id order.
pub(crate) async fn shard_carts(
    s: Arc<Shop>,
    q: w::ShardCarts,
    _: Request,
) -> Result<w::ShardCartsReply, ServiceError> {
    if q.shard >= s.shards {
        let shards = s.shards;
        return Err(ServiceError::invalid(format!(
            "`shard` must be 0..{shards}, got {}",
            q.shard
        )));
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ServiceError::invalid(format!(
            "`limit` must be 1..=10000, got {limit}"
        )));
    }
    s.dht.wait_for(q.min_seq, s.wait).await?;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT key, hash_key, seq FROM shop.dht WHERE shard = $1 ORDER BY key COLLATE \"C\" LIMIT $2",
    )
    .bind(q.shard as i32)
    .bind(i64::from(limit))
    .fetch_all(&s.pool)
    .await?;
    let carts = rows
        .into_iter()
        .map(|(key, hash_key, seq)| w::ShardCart {
            customer_id: runtime::sqltext::unesc(key),
            hash_key: hash_key as u64,
            seq: seq as u64,
        })
        .collect();
    Ok(w::ShardCartsReply {
        shard: q.shard,
        carts,
    })
}
