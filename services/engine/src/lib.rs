//! Building-automation systems, modules, drivers, status, watch and exec (contract section 5).

use runtime::Ctx;

/// Starts the engine service in this process (streams, migrations, endpoints, projections).
///
/// # Errors
/// A dependency is unreachable.
pub async fn start(ctx: &Ctx) -> anyhow::Result<()> {
    ctx.health.started("engine");
    Ok(())
}

/// HTTP routes this context adds to the gateway (forwarded over NATS).
pub fn routes(client: async_nats::Client) -> axum::Router {
    let _ = client;
    axum::Router::new()
}

/// `switchyard engine ...` client commands; `args` are the words after the context's name.
///
/// # Errors
/// Bad arguments or an unreachable service.
pub async fn cli(args: Vec<String>) -> anyhow::Result<()> {
    anyhow::bail!("no engine commands yet: {args:?}")
}
