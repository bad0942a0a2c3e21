//! The dfs section of the configuration: the in-process chunk servers, the replication factor, and
//! timings (read from the environment, so that tests and benchmarks can run them fast).

use std::time::Duration;

/// The dfs settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SWITCHYARD_DFS_SERVERS` (default 3): chunk servers started in-process.
    pub servers: u32,
    /// `SWITCHYARD_DFS_DIR` (default `./var/dfs`): their data directory.
    pub dir: String,
    /// `SWITCHYARD_DFS_REPLICAS` (default 3, 1 to 16): replicas of a chunk when a commit names none.
    pub replicas: u32,
    /// `SWITCHYARD_DFS_HEARTBEAT_MS` (default 1000): how often a chunk server says it is alive.
    pub heartbeat: Duration,
    /// `SWITCHYARD_DFS_DEAD_AFTER_MS` (default 5000): silence after which a server is lost.
    pub dead_after: Duration,
    /// `SWITCHYARD_DFS_REPAIR_MS` (default 1000): pause between re-replication / GC rounds.
    pub repair_every: Duration,
    /// `SWITCHYARD_DFS_ORPHAN_GRACE_SECS` (default 600): how long a chunk that no file holds is kept
    /// (an upload whose commit has not come yet) before it is garbage.
    pub orphan_grace: Duration,
    /// `SWITCHYARD_DFS_REPAIR_PARALLEL` (default 4): chunk copies in flight during repair.
    pub repair_parallel: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            servers: 3,
            dir: "./var/dfs".into(),
            replicas: 3,
            heartbeat: Duration::from_millis(1000),
            dead_after: Duration::from_millis(5000),
            repair_every: Duration::from_millis(1000),
            orphan_grace: Duration::from_secs(600),
            repair_parallel: 4,
        }
    }
}

impl Settings {
    /// Reads the environment; unset values keep their defaults.
    ///
    /// # Errors
    /// A setting that does not parse, named (it used to fall back to its default silently).
    pub fn from_env() -> anyhow::Result<Self> {
        use runtime::config::setting;
        let ms = |name: &str, d: Duration| -> anyhow::Result<Duration> {
            let d = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            Ok(Duration::from_millis(setting(name, d)?))
        };
        let d = Self::default();
        let replicas: u32 = setting("SWITCHYARD_DFS_REPLICAS", d.replicas)?;
        anyhow::ensure!(
            (1..=16).contains(&replicas),
            "SWITCHYARD_DFS_REPLICAS={replicas}: the replication factor must be 1 to 16"
        );
        Ok(Self {
            servers: setting("SWITCHYARD_DFS_SERVERS", d.servers)?,
            dir: runtime::config::var("SWITCHYARD_DFS_DIR").unwrap_or(d.dir),
            replicas,
            heartbeat: ms("SWITCHYARD_DFS_HEARTBEAT_MS", d.heartbeat)?,
            dead_after: ms("SWITCHYARD_DFS_DEAD_AFTER_MS", d.dead_after)?,
            repair_every: ms("SWITCHYARD_DFS_REPAIR_MS", d.repair_every)?,
            orphan_grace: Duration::from_secs(setting(
                "SWITCHYARD_DFS_ORPHAN_GRACE_SECS",
                d.orphan_grace.as_secs(),
            )?),
            repair_parallel: setting::<u64>("SWITCHYARD_DFS_REPAIR_PARALLEL", 4)?.clamp(1, 64)
                as usize,
        })
    }
}
