//! The runtime's section of the configuration (contract section 2: the bus, the database, the
//! gateway's address, projections, replicas), read from the environment with the defaults the
//! contract names; and [`setting`] / [`positive`], with which every context reads its own section.
//! The whole configuration, this section and every context's, is `switchyard::Configuration`:
//! read and validated once at start.

use std::time::Duration;

/// The runtime's section: what every context's process shares.
#[derive(Debug, Clone)]
pub struct Config {
    /// `NATS_URL`.
    pub nats_url: String,
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `HTTP_ADDR`: the gateway's listen address.
    pub http_addr: String,
    /// `SWITCHYARD_PROJECTION_BATCH`: most events one projection transaction takes (default 2000).
    pub projection_batch: usize,
    /// `SWITCHYARD_PROJECTION_LINGER_MS`: how long a projection batch that is not full waits for
    /// more events once it holds one (default 5; 0 takes only what is already there).
    pub projection_linger: Duration,
    /// `SWITCHYARD_PROJECTION_SYNC_COMMIT`: `on` (default) makes every projection batch's commit
    /// wait for PostgreSQL's WAL flush; `off` does not: a batch lost with a crash of PostgreSQL
    /// loses its checkpoint in the same transaction, and is applied again from the stream.
    pub projection_sync_commit: bool,
    /// `SWITCHYARD_INSTANCE`: a name for this process in logs and health (default host-pid).
    pub instance: String,
    /// `SWITCHYARD_QUERY_WAIT_MS`: longest `min_seq` wait (default 5000).
    pub min_seq_wait: Duration,
    /// `SWITCHYARD_REPLICAS`: replicas of every stream and KV bucket the runtime creates (1 or 3;
    /// default 1). Durable consumers inherit their stream's.
    pub replicas: usize,
    /// `SWITCHYARD_GROUP_COMMIT`: `on` appends the events of concurrent commands on different
    /// aggregates as one atomic batch with one ack (nats-server 2.12+); `off` (default) acks every
    /// event on its own. Off by default because nats-server 2.15.1 spends about 2-3 ms of CPU per
    /// atomic batch (measured: `make bench`, shop section), which makes batches slower than
    /// single acked publishes.
    pub group_commit: bool,
}

const DEFAULT_LINGER_MS: u64 = 5;

impl Config {
    /// How the projectors make batches.
    #[must_use]
    pub fn batching(&self) -> crate::projector::Batching {
        crate::projector::Batching {
            max: self.projection_batch,
            linger: self.projection_linger,
            sync_commit: self.projection_sync_commit,
        }
    }
}

/// The setting `name` from the environment, `None` when it is unset or blank.
#[must_use]
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The setting `name` from the environment: `default` when it is unset or empty, an error naming
/// it when it does not parse (never a silent fallback). Every context reads its settings with it
/// at start, so a bad value stops the start with a clear message.
///
/// # Errors
/// The value does not parse as `T`.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    parse(name, default)
}

/// As [`setting`], and the value must be at least 1.
///
/// # Errors
/// The value does not parse, or is 0.
pub fn positive(name: &str, default: u64) -> anyhow::Result<u64> {
    let v = parse(name, default)?;
    anyhow::ensure!(v > 0, "{name}=0: it must be at least 1");
    Ok(v)
}

/// A setting that is `on` or `off` (`default` when unset).
///
/// # Errors
/// Any other value, named.
pub fn on_off(name: &str, default: bool) -> anyhow::Result<bool> {
    match var(name).as_deref().map(str::trim) {
        None => Ok(default),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(v) => anyhow::bail!("{name}={v:?}: on or off"),
    }
}

fn parse<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid value")),
    }
}

impl Config {
    /// Reads the environment.
    ///
    /// # Errors
    /// A setting that does not parse or is out of range, named in the message.
    pub fn from_env() -> anyhow::Result<Self> {
        let projection_batch: usize = parse("SWITCHYARD_PROJECTION_BATCH", 2000)?;
        if !(1..=10_000).contains(&projection_batch) {
            anyhow::bail!("SWITCHYARD_PROJECTION_BATCH must be 1 to 10000");
        }
        let linger_ms: u64 = parse("SWITCHYARD_PROJECTION_LINGER_MS", DEFAULT_LINGER_MS)?;
        if linger_ms > 1000 {
            anyhow::bail!("SWITCHYARD_PROJECTION_LINGER_MS={linger_ms}: at most 1000 (ms)");
        }
        Ok(Self {
            nats_url: var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/switchyard".into()),
            http_addr: var("HTTP_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into()),
            projection_batch,
            projection_linger: Duration::from_millis(linger_ms),
            projection_sync_commit: on_off("SWITCHYARD_PROJECTION_SYNC_COMMIT", true)?,
            instance: var("SWITCHYARD_INSTANCE")
                .unwrap_or_else(|| format!("switchyard-{}", std::process::id())),
            min_seq_wait: Duration::from_millis(parse("SWITCHYARD_QUERY_WAIT_MS", 5000)?),
            replicas: crate::nats::replicas_from_env()?,
            group_commit: on_off("SWITCHYARD_GROUP_COMMIT", false)?,
        })
    }

    /// A configuration for tests: the given URLs, every other setting at its default.
    #[must_use]
    pub fn for_urls(nats_url: &str, database_url: &str) -> Self {
        Self {
            nats_url: nats_url.into(),
            database_url: database_url.into(),
            http_addr: "127.0.0.1:0".into(),
            projection_batch: 2000,
            projection_linger: Duration::from_millis(DEFAULT_LINGER_MS),
            projection_sync_commit: true,
            instance: format!("test-{}", uuid::Uuid::now_v7()),
            min_seq_wait: Duration::from_secs(5),
            replicas: 1,
            group_commit: false,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_setting_that_does_not_parse_is_an_error_naming_it() {
        std::env::set_var("SWITCHYARD_TEST_SETTING_BAD", "fast");
        let err = super::setting::<u64>("SWITCHYARD_TEST_SETTING_BAD", 5).unwrap_err();
        assert!(
            err.to_string().contains("SWITCHYARD_TEST_SETTING_BAD"),
            "{err}"
        );
        std::env::set_var("SWITCHYARD_TEST_SETTING_ZERO", "0");
        assert!(super::positive("SWITCHYARD_TEST_SETTING_ZERO", 5).is_err());
        assert_eq!(
            super::setting::<u64>("SWITCHYARD_TEST_SETTING_UNSET", 5).unwrap(),
            5
        );
    }
}
