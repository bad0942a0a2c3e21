//! Chunked, replicated, checksummed file storage (contract section 7).

use runtime::Ctx;

/// Starts the dfs service in this process (streams, migrations, endpoints, projections).
///
/// # Errors
/// A dependency is unreachable.
pub async fn start(ctx: &Ctx) -> anyhow::Result<()> {
    ctx.health.started("dfs");
    Ok(())
}

/// HTTP routes this context adds to the gateway (forwarded over NATS).
pub fn routes(client: async_nats::Client) -> axum::Router {
    let _ = client;
    axum::Router::new()
}

/// `switchyard dfs ...` client commands; `args` are the words after the context's name.
///
/// # Errors
/// Bad arguments or an unreachable service.
pub async fn cli(args: Vec<String>) -> anyhow::Result<()> {
    anyhow::bail!("no dfs commands yet: {args:?}")
}
