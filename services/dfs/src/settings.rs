//! Timing settings, read from the environment so that tests and benchmarks can run them fast.

use std::time::Duration;

/// The dfs timings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
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
            heartbeat: Duration::from_millis(1000),
            dead_after: Duration::from_millis(5000),
            repair_every: Duration::from_millis(1000),
            orphan_grace: Duration::from_secs(600),
            repair_parallel: 4,
        }
    }
}

fn num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

impl Settings {
    /// Reads the environment; unset or unparsable values keep their defaults.
    #[must_use]
    pub fn from_env() -> Self {
        let d = Self::default();
        Self {
            heartbeat: num("SWITCHYARD_DFS_HEARTBEAT_MS")
                .map_or(d.heartbeat, Duration::from_millis),
            dead_after: num("SWITCHYARD_DFS_DEAD_AFTER_MS")
                .map_or(d.dead_after, Duration::from_millis),
            repair_every: num("SWITCHYARD_DFS_REPAIR_MS")
                .map_or(d.repair_every, Duration::from_millis),
            orphan_grace: num("SWITCHYARD_DFS_ORPHAN_GRACE_SECS")
                .map_or(d.orphan_grace, Duration::from_secs),
            repair_parallel: num("SWITCHYARD_DFS_REPAIR_PARALLEL")
                .map_or(d.repair_parallel, |n| n.clamp(1, 64) as usize),
        }
    }
}
