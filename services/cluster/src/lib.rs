//! Pipeline manager, workers and nodes as a live network tree (contract section 6).
//!
//! - [`domain`]: the manager aggregate, pure (states 0..5, decide, evolve, the tree, its deltas).
//! - [`handlers`]: `cluster.cmd.*` on the manager aggregate (one event per command).
//! - [`projection`] and [`queries`]: the read model behind `cluster.query.tree` / `managers`.
//! - [`live`]: follows the stream and publishes one delta per event on `cluster.tree.<manager_id>`.

pub mod domain;
pub mod handlers;
pub mod live;
pub mod projection;
pub mod queries;

use runtime::service::Endpoints;
use runtime::Ctx;
use schemas::cluster as wire;
use std::sync::Arc;

/// Name of the stream of cluster events.
pub const STREAM: &str = "CLUSTER";

/// Starts the cluster service in this process (streams, migrations, endpoints, projections).
///
/// # Errors
/// A dependency is unreachable.
pub async fn start(ctx: &Ctx) -> anyhow::Result<()> {
    runtime::db::migrate(&ctx.pool, "cluster", sqlx::migrate!("./migrations")).await?;
    let store = ctx.event_store("cluster", STREAM).await?;
    let handle = ctx
        .projection("cluster", &store, projection::TreeProjection::default())
        .await?;
    live::spawn(
        ctx.client.clone(),
        store.clone(),
        ctx.pool.clone(),
        &ctx.config.instance,
    )
    .await?;

    let endpoints = Endpoints::start(
        &ctx.client,
        "cluster",
        "pipeline manager, workers and nodes as a live network tree",
    )
    .await?;
    let commands = endpoints.with_state(Arc::new(handlers::Commands {
        repo: ctx.repository(&store, "cluster"),
    }));
    commands
        .on(
            "cluster.cmd.start-manager",
            handlers::command::<wire::StartManager>,
        )
        .await?;
    commands
        .on(
            "cluster.cmd.connect-worker",
            handlers::command::<wire::ConnectWorker>,
        )
        .await?;
    commands
        .on(
            "cluster.cmd.disconnect-worker",
            handlers::command::<wire::DisconnectWorker>,
        )
        .await?;
    commands
        .on(
            "cluster.cmd.commit-graph",
            handlers::command::<wire::CommitGraph>,
        )
        .await?;
    commands
        .on(
            "cluster.cmd.node-report",
            handlers::command::<wire::NodeReport>,
        )
        .await?;
    commands
        .on("cluster.cmd.execute", handlers::execute)
        .await?;
    commands.on("cluster.cmd.stop", handlers::stop).await?;
    commands
        .on("cluster.cmd.finalize", handlers::finalize)
        .await?;
    let queries = endpoints.with_state(Arc::new(queries::Queries {
        pool: ctx.pool.clone(),
        projection: handle,
        wait: ctx.config.min_seq_wait,
    }));
    queries.on("cluster.query.tree", queries::tree).await?;
    queries
        .on("cluster.query.managers", queries::managers)
        .await?;
    ctx.health.started("cluster");
    Ok(())
}

/// HTTP routes this context adds to the gateway (none: the dashboard talks NATS).
pub fn routes(client: async_nats::Client) -> axum::Router {
    let _ = client;
    axum::Router::new()
}

/// `switchyard projections rebuild <name>` for the cluster's projection (`cluster_tree`). Returns
/// false for another name.
///
/// # Errors
/// A dependency is unreachable.
pub async fn rebuild(ctx: &Ctx, name: &str) -> anyhow::Result<bool> {
    use runtime::projector::Projection as _;
    if name != projection::TreeProjection::NAME {
        return Ok(false);
    }
    let store = ctx.event_store("cluster", STREAM).await?;
    runtime::db::migrate(&ctx.pool, "cluster", sqlx::migrate!("./migrations")).await?;
    runtime::projector::rebuild(&store, &ctx.pool, &projection::TreeProjection::default()).await?;
    Ok(true)
}
