//! What every context's `start` gets: configuration, NATS, JetStream, PostgreSQL, the health registry.

use crate::config::Config;
use crate::health::Registry;
use crate::store::{Aggregate, EventStore, Idempotency, Repository};
use anyhow::Context as _;
use async_nats::jetstream;
use sqlx::PgPool;
use std::time::Duration;

/// Shared handles of one `switchyard run` process (cheap to clone).
#[derive(Clone)]
pub struct Ctx {
    pub config: Config,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub pool: PgPool,
    pub health: Registry,
    pub idem: Idempotency,
}

/// Connects to NATS with the options every process uses (retry on initial connect, reconnect for ever).
/// `url` is one server or a comma-separated list (`NATS_URL`).
///
/// # Errors
/// NATS unreachable, or `url` does not parse.
pub async fn connect_nats(url: &str, name: &str) -> anyhow::Result<async_nats::Client> {
    let addrs = crate::nats::server_addrs(url)?;
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .connect(addrs)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

impl Ctx {
    /// Connects to NATS and PostgreSQL and applies the runtime's migrations.
    ///
    /// # Errors
    /// Either is unreachable.
    pub async fn connect(config: Config) -> anyhow::Result<Self> {
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            connect_nats(&config.nats_url, &config.instance),
        )
        .await
        .map_err(|_| anyhow::anyhow!("NATS at {} did not answer within 30 s", config.nats_url))??;
        let info =
            crate::nats::wait_server_info(&client, &config.nats_url, Duration::from_secs(30))
                .await?;
        crate::nats::check_server_version(&config.nats_url, &info.version)?;
        tracing::info!(server = %info.server_name, version = %info.version, "connected to NATS");
        let js = jetstream::new(client.clone());
        let pool = crate::db::connect(&config.database_url, Duration::from_secs(30)).await?;
        crate::db::migrate_runtime(&pool).await?;
        let idem = Idempotency::open(&js, config.replicas).await?;
        Ok(Self {
            config,
            client,
            js,
            pool,
            health: Registry::default(),
            idem,
        })
    }

    /// Opens (creating or updating) a context's stream.
    ///
    /// # Errors
    /// JetStream unreachable.
    pub async fn event_store(&self, domain: &str, stream: &str) -> anyhow::Result<EventStore> {
        EventStore::open(self.js.clone(), domain, stream, self.config.replicas).await
    }

    /// A repository of aggregates of type `A` over `store`.
    #[must_use]
    pub fn repository<A: Aggregate>(&self, store: &EventStore, domain: &str) -> Repository<A> {
        Repository::new(store.clone(), self.idem.clone(), domain, 100_000)
    }
}
