//! Building-automation systems, modules, drivers, status, watch and exec (contract section 5).
//!
//! - [`domain`]: pure rules (aggregates, metadata types, argument and role checks, places,
//!   rendezvous hashing).
//! - [`view`]: the in-memory fold of the whole stream every instance keeps, and the watch messages
//!   each event causes.
//! - [`instance`]: membership with heartbeats in NATS KV, ownership, running modules, publishing.
//! - [`handlers`]: the `engine` micro service (commands, queries, `engine.exec`).
//! - [`queries`]: the queries on the read model.
//! - [`projection`]: the PostgreSQL read model the queries read.
//! - [`drivers`]: the driver trait and the sample drivers `display` and `calculator`.
//!
//! Settings (environment, besides the runtime's): `SWITCHYARD_ENGINE_HEARTBEAT_MS` (default 1000),
//! `SWITCHYARD_ENGINE_DEAD_MS` (silence after which an instance is dead, default 3 heartbeats),
//! `SWITCHYARD_ENGINE_DRIVER_TIMEOUT_MS` (default 5000), `SWITCHYARD_TOKEN_SECRET` (HS256).
//!
//! Subjects beyond the contract: `engine.query.driver`, `engine.query.instances` (live instances,
//! the leader and the modules each owns), `engine.instance.<id>.exec` (internal hop to the owner),
//! the KV bucket `ENGINE_INSTANCES`, and status events on `engine.events.status.<module_id>`.

pub mod auth;
pub mod domain;
pub mod drivers;
pub mod handlers;
pub mod instance;
pub mod projection;
pub mod queries;
pub mod systems;
pub mod view;

pub use instance::Settings;
use runtime::projector::ProjectionHandle;
use runtime::Ctx;
use std::sync::Arc;
use std::time::Duration;

/// What the engine's handlers and queries share.
pub struct Api {
    pub engine: Arc<instance::Engine>,
    pub read_model: ProjectionHandle,
}

/// Starts the engine service in this process: stream, migrations, read model, the live view,
/// the built-in drivers, membership, the modules this instance owns, and the endpoints.
///
/// # Errors
/// A dependency is unreachable.
pub async fn start(ctx: &Ctx, settings: &Settings) -> anyhow::Result<()> {
    use tracing::Instrument as _;
    start_inner(ctx, settings.clone())
        .instrument(tracing::info_span!("engine_start", instance = %ctx.config.instance))
        .await
}

async fn start_inner(ctx: &Ctx, settings: Settings) -> anyhow::Result<()> {
    runtime::db::migrate(&ctx.pool, "engine", sqlx::migrate!("./migrations")).await?;
    let store = ctx.event_store("engine", "ENGINE").await?;
    let engine = instance::Engine::new(ctx, store.clone(), settings).await?;
    let start_seq = store.last_seq().await?;
    engine.spawn_follower();
    anyhow::ensure!(
        engine.wait_view(start_seq, Duration::from_secs(60)).await,
        "the engine view did not catch up with the stream (sequence {start_seq}) within 60 s"
    );

    for d in engine.impls.values() {
        let metadata = d.metadata();
        let current = engine.read_view(|v| v.drivers.get(d.id()).map(|m| m.raw.clone()));
        if current.as_ref() != Some(&metadata) {
            let cmd = schemas::engine::RegisterDriver {
                driver_id: d.id().to_string(),
                metadata,
            };
            handlers::register(&engine, cmd, None)
                .await
                .map_err(|e| anyhow::anyhow!("registering driver {}: {e}", d.id()))?;
        }
    }

    // The read model starts after the built-in drivers are registered, so that readiness (the
    // projection caught up with the stream as it stood at its start) covers them.
    let read_model = ctx
        .projection("engine", &store, projection::ReadModel)
        .await?;
    engine.serve_owner().await?;
    engine.join().await?;
    handlers::serve(&engine, read_model).await?;
    tracing::info!(instance = %engine.me, "engine started");
    ctx.health.started("engine");
    Ok(())
}

/// `switchyard projections rebuild engine_read_model`: empties the read model and lets the running
/// services replay it from the first event. Returns false for a name that is not the engine's.
///
/// # Errors
/// PostgreSQL or JetStream unreachable.
pub async fn rebuild(ctx: &Ctx, name: &str) -> anyhow::Result<bool> {
    use runtime::projector::Projection as _;
    if name != projection::ReadModel::NAME {
        return Ok(false);
    }
    let store = ctx.event_store("engine", "ENGINE").await?;
    runtime::db::migrate(&ctx.pool, "engine", sqlx::migrate!("./migrations")).await?;
    runtime::projector::rebuild(&store, &ctx.pool, &projection::ReadModel).await?;
    Ok(true)
}

/// HTTP routes this context adds to the gateway (none: the engine is NATS only).
pub fn routes(client: async_nats::Client) -> axum::Router {
    let _ = client;
    axum::Router::new()
}

/// Arguments of `switchyard token`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "switchyard token",
    about = "Print an HS256 token for engine.exec (secret: SWITCHYARD_TOKEN_SECRET)"
)]
struct TokenArgs {
    /// The user the token names (`sub`).
    #[arg(long)]
    sub: String,
    /// Roles, comma separated: `support`, `administrator`.
    #[arg(long, value_delimiter = ',', default_value = "")]
    roles: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl: u64,
}

/// `switchyard token --sub NAME --roles support[,administrator] [--ttl SECS]`: prints a token.
/// `args` are the words after `token`.
///
/// # Errors
/// Bad arguments or configuration.
pub async fn cli(args: Vec<String>) -> anyhow::Result<()> {
    println!("{}", token(&args)?);
    Ok(())
}

fn token(args: &[String]) -> anyhow::Result<String> {
    use clap::Parser as _;
    let parsed = TokenArgs::try_parse_from(
        std::iter::once("switchyard token".to_string()).chain(args.iter().cloned()),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let roles: Vec<String> = parsed
        .roles
        .into_iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    for r in &roles {
        anyhow::ensure!(
            r == "support" || r == "administrator",
            "unknown role {r:?}: roles are support and administrator"
        );
    }
    anyhow::ensure!(!parsed.sub.is_empty(), "--sub must not be empty");
    let settings = Settings::from_env()?;
    auth::issue(&settings.token_secret, &parsed.sub, &roles, parsed.ttl)
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_cli_signs_with_the_configured_secret() {
        let args: Vec<String> = ["--sub", "jane", "--roles", "support,administrator"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        let t = super::token(&args).unwrap();
        let secret = super::Settings::from_env().unwrap().token_secret;
        assert_eq!(
            super::auth::caller(Some(&format!("Bearer {t}")), &secret),
            super::domain::Caller::User {
                sub: "jane".into(),
                roles: vec!["support".into(), "administrator".into()]
            }
        );
        let bad: Vec<String> = ["--sub", "jane", "--roles", "root"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        assert!(super::token(&bad).is_err());
        assert!(super::token(&[]).is_err());
    }
}
