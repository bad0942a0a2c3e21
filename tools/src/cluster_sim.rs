//! `switchyard sim pipeline`: an outside client that drives a realistic manager through its whole
//! life, again and again, slowly enough for a dashboard to watch the tree change: 3 workers connect,
//! a graph of 6 nodes (video, audio and time series sources, processors, a sink) is committed, the
//! nodes boot, the pipeline executes while nodes flap and one worker drops out and comes back, then
//! it stops and finalizes. A finalized manager is never started again, so life `k` runs manager
//! `<base>-<k>` (see `cluster.query.managers`).

use runtime::client::request_json;
use serde_json::{json, Value};
use std::time::Duration;

/// The simulated pipelines.
pub struct Sim {
    client: async_nats::Client,
    /// Life `k` runs manager `<base>-<k>`.
    base: String,
    step: Duration,
}

/// Options: `--manager ID` (default `pipeline-sim`; life `k` uses manager `ID-k`), `--step-ms N`
/// (default 700), `--loops N` (default 0: for ever). Reads `NATS_URL`.
///
/// # Errors
/// Bad arguments, NATS unreachable, or (with `--loops`) too many failed lives in a row.
pub async fn main(args: &[String]) -> anyhow::Result<()> {
    let mut base = "pipeline-sim".to_string();
    let mut step_ms: u64 = 700;
    let mut loops: u64 = 0;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--manager" => base = value()?,
            "--step-ms" => step_ms = value()?.parse()?,
            "--loops" => loops = value()?.parse()?,
            other => anyhow::bail!(
                "unknown option {other:?}; usage: switchyard sim pipeline [--manager ID] [--step-ms N] [--loops N]"
            ),
        }
    }
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = runtime::ctx::connect_nats(&url, "switchyard-sim-pipeline").await?;
    Sim::new(client, &base, Duration::from_millis(step_ms))
        .run(loops)
        .await
}

/// The three workers.
#[must_use]
pub fn workers() -> Vec<Value> {
    vec![
        json!({"id": "w1", "name": "capture-rig", "ip": "10.0.1.11", "port": 9100}),
        json!({"id": "w2", "name": "gpu-box", "ip": "10.0.1.12", "port": 9100}),
        json!({"id": "w3", "name": "dashboard-host", "ip": "10.0.1.13", "port": 9100}),
    ]
}

/// The six nodes, their edges and placement.
#[must_use]
pub fn graph(manager_id: &str) -> Value {
    json!({
        "manager_id": manager_id,
        "nodes": [
            {"id": "camera", "name": "Webcam", "port": 9201, "data_type": "Video", "dashboard_component": "VideoPlayer", "capabilities": ["callibrate", "start", "stop"]},
            {"id": "microphone", "name": "Microphone", "port": 9202, "data_type": "Audio", "dashboard_component": "AudioMeter", "capabilities": ["start", "stop"]},
            {"id": "eye-tracker", "name": "Eye tracker", "port": 9203, "data_type": "Series", "dashboard_component": "LineChart", "capabilities": ["callibrate", "start", "stop"]},
            {"id": "pose", "name": "Pose estimation", "port": 9301, "data_type": "Video", "dashboard_component": "VideoPlayer", "capabilities": ["start", "stop"]},
            {"id": "speech", "name": "Speech to text", "port": 9302, "data_type": "Audio", "dashboard_component": null, "capabilities": ["start", "stop"]},
            {"id": "recorder", "name": "Session recorder", "port": 9401, "data_type": "Series", "dashboard_component": "Timeline", "capabilities": ["start", "stop"]}
        ],
        "edges": [["camera", "pose"], ["microphone", "speech"], ["pose", "recorder"], ["speech", "recorder"], ["eye-tracker", "recorder"]],
        "mapping": {"camera": "w1", "microphone": "w1", "eye-tracker": "w1", "pose": "w2", "speech": "w2", "recorder": "w3"}
    })
}

const NODES: [&str; 6] = [
    "camera",
    "microphone",
    "eye-tracker",
    "pose",
    "speech",
    "recorder",
];

impl Sim {
    /// A simulator whose life `k` runs manager `<base>-<k>`, pausing `step` between changes.
    #[must_use]
    pub fn new(client: async_nats::Client, base: &str, step: Duration) -> Self {
        Self {
            client,
            base: base.into(),
            step,
        }
    }

