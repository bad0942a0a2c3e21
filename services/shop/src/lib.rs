//! Shopping carts on a sharded distributed hash table (contract section 3).
//!
//! - [`domain`]: the cart aggregate, pure `decide` / `apply`, `hash_key` and the shard function.
//! - [`wire`]: conversions to the wire types in `schemas::shop`.
//! - [`projection`]: the DHT read model in PostgreSQL schema `shop`.
//! - this module: the NATS endpoints (micro service `shop`) and queries.
//!
//! Events go to stream `SHOP` on `shop.events.cart.<customer token>` (see `schemas::encode_token`).

pub mod domain;
pub mod live;
pub mod projection;
pub mod wire;

use domain::{Cart, Command};
use projection::DhtProjection;
use runtime::projector::ProjectionHandle;
use runtime::service::{Endpoints, Request};
use runtime::store::Repository;
use runtime::{Ctx, ServiceError};
use schemas::shop as w;
use std::sync::Arc;

/// Stream of the shop context.
pub const STREAM: &str = "SHOP";
/// Subject prefix of cart events.
pub const EVENTS: &str = "shop.events.cart";

/// The event subject of a customer's cart.
#[must_use]
pub fn cart_subject(customer_id: &str) -> String {
    format!("{EVENTS}.{}", schemas::encode_token(customer_id))
}

struct Shop {
    carts: Repository<Cart>,
    dht: ProjectionHandle,
    pool: sqlx::PgPool,
    shards: u32,
    wait: std::time::Duration,
}

impl Shop {
    /// Runs a command on its cart; `reply` builds the answer from the state after the event.
    async fn command<R, F>(&self, req: &Request, cmd: Command, reply: F) -> Result<R, ServiceError>
    where
        R: serde::Serialize + serde::de::DeserializeOwned + Send,
        F: Fn(&str, &Cart, &domain::Event, u64) -> R + Send + Sync,
    {
        let order_id = uuid::Uuid::now_v7();
        let subject = cart_subject(cmd.customer_id());
        let customer = cmd.customer_id().to_string();
        Ok(self
            .carts
            .execute(
                &subject,
                req.msg_id(),
                |cart, now| domain::decide(cart, &cmd, now, order_id),
                |cart, event, seq| reply(&customer, cart, event, seq),
            )
            .await?)
    }

    async fn cart_reply(&self, req: &Request, cmd: Command) -> Result<w::Cart, ServiceError> {
        self.command(req, cmd, |customer, cart, _, seq| {
            wire::cart(customer, cart, seq)
        })
        .await
    }

    async fn read_cart(&self, key: &str) -> Result<Option<w::Cart>, ServiceError> {
        Ok(projection::read_cart(&self.pool, key).await?)
    }
}

