//! `switchyard sim carts [--speed N]`: a cart simulator that acts as the carts would, from outside.
//!
//! It follows every job published on `dispatch.cart.*.job` (and, at start, every cart already
//! `QUEUE`d): reports `departed`, a `position` at each node of the route (after the edge's driving
//! time), `docked`, `transfer_started`, `transfer_completed` (after the datasets' size at
//! [`SimOptions::bytes_per_second`]), `undocked`, then drives home the same way and reports
//! `returned`. `--speed N` runs N times faster than real time. Each report carries a
//! `Nats-Msg-Id`, so a retried report is not applied twice.

use futures::StreamExt;
use schemas::dispatch as w;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Times faster than real time (> 0).
    pub speed: f64,
    /// Transfer rate at the dock.
    pub bytes_per_second: f64,
    /// Print each report on stdout.
    pub verbose: bool,
    /// Only drive carts whose id starts with this (benchmarks and tests that share a deployment).
    pub only_prefix: Option<String>,
    /// Told (cart, request) after each `transfer_completed` (benchmarks count deliveries).
    pub delivered: Option<tokio::sync::mpsc::UnboundedSender<(String, String)>>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            speed: 1.0,
            bytes_per_second: 5e9,
            verbose: false,
            only_prefix: None,
            delivered: None,
        }
    }
}

struct Sim {
    client: async_nats::Client,
    opts: SimOptions,
    running: Mutex<HashSet<(String, String)>>,
}

/// Runs the simulator until the connection closes.
///
/// # Errors
/// NATS unreachable.
pub async fn run(client: async_nats::Client, opts: SimOptions) -> anyhow::Result<()> {
    let mut jobs = client.subscribe("dispatch.cart.*.job").await?;
    let sim = Arc::new(Sim {
        client,
        opts,
        running: Mutex::new(HashSet::new()),
    });
    // Carts reserved before the simulator started.
    let queued = request(
        &sim.client,
        "dispatch.query.carts",
        &serde_json::json!({"status": "QUEUE"}),
        None,
    )
    .await;
    if let Ok(v) = queued {
        if let Ok(r) = serde_json::from_value::<w::CartsReply>(v) {
            for c in r.carts {
                if let (Some(request_id), Some(server_id), Some(route)) =
                    (c.request_id, c.server_id, c.route)
                {
                    let job = w::Job {
                        request_id,
                        server_id,
                        route,
                        seconds: 0.0,
                        cart_id: c.cart_id,
                        datasets: vec![],
                        bytes: 0,
                    };
                    sim.clone().start(job);
                }
            }
        }
    }
    while let Some(msg) = jobs.next().await {
        match serde_json::from_slice::<w::Job>(&msg.payload) {
            Ok(job) => sim.clone().start(job),
            Err(e) => tracing::warn!(error = %e, "the simulator ignores a job it cannot read"),
        }
    }
    Ok(())
}

/// Runs the simulator in the background.
#[must_use]
pub fn spawn(client: async_nats::Client, opts: SimOptions) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = run(client, opts).await {
            tracing::error!(error = %e, "cart simulator stopped");
        }
    })
}

