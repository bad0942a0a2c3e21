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

/// How a process proves who it is to NATS, from the environment (the set-up writes these for the
/// `switchyard` user; see `infra/auth.sh`):
///
/// - `NATS_CREDS`: a `.creds` file (JWT and NKey seed);
/// - `NATS_USER` and `NATS_PASSWORD`;
/// - `NATS_TOKEN`.
///
/// None of them: no credentials (a server without authorisation).
///
/// # Errors
/// `NATS_CREDS` names a file that cannot be read, or `NATS_USER` comes without `NATS_PASSWORD`.
pub async fn credentials_from_env(
    options: async_nats::ConnectOptions,
) -> anyhow::Result<async_nats::ConnectOptions> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(path) = var("NATS_CREDS") {
        return options
            .credentials_file(&path)
            .await
            .with_context(|| format!("reading the NATS credentials file NATS_CREDS={path}"));
    }
    if let Some(user) = var("NATS_USER") {
        let password = var("NATS_PASSWORD")
            .with_context(|| format!("NATS_USER={user} is set but NATS_PASSWORD is not"))?;
        return Ok(options.user_and_password(user, password));
    }
    if let Some(token) = var("NATS_TOKEN") {
        return Ok(options.token(token));
    }
    Ok(options)
}

/// Connects to NATS with the options every process uses (credentials from the environment, retry
/// on initial connect, reconnect for ever). `url` is one server or a comma-separated list
/// (`NATS_URL`). A subscription whose messages pile up beyond its
/// capacity (`SWITCHYARD_NATS_SUBSCRIPTION_CAPACITY`, default 65,536 messages) is a *slow
/// consumer*: the client drops what does not fit and this logs it at warn with the subscription,
/// so a flood costs bounded memory and is visible; the server cuts off a connection whose
/// outbound buffer passes `max_pending` and the client reconnects.
///
/// # Errors
/// NATS unreachable, or the credentials in the environment are unusable.
pub async fn connect_nats(url: &str, name: &str) -> anyhow::Result<async_nats::Client> {
    let capacity = std::env::var("SWITCHYARD_NATS_SUBSCRIPTION_CAPACITY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(65_536);
    let options = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .subscription_capacity(capacity)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::SlowConsumer(sid) => tracing::warn!(
                    subscription = sid,
                    "slow consumer: messages arrived faster than they were handled and some were dropped"
                ),
                async_nats::Event::ServerError(e) => {
                    tracing::error!(error = %e, "the NATS server reported an error");
                }
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                other => tracing::info!(event = %other, "NATS connection event"),
            }
        });
    let (url, userinfo) = split_userinfo(url);
    let options = match userinfo {
        Some((user, password)) => options.user_and_password(user, password),
        None => credentials_from_env(options).await?,
    };
    let addrs = crate::nats::server_addrs(&url)?;
    options
        .connect(addrs)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

/// `nats://user:password@host:port` (also in a comma-separated list): the URLs without the user
/// part, and the user and password (which win over the environment's credentials).
fn split_userinfo(url: &str) -> (String, Option<(String, String)>) {
    let mut found = None;
    let urls: Vec<String> = url
        .split(',')
        .map(|u| {
            let u = u.trim();
            let Some((scheme, rest)) = u.split_once("://") else {
                return u.to_string();
            };
            match rest.rsplit_once('@') {
                Some((info, host)) => {
                    if let Some((user, pass)) = info.split_once(':') {
                        found.get_or_insert((user.to_string(), pass.to_string()));
                    }
                    format!("{scheme}://{host}")
                }
                None => u.to_string(),
            }
        })
        .collect();
    (urls.join(","), found)
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
        EventStore::open_with(
            self.js.clone(),
            domain,
            stream,
            self.config.replicas,
            self.config.group_commit,
        )
        .await
    }

    /// Starts projection `p` of context `service` over `store` and reports it in the health of
    /// `service` (readiness, lag, parked).
    ///
    /// # Errors
    /// PostgreSQL or JetStream unreachable.
    pub async fn projection<P: crate::projector::Projection>(
        &self,
        service: &str,
        store: &EventStore,
        p: P,
    ) -> anyhow::Result<crate::projector::ProjectionHandle> {
        let handle =
            crate::projector::spawn(store.clone(), self.pool.clone(), p, self.config.batching())
                .await?;
        self.health.projection(service, handle.clone());
        Ok(handle)
    }

    /// A repository of aggregates of type `A` over `store`.
    #[must_use]
    pub fn repository<A: Aggregate>(&self, store: &EventStore, domain: &str) -> Repository<A> {
        Repository::new(store.clone(), self.idem.clone(), domain, 100_000)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_and_password_leave_the_url() {
        assert_eq!(
            super::split_userinfo("nats://u:p@h:1,nats://h:2"),
            (
                "nats://h:1,nats://h:2".to_string(),
                Some(("u".to_string(), "p".to_string()))
            )
        );
        assert_eq!(
            super::split_userinfo("nats://h:1"),
            ("nats://h:1".into(), None)
        );
    }
}