/// Starts the shop: stream, migrations, the DHT projection, the endpoints.
///
/// # Errors
/// A dependency is unreachable.
pub async fn start(ctx: &Ctx) -> anyhow::Result<()> {
    let store = ctx.event_store("shop", STREAM).await?;
    runtime::db::migrate(&ctx.pool, "shop", sqlx::migrate!("./migrations")).await?;
    let shards = ctx.config.shop_shards;
    reshard(&ctx.pool, shards).await?;
    let dht = runtime::projector::spawn(
        store.clone(),
        ctx.pool.clone(),
        DhtProjection { shards },
        ctx.config.batching(),
    )
    .await?;
    ctx.health.projection("shop", dht.clone());
    let shop = Arc::new(Shop {
        carts: ctx.repository::<Cart>(&store, "shop"),
        dht,
        pool: ctx.pool.clone(),
        shards,
        wait: ctx.config.min_seq_wait,
    });
    let ep = Endpoints::start(&ctx.client, "shop", "shopping carts on a sharded DHT").await?;

    let s = shop.clone();
    ep.add("shop.cmd.add-item", move |req| {
        let s = s.clone();
        async move {
            let cmd = Command::add_item(&req.decode::<w::AddItem>()?)?;
            s.cart_reply(&req, cmd).await
        }
    })
    .await?;
    let s = shop.clone();
    ep.add("shop.cmd.update-item", move |req| {
        let s = s.clone();
        async move {
            let cmd = Command::update_item(&req.decode::<w::UpdateItem>()?)?;
            s.cart_reply(&req, cmd).await
        }
    })
    .await?;
    let s = shop.clone();
    ep.add("shop.cmd.remove-item", move |req| {
        let s = s.clone();
        async move {
            let cmd = Command::remove_item(&req.decode::<w::RemoveItem>()?)?;
            s.cart_reply(&req, cmd).await
        }
    })
    .await?;
    let s = shop.clone();
    ep.add("shop.cmd.checkout", move |req| {
        let s = s.clone();
        async move {
            let cmd = Command::checkout(&req.decode::<w::Checkout>()?)?;
            s.command(&req, cmd, |_, _, event, seq| wire::checkout(event, seq))
                .await?
                .ok_or_else(|| ServiceError::internal("checkout appended another event"))
        }
    })
    .await?;
    let s = shop.clone();
    ep.add("shop.query.cart", move |req| {
        let s = s.clone();
        async move {
            let q: w::CartQuery = req.decode()?;
            schemas::check_id("customer_id", &q.customer_id).map_err(ServiceError::invalid)?;
            s.dht.wait_for(q.min_seq, s.wait).await?;
            Ok(s.read_cart(&q.customer_id).await?.unwrap_or(w::Cart {
                customer_id: q.customer_id,
                items: vec![],
                seq: 0,
            }))
        }
    })
    .await?;
    let s = shop.clone();
    ep.add("shop.query.dht-get", move |req| {
        let s = s.clone();
        async move {
            let q: w::DhtGet = req.decode()?;
            schemas::check_id("key", &q.key).map_err(ServiceError::invalid)?;
            s.dht.wait_for(q.min_seq, s.wait).await?;
            let hash_key = domain::hash_key(&q.key);
            let value = s.read_cart(&q.key).await?;
            Ok(w::DhtGetReply {
                shard: domain::shard_of(hash_key, s.shards),
                key: q.key,
                hash_key,
                value,
            })
        }
    })
    .await?;
    let s = shop.clone();
    ep.add("shop.query.dht-stats", move |req| {
        let s = s.clone();
        async move {
            let q: w::DhtStats = req.decode()?;
            s.dht.wait_for(q.min_seq, s.wait).await?;
            let rows: Vec<(i32, i64)> =
                sqlx::query_as("SELECT shard, count(*) FROM shop.dht GROUP BY shard")
                    .fetch_all(&s.pool)
                    .await?;
            let mut keys_per_shard = vec![0u64; s.shards as usize];
            for (shard, n) in rows {
                if let Some(slot) = keys_per_shard.get_mut(shard as usize) {
                    *slot = n as u64;
                }
            }
            Ok(w::DhtStatsReply {
                shards: s.shards,
                keys_per_shard,
            })
        }
    })
    .await?;
    live::start(ctx, &ep, shop.dht.clone(), shards).await?;
    ctx.health.started("shop");
    Ok(())
}

/// Recomputes every key's shard when the configured shard count changed since the last run.
async fn reshard(pool: &sqlx::PgPool, shards: u32) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let stored: Option<i32> = sqlx::query_scalar("SELECT shards FROM shop.dht_meta FOR UPDATE")
        .fetch_optional(&mut *tx)
        .await?;
    if stored != Some(shards as i32) {
        tracing::info!(from = ?stored, to = shards, "re-sharding the DHT");
        sqlx::query("UPDATE shop.dht SET shard = (hash_key % $1)::int")
            .bind(i64::from(shards))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO shop.dht_meta (id, shards) VALUES (TRUE, $1) ON CONFLICT (id) DO UPDATE SET shards = EXCLUDED.shards")
            .bind(shards as i32)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// `switchyard projections rebuild <name>` for the shop's projections. Returns false for another name.
///
/// # Errors
/// A dependency is unreachable.
pub async fn rebuild(ctx: &Ctx, name: &str) -> anyhow::Result<bool> {
    use runtime::projector::Projection as _;
    if name != DhtProjection::NAME {
        return Ok(false);
    }
    let store = ctx.event_store("shop", STREAM).await?;
    runtime::db::migrate(&ctx.pool, "shop", sqlx::migrate!("./migrations")).await?;
    runtime::projector::rebuild(
        &store,
        &ctx.pool,
        &DhtProjection {
            shards: ctx.config.shop_shards,
        },
    )
    .await?;
    Ok(true)
}