    /// Runs `loops` whole lives (0: for ever). A life that fails part-way (the service restarting)
    /// has its manager wound down to FINALIZING and the next life takes the next id; while the
    /// service does not answer at all it retries every 2 s.
    ///
    /// # Errors
    /// More than 30 failures in a row when `loops` is bounded.
    pub async fn run(&self, loops: u64) -> anyhow::Result<()> {
        let (mut k, mut done, mut failures) = (1u64, 0u64, 0u32);
        loop {
            let id = format!("{}-{k}", self.base);
            println!("pipeline {id}: starting");
            match self.life(&id).await {
                Ok(()) => {
                    println!("pipeline {id}: finalized");
                    done += 1;
                    k += 1;
                    failures = 0;
                    if loops != 0 && done >= loops {
                        return Ok(());
                    }
                }
                Err(e) if self.state(&id).await.is_some() => {
                    // Started before (by this life or an earlier run): wind it down, move on.
                    eprintln!("pipeline {id}: {e:#}; winding it down and starting the next one");
                    if let Err(e) = self.wind_down(&id).await {
                        eprintln!("pipeline {id}: {e:#}");
                    }
                    k += 1;
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("pipeline {id}: {e:#}; retrying in 2 s");
                    if loops != 0 && failures > 30 {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    /// The manager's state number, if it exists (and the service answers).
    async fn state(&self, manager_id: &str) -> Option<u64> {
        let r = request_json(
            &self.client,
            "cluster.query.tree",
            &json!({"manager_id": manager_id}),
        )
        .await;
        r.body.get("state").and_then(Value::as_u64)
    }

    async fn cmd(&self, verb: &str, body: Value) -> anyhow::Result<Value> {
        let r = request_json(&self.client, &format!("cluster.cmd.{verb}"), &body).await;
        if r.status != 200 {
            anyhow::bail!("cluster.cmd.{verb} failed ({}): {}", r.status, r.body);
        }
        Ok(r.body)
    }

    async fn pause(&self) {
        tokio::time::sleep(self.step).await;
    }

    async fn report(&self, m: &str, node: &str, running: bool) -> anyhow::Result<()> {
        self.cmd(
            "node-report",
            json!({"manager_id": m, "node_id": node, "running": running}),
        )
        .await?;
        self.pause().await;
        Ok(())
    }

    /// Brings a manager left half-way to FINALIZING, following the states the command replies
    /// report (the read model may lag behind them).
    async fn wind_down(&self, manager_id: &str) -> anyhow::Result<()> {
        let mut state = self.state(manager_id).await;
        for _ in 0..20 {
            let m = json!({"manager_id": manager_id});
            let reply = match state {
                None | Some(5) => return Ok(()),
                Some(0 | 1) => {
                    for w in workers() {
                        let _ = self
                            .cmd(
                                "connect-worker",
                                json!({"manager_id": manager_id, "worker": w}),
                            )
                            .await;
                    }
                    self.cmd("commit-graph", graph(manager_id)).await
                }
                Some(2) => self.cmd("execute", m).await,
                Some(3) => self.cmd("stop", m).await,
                _ => self.cmd("finalize", m).await,
            };
            state = match reply {
                Ok(body) => body.get("state").and_then(Value::as_u64),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.state(manager_id).await
                }
            };
        }
        anyhow::bail!("could not bring manager {manager_id} to FINALIZING")
    }

    /// One whole life of manager `id`.
    ///
    /// # Errors
    /// A command failed (for instance `conflict` when `id` is already in use).
    pub async fn life(&self, id: &str) -> anyhow::Result<()> {
        let m = json!({"manager_id": id});
        self.cmd(
            "start-manager",
            json!({"manager_id": id, "ip": "10.0.1.10", "port": 9000}),
        )
        .await?;
        self.pause().await;
        for w in workers() {
            self.cmd("connect-worker", json!({"manager_id": id, "worker": w}))
                .await?;
            self.pause().await;
        }
        self.cmd("commit-graph", graph(id)).await?;
        self.pause().await;
        for n in NODES {
            self.report(id, n, true).await?;
        }
        self.cmd("execute", m.clone()).await?;
        self.pause().await;
        for tick in 0..12u32 {
            match tick {
                3 => self.report(id, "eye-tracker", false).await?,
                4 => self.report(id, "eye-tracker", true).await?,
                6 => {
                    self.cmd(
                        "disconnect-worker",
                        json!({"manager_id": id, "worker_id": "w2"}),
                    )
                    .await?;
                    self.pause().await;
                }
                8 => {
                    self.cmd(
                        "connect-worker",
                        json!({"manager_id": id, "worker": workers()[1]}),
                    )
                    .await?;
                    self.pause().await;
                    self.report(id, "pose", true).await?;
                    self.report(id, "speech", true).await?;
                }
                _ => self.pause().await,
            }
        }
        self.cmd("stop", m.clone()).await?;
        self.pause().await;
        self.cmd("finalize", m).await?;
        self.pause().await;
        self.pause().await;
        Ok(())
    }
}
