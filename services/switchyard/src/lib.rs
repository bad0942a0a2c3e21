//! `switchyard run`: starts any set of services in this process.
//!
//! Each context exposes `start(&Ctx, &Settings)`; this module reads the one [`Configuration`]
//! (every section validated before anything connects), connects once, starts the requested
//! contexts, serves `sys.query.health`, waits until every service is ready and announces `ready`
//! on `engine.system`.

use anyhow::Context as _;
use futures::future::BoxFuture;
use runtime::{Config, Ctx};

/// Every service `switchyard run` knows, in start order: the contexts of [`CONTEXTS`], then the
/// gateway (which serves their HTTP routes).
pub const SERVICES: &[&str] = &["shop", "dispatch", "engine", "cluster", "dfs", "gateway"];

/// The whole configuration of a `switchyard` process: the runtime's section and one typed section
/// per context, each read from the environment and validated at start. A bad value in any section
/// stops the start with every wrong setting named at once.
#[derive(Debug, Clone)]
pub struct Configuration {
    /// The bus, the database, the gateway's address, projections, replicas (contract section 2).
    pub runtime: Config,
    pub shop: shop::Settings,
    pub dispatch: dispatch::Settings,
    pub engine: engine::Settings,
    pub dfs: dfs::Settings,
    pub gateway: gateway::Settings,
}

impl Configuration {
    /// Reads every section from the environment.
    ///
    /// # Errors
    /// Every setting that does not parse or is out of range, each named with its section.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut errors = Vec::new();
        let runtime = section("runtime", Config::from_env(), &mut errors);
        Self::sections(runtime, errors)
    }

    /// `runtime` as given (tests and benchmarks build it for their own servers), every context's
    /// section from the environment.
    ///
    /// # Errors
    /// As [`Configuration::from_env`].
    pub fn with_runtime(runtime: Config) -> anyhow::Result<Self> {
        Self::sections(Some(runtime), Vec::new())
    }

    fn sections(runtime: Option<Config>, mut errors: Vec<String>) -> anyhow::Result<Self> {
        let shop = section("shop", shop::Settings::from_env(), &mut errors);
        let dispatch = section("dispatch", dispatch::Settings::from_env(), &mut errors);
        let engine = section("engine", engine::Settings::from_env(), &mut errors);
        let dfs = section("dfs", dfs::Settings::from_env(), &mut errors);
        let gateway = gateway::Settings::from_env();
        match (runtime, shop, dispatch, engine, dfs) {
            (Some(runtime), Some(shop), Some(dispatch), Some(engine), Some(dfs)) => Ok(Self {
                runtime,
                shop,
                dispatch,
                engine,
                dfs,
                gateway,
            }),
            _ => anyhow::bail!("the configuration is not valid: {}", errors.join("; ")),
        }
    }
}

fn section<T>(name: &str, read: anyhow::Result<T>, errors: &mut Vec<String>) -> Option<T> {
    read.map_err(|e| errors.push(format!("[{name}] {e:#}")))
        .ok()
}

/// A start, rebuild or other step of a context, as the registry holds it.
pub type Step<'a, T> = BoxFuture<'a, anyhow::Result<T>>;

/// What a context is made of, described once: its name, how it starts, the projections it runs
/// (the checkpoint names in `runtime.checkpoints`) and how one is rebuilt, and the HTTP routes it
/// adds to the gateway. `switchyard run`, `projections list|rebuild` and the gateway iterate over
/// it; the health report has one entry a started context.
pub struct ContextInfo {
    pub name: &'static str,
    /// Starts the context with its section of the configuration.
    pub start: for<'a> fn(&'a Ctx, &'a Configuration) -> Step<'a, ()>,
    pub projections: &'static [&'static str],
    /// `projections rebuild <name>` for one of `projections`: false for a name it does not know.
    pub rebuild: for<'a> fn(&'a Ctx, &'a Configuration, &'a str) -> Step<'a, bool>,
    /// The context's routes on the gateway (forwarded over NATS).
    pub routes: fn(async_nats::Client) -> axum::Router,
}