async fn request(
    client: &async_nats::Client,
    subject: &str,
    body: &serde_json::Value,
    msg_id: Option<&str>,
) -> Result<serde_json::Value, (u16, String)> {
    let payload = bytes::Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut last = (503, String::new());
    for attempt in 0..5u64 {
        let mut req = async_nats::Request::new()
            .payload(payload.clone())
            .timeout(Some(Duration::from_secs(10)));
        if let Some(id) = msg_id {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", id);
            req = req.headers(h);
        }
        match client.send_request(subject.to_string(), req).await {
            Ok(m) => {
                let status: Option<u16> = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Service-Error-Code"))
                    .and_then(|v| v.as_str().parse().ok());
                let body: serde_json::Value =
                    serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null);
                match status {
                    None => return Ok(body),
                    Some(503) => last = (503, body.to_string()),
                    Some(s) => return Err((s, body.to_string())),
                }
            }
            Err(e) => last = (503, e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
    }
    Err(last)
}

impl Sim {
    fn start(self: Arc<Self>, job: w::Job) {
        if self
            .opts
            .only_prefix
            .as_ref()
            .is_some_and(|p| !job.cart_id.starts_with(p.as_str()))
        {
            return;
        }
        let key = (job.cart_id.clone(), job.request_id.clone());
        {
            let Ok(mut r) = self.running.lock() else {
                return;
            };
            if !r.insert(key.clone()) {
                return; // the same job again (a redelivered dispatch)
            }
        }
        tokio::spawn(async move {
            if let Err((status, e)) = self.drive(&job).await {
                tracing::warn!(cart = %job.cart_id, request = %job.request_id, status, error = %e, "the simulator stopped this job");
            }
            if let Ok(mut r) = self.running.lock() {
                r.remove(&key);
            }
        });
    }

    async fn sleep(&self, seconds: f64) {
        let s = seconds / self.opts.speed.max(1e-9);
        if s.is_finite() && s > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(s.min(86_400.0))).await;
        }
    }

    async fn report(
        &self,
        job: &w::Job,
        step: usize,
        report: &str,
        location: Option<&str>,
    ) -> Result<w::CartInfo, (u16, String)> {
        let msg_id = format!("sim:{}:{}:{step}", job.cart_id, job.request_id);
        let body =
            serde_json::json!({"cart_id": job.cart_id, "report": report, "location": location});
        let t = std::time::Instant::now();
        let v = request(
            &self.client,
            "dispatch.cmd.cart-report",
            &body,
            Some(&msg_id),
        )
        .await?;
        tracing::debug!(cart = %job.cart_id, report, elapsed = ?t.elapsed(), "reported");
        if self.opts.verbose {
            println!(
                "{} {report}{}",
                job.cart_id,
                location.map(|l| format!(" at {l}")).unwrap_or_default()
            );
        }
        serde_json::from_value(v).map_err(|e| (500, e.to_string()))
    }

    async fn edges(&self) -> HashMap<(String, String), f64> {
        let mut out = HashMap::new();
        if let Ok(v) = request(
            &self.client,
            "dispatch.query.facility",
            &serde_json::json!({}),
            None,
        )
        .await
        {
            if let Ok(f) = serde_json::from_value::<w::Facility>(v) {
                for e in f.edges {
                    for k in [(e.from.clone(), e.to.clone()), (e.to, e.from)] {
                        let s = out.entry(k).or_insert(e.seconds);
                        *s = f64::min(*s, e.seconds);
                    }
                }
            }
        }
        out
    }

    /// Drives `route` (from its first node), reporting a position at each node but the last.
    async fn drive_route(
        &self,
        job: &w::Job,
        step: &mut usize,
        route: &[String],
        edges: &HashMap<(String, String), f64>,
        total: f64,
    ) -> Result<(), (u16, String)> {
        let hops = route.len().saturating_sub(1).max(1) as f64;
        for (i, pair) in route.windows(2).enumerate() {
            let secs = edges
                .get(&(pair[0].clone(), pair[1].clone()))
                .copied()
                .unwrap_or(total / hops);
            self.sleep(secs).await;
            if i + 2 < route.len() {
                *step += 1;
                self.report(job, *step, "position", Some(&pair[1])).await?;
            }
        }
        Ok(())
    }

    async fn drive(&self, job: &w::Job) -> Result<(), (u16, String)> {
        let edges = self.edges().await;
        let mut step = 0;
        let cart = self.report(job, step, "departed", None).await?;
        self.drive_route(job, &mut step, &job.route, &edges, job.seconds)
            .await?;
        step += 1;
        self.report(job, step, "docked", Some(&job.server_id))
            .await?;
        step += 1;
        self.report(job, step, "transfer_started", None).await?;
        self.sleep(job.bytes as f64 / self.opts.bytes_per_second.max(1.0))
            .await;
        step += 1;
        self.report(job, step, "transfer_completed", None).await?;
        if let Some(tx) = &self.opts.delivered {
            let _ = tx.send((job.cart_id.clone(), job.request_id.clone()));
        }
        step += 1;
        self.report(job, step, "undocked", None).await?;
        let home = request(
            &self.client,
            "dispatch.query.route",
            &serde_json::json!({"from": job.server_id, "to": cart.home}),
            None,
        )
        .await
        .ok()
        .and_then(|v| serde_json::from_value::<w::RouteReply>(v).ok())
        .unwrap_or(w::RouteReply {
            path: vec![job.server_id.clone(), cart.home.clone()],
            seconds: job.seconds,
        });
        self.drive_route(job, &mut step, &home.path, &edges, home.seconds)
            .await?;
        step += 1;
        self.report(job, step, "returned", None).await?;
        Ok(())
    }
}

/// `switchyard sim carts [--speed N]`.
///
/// # Errors
/// Bad arguments or NATS unreachable.
pub async fn cli(args: Vec<String>) -> anyhow::Result<()> {
    let mut opts = SimOptions {
        verbose: true,
        ..SimOptions::default()
    };
    let mut words = args.iter().skip(1);
    while let Some(w) = words.next() {
        match w.as_str() {
            "--speed" => {
                let v = words
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--speed needs a number"))?;
                opts.speed = v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--speed {v:?} is not a number"))?;
                anyhow::ensure!(
                    opts.speed.is_finite() && opts.speed > 0.0,
                    "--speed must be > 0"
                );
            }
            "--quiet" => opts.verbose = false,
            other => anyhow::bail!(
                "unknown argument {other:?}; usage: switchyard sim carts [--speed N] [--quiet]"
            ),
        }
    }
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = runtime::ctx::connect_nats(&url, "switchyard-sim-carts").await?;
    println!("cart simulator on {url}, speed x{}", opts.speed);
    run(client, opts).await
}
