//! Shopping carts on a sharded distributed hash table (contract section 3).
//!
//! - [`domain`]: the cart aggregate, pure `decide` / `apply`, `hash_key` and the shard function.
//! - [`wire`]: conversions to the wire types in `schemas::shop`.
//! - [`projection`]: the DHT read model in PostgreSQL schema `shop`.
//! - `handlers` (commands) and [`queries`]: what the endpoints of micro service `shop` run.
//! - [`live`]: the live subjects for dashboards; [`http`]: the original REST routes.
//! - this module: start (stream, migrations, projection, endpoints) and rebuild.
//!
//! Events go to stream `SHOP` on `shop.events.cart.<customer token>` (see `schemas::encode_token`).

pub mod domain;
mod handlers;
pub mod http;
pub mod live;
pub mod projection;
pub mod queries;
pub mod wire;

use domain::Cart;
use projection::DhtProjection;
use runtime::projector::ProjectionHandle;
use runtime::service::Endpoints;
use runtime::store::Repository;
use runtime::Ctx;
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

/// The shop's section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SWITCHYARD_SHOP_SHARDS` (default 16, 1 to 10000): the DHT's shard count.
    pub shards: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self { shards: 16 }
    }
}

impl Settings {
    /// Reads the environment.
    ///
    /// # Errors
    /// A shard count that does not parse or is out of range, named.
    pub fn from_env() -> anyhow::Result<Self> {
        let shards: u32 = runtime::config::setting("SWITCHYARD_SHOP_SHARDS", 16)?;
        anyhow::ensure!(
            (1..=10_000).contains(&shards),
            "SWITCHYARD_SHOP_SHARDS={shards}: the shard count must be 1 to 10000"
        );
        Ok(Self { shards })
    }
}

/// What the shop's handlers share.
pub(crate) struct Shop {
    pub(crate) carts: Repository<Cart>,
    pub(crate) dht: ProjectionHandle,
    pub(crate) pool: sqlx::PgPool,
    pub(crate) shards: u32,
    pub(crate) wait: std::time::Duration,
}

/// Starts the shop: stream, migrations, the DHT projection, the endpoints.
///
/// # Errors
/// A dependency is unreachable.
pub async fn start(ctx: &Ctx, settings: &Settings) -> anyhow::Result<()> {
    let store = ctx.event_store("shop", STREAM).await?;
    runtime::db::migrate(&ctx.pool, "shop", sqlx::migrate!("./migrations")).await?;
    let shards = settings.shards;
    reshard(&ctx.pool, shards).await?;
    let dht = ctx
        .projection("shop", &store, DhtProjection::new(shards))
        .await?;
    let shop = Arc::new(Shop {
        carts: ctx.repository::<Cart>(&store, "shop"),
        dht,
        pool: ctx.pool.clone(),
        shards,
        wait: ctx.config.min_seq_wait,
    });
    let ep = Endpoints::start(&ctx.client, "shop", "shopping carts on a sharded DHT").await?;
    let routes = ep.with_state(shop.clone());
    routes.on("shop.cmd.add-item", handlers::add_item).await?;
    routes
        .on("shop.cmd.update-item", handlers::update_item)
        .await?;
    routes
        .on("shop.cmd.remove-item", handlers::remove_item)
        .await?;
    routes.on("shop.cmd.checkout", handlers::checkout).await?;
    routes.on("shop.query.cart", queries::cart).await?;
    routes.on("shop.query.dht-get", queries::dht_get).await?;
    routes
        .on("shop.query.dht-stats", queries::dht_stats_query)
        .await?;
    routes
        .on("shop.query.shard-carts", queries::shard_carts)
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
pub async fn rebuild(ctx: &Ctx, settings: &Settings, name: &str) -> anyhow::Result<bool> {
    use runtime::projector::Projection as _;
    if name != DhtProjection::NAME {
        return Ok(false);
    }
    let store = ctx.event_store("shop", STREAM).await?;
    runtime::db::migrate(&ctx.pool, "shop", sqlx::migrate!("./migrations")).await?;
    runtime::projector::rebuild(&store, &ctx.pool, &DhtProjection::new(settings.shards)).await?;
    Ok(true)
}