/// The context registry.
pub const CONTEXTS: &[ContextInfo] = &[
    ContextInfo {
        name: "shop",
        start: |ctx, c| Box::pin(shop::start(ctx, &c.shop)),
        projections: &["shop_dht"],
        rebuild: |ctx, c, name| Box::pin(shop::rebuild(ctx, &c.shop, name)),
        routes: shop::http::routes,
    },
    ContextInfo {
        name: "dispatch",
        start: |ctx, c| Box::pin(dispatch::start(ctx, &c.dispatch)),
        projections: &["dispatch"],
        rebuild: |ctx, _, name| Box::pin(dispatch::rebuild(ctx, name)),
        routes: dispatch::routes,
    },
    ContextInfo {
        name: "engine",
        start: |ctx, c| Box::pin(engine::start(ctx, &c.engine)),
        projections: &["engine_read_model"],
        rebuild: |ctx, _, name| Box::pin(engine::rebuild(ctx, name)),
        routes: engine::routes,
    },
    ContextInfo {
        name: "cluster",
        start: |ctx, _| Box::pin(cluster::start(ctx)),
        projections: &["cluster_tree"],
        rebuild: |ctx, _, name| Box::pin(cluster::rebuild(ctx, name)),
        routes: cluster::routes,
    },
    ContextInfo {
        name: "dfs",
        start: |ctx, c| Box::pin(dfs::start(ctx, &c.dfs)),
        projections: &["dfs_catalog"],
        rebuild: |ctx, _, name| Box::pin(dfs::rebuild(ctx, name)),
        routes: dfs::routes,
    },
];

/// The context `name` of the registry.
#[must_use]
pub fn context(name: &str) -> Option<&'static ContextInfo> {
    CONTEXTS.iter().find(|c| c.name == name)
}

/// Every context's HTTP routes, for the gateway.
pub fn routes(client: &async_nats::Client) -> axum::Router {
    CONTEXTS.iter().fold(axum::Router::new(), |r, c| {
        r.merge((c.routes)(client.clone()))
    })
}

/// Every projection the registry knows (and any other with a checkpoint), sorted by name, with its
/// checkpoint where there is one (none before the context first ran).
///
/// # Errors
/// PostgreSQL refused the query.
pub async fn list_projections(pool: &sqlx::PgPool) -> anyhow::Result<Vec<(String, Option<i64>)>> {
    let rows: Vec<(String, i64)> =
        match sqlx::query_as("SELECT projection, seq FROM runtime.checkpoints")
            .fetch_all(pool)
            .await
        {
            Ok(rows) => rows,
            // A deployment that has not run yet has no runtime schema.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(e).context("reading the checkpoints"),
        };
    let mut names: Vec<String> = CONTEXTS
        .iter()
        .flat_map(|c| c.projections.iter().map(|p| (*p).to_string()))
        .collect();
    for (name, _) in &rows {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names.sort_unstable();
    Ok(names
        .into_iter()
        .map(|n| {
            let seq = rows.iter().find(|(r, _)| *r == n).map(|(_, s)| *s);
            (n, seq)
        })
        .collect())
}

/// Checks service names against [`SERVICES`]; an empty list means all of them.
///
/// # Errors
/// An unknown name, with the list of known ones.
pub fn select(names: &[String]) -> anyhow::Result<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(SERVICES.to_vec());
    }
    names
        .iter()
        .map(|n| {
            SERVICES.iter().copied().find(|s| s == n).ok_or_else(|| {
                anyhow::anyhow!("unknown service {n:?}; known: {}", SERVICES.join(", "))
            })
        })
        .collect()
}

/// A running set of services.
pub struct Running {
    pub ctx: Ctx,
    /// Where the gateway listens, when it runs.
    pub http_addr: Option<std::net::SocketAddr>,
}

