//! Chunked, replicated, checksummed file storage (contract section 7).
//!
//! - [`domain`]: pure rules (chunk ids, framing, upload checks, file/server decisions, the repair
//!   planner, HTTP ranges).
//! - [`disk`] and [`chunk_server`]: a chunk server (`dfs-chunk` on `dfs.chunk.<id>`).
//! - [`coordinator`]: the coordinator (`dfs-coordinator` on `dfs.coordinator`): heartbeats,
//!   re-replication and garbage collection; `handlers` (its commands, and the `request_type`
//!   dispatch) and [`queries`]; [`projection`]: the catalog read model.
//! - [`client`]: `switchyard dfs put|get|ls|rm`; [`http`]: `GET /files/{file_id}` with `Range`.
//!
//! Settings beside the contract's (`SWITCHYARD_DFS_SERVERS`, `SWITCHYARD_DFS_DIR`,
//! `SWITCHYARD_DFS_REPLICAS`): `SWITCHYARD_DFS_HEARTBEAT_MS` (1000), `SWITCHYARD_DFS_DEAD_AFTER_MS`
//! (5000), `SWITCHYARD_DFS_REPAIR_MS` (1000), `SWITCHYARD_DFS_REPAIR_PARALLEL` (4),
//! `SWITCHYARD_DFS_ORPHAN_GRACE_SECS` (600). Each in-process chunk server keeps its id in
//! `<dir>/server-<n>/SERVER_ID`, so two processes must not share one `SWITCHYARD_DFS_DIR`. Several
//! processes share the coordinator's work (queue group); one of them at a time, holding the lease
//! on `dfs.lease.repair`, re-replicates and collects garbage.

pub mod chunk_server;
pub mod client;
pub mod coordinator;
pub mod disk;
pub mod domain;
pub mod fanout;
mod handlers;
pub mod http;
pub mod live;
pub mod projection;
pub mod queries;
pub mod settings;
pub mod transfer;

use runtime::Ctx;
use std::path::PathBuf;
use std::time::Duration;

pub use chunk_server::{ChunkServer, ChunkServerOptions};
pub use settings::Settings;

/// The dfs event stream (over `dfs.events.>`).
pub const STREAM: &str = "DFS";

/// Starts the dfs service in this process: stream, migrations, the catalog projection, the
/// coordinator and `settings.servers` chunk servers (directories `<settings.dir>/server-<n>`).
///
/// # Errors
/// A dependency is unreachable or a data directory is unusable.
pub async fn start(ctx: &Ctx, settings: &Settings) -> anyhow::Result<()> {
    runtime::db::migrate(&ctx.pool, "dfs", sqlx::migrate!("./migrations")).await?;
    let store = ctx.event_store("dfs", STREAM).await?;
    let catalog = ctx.projection("dfs", &store, projection::Catalog).await?;
    live::start(ctx, catalog.clone()).await?;
    let coordinator =
        coordinator::Coordinator::start(ctx, store, catalog, settings.clone()).await?;
    let mut ids = Vec::new();
    for n in 1..=settings.servers {
        let dir = PathBuf::from(&settings.dir).join(format!("server-{n}"));
        let server = chunk_server::start(
            ctx.client.clone(),
            ChunkServerOptions {
                dir,
                id: None,
                settings: settings.clone(),
            },
        )
        .await?;
        ids.push(server.id().to_string());
        // The server lives as long as this process's runtime.
        tokio::spawn(async move {
            let _server = server;
            std::future::pending::<()>().await;
        });
    }
    // Ready means the local chunk servers are listed as live.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let live = queries::live_servers(&coordinator.pool).await?;
        if ids
            .iter()
            .all(|id| live.iter().any(|s| &s.chnk_srv_id == id))
        {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the local chunk servers did not join within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tracing::info!(servers = ?ids, "dfs started");
    ctx.health.started("dfs");
    Ok(())
}

/// HTTP routes this context adds to the gateway: `GET /files/{file_id}` (with `Range`).
pub fn routes(client: async_nats::Client) -> axum::Router {
    http::routes(client)
}

/// `switchyard dfs ...` client commands; `args` are the words after the context's name.
///
/// # Errors
/// Bad arguments or an unreachable service.
pub async fn cli(args: Vec<String>) -> anyhow::Result<()> {
    client::cli(args).await
}

/// `switchyard projections rebuild <name>` for the dfs catalog (`dfs_catalog`). Returns false for
/// another name.
///
/// # Errors
/// A dependency is unreachable.
pub async fn rebuild(ctx: &Ctx, name: &str) -> anyhow::Result<bool> {
    use runtime::projector::Projection as _;
    if name != projection::Catalog::NAME {
        return Ok(false);
    }
    let store = ctx.event_store("dfs", STREAM).await?;
    runtime::db::migrate(&ctx.pool, "dfs", sqlx::migrate!("./migrations")).await?;
    runtime::projector::rebuild(&store, &ctx.pool, &projection::Catalog).await?;
    Ok(true)
}