/// Starts `services` and returns once every one is ready and `ready` has been announced.
///
/// # Errors
/// A dependency is unreachable or a service failed to start.
pub async fn start(config: Configuration, services: &[&str]) -> anyhow::Result<Running> {
    let ctx = Ctx::connect(config.runtime.clone()).await?;
    ctx.health.serve(&ctx.client).await?;
    let mut http_addr = None;
    for s in services {
        ctx.health.declare(s);
    }
    for s in services {
        match (context(s), *s) {
            (Some(c), _) => (c.start)(&ctx, &config).await?,
            (None, "gateway") => {
                let routes = routes(&ctx.client);
                http_addr = Some(gateway::start(&ctx, routes, &config.gateway).await?);
            }
            (None, other) => anyhow::bail!("unknown service {other}"),
        }
        tracing::info!(service = s, "started");
    }
    ctx.health.wait_ready().await;
    // Make sure the server has every subscription before anyone is told we are ready: `flush` only
    // writes the buffer, but a request on this connection is processed after every SUB sent before
    // it, so its reply is a barrier.
    ctx.client.flush().await?;
    ctx.client
        .request("sys.query.health", bytes::Bytes::from_static(b"{}"))
        .await
        .map_err(|e| anyhow::anyhow!("own health endpoint did not answer: {e}"))?;
    runtime::health::announce_ready(&ctx.client).await?;
    tracing::info!(services = ?services, "ready");
    Ok(Running { ctx, http_addr })
}

/// `switchyard projections list|rebuild <name>`.
///
/// # Errors
/// Unknown projection, or a dependency is unreachable.
pub async fn projections(args: Vec<String>) -> anyhow::Result<()> {
    projections_in(Configuration::from_env()?, args).await
}

/// [`projections`] with an explicit runtime section (every context's from the environment).
///
/// # Errors
/// Unknown projection, a bad setting, or a dependency is unreachable.
pub async fn projections_with(runtime: Config, args: Vec<String>) -> anyhow::Result<()> {
    projections_in(Configuration::with_runtime(runtime)?, args).await
}

async fn projections_in(config: Configuration, args: Vec<String>) -> anyhow::Result<()> {
    let ctx = Ctx::connect(config.runtime.clone()).await?;
    match args.first().map(String::as_str) {
        Some("list") => {
            for (name, seq) in list_projections(&ctx.pool).await? {
                match seq {
                    Some(seq) => println!("{name}\t{seq}"),
                    None => println!("{name}\t-"),
                }
            }
            Ok(())
        }
        Some("rebuild") => {
            let name = args.get(1).map(String::as_str).unwrap_or_default();
            let Some(context) = CONTEXTS.iter().find(|c| c.projections.contains(&name)) else {
                let known: Vec<&str> = CONTEXTS
                    .iter()
                    .flat_map(|c| c.projections.iter().copied())
                    .collect();
                anyhow::bail!(
                    "unknown projection {name:?}; known: {} (see `switchyard projections list`)",
                    known.join(", ")
                );
            };
            anyhow::ensure!(
                (context.rebuild)(&ctx, &config, name).await?,
                "the {} context does not rebuild {name:?}",
                context.name
            );
            println!("projection {name} reset; running services replay it from the first event");
            Ok(())
        }
        _ => anyhow::bail!("usage: switchyard projections list | rebuild <name>"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_registered_context_is_a_service_and_the_gateway_comes_last() {
        let names: Vec<&str> = super::CONTEXTS.iter().map(|c| c.name).collect();
        assert_eq!(super::SERVICES[..names.len()], names[..]);
        assert_eq!(super::SERVICES[names.len()..], ["gateway"]);
        assert_eq!(super::select(&[]).unwrap(), super::SERVICES);
        assert!(super::select(&["nope".into()]).is_err());
    }
}
