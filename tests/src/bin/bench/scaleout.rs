//! `make bench` section `scaleout` (issue #13): durability modes and commands on one node and on a
//! 3-node JetStream cluster, all on this machine, in one run.
//!
//! 1. The acked-publish rate (64 in flight, 180-byte messages) of four deployments side by side, in
//!    interleaved rounds: one node R1 with the default `sync_interval` (2 min) and with `always`,
//!    three nodes R3 with the default and with `always`.
//! 2. Shop commands through real `switchyard run shop` processes (the release binary): 1 process on
//!    the single node (R1), then 1, 2 and 3 processes on the 3-node cluster (R3). For each: command
//!    throughput (64 concurrent clients) against the raw acked-publish rate of the same deployment
//!    measured right before, add-100 latency against 100 raw request + expected-sequence publishes,
//!    and the CPU time per command of the switchyard processes, the nats-servers and PostgreSQL
//!    (read from `/proc/<pid>/stat`), from which the estimate for three machines is worked out.
//!
//! Settings: `SWITCHYARD_BENCH_SCALEOUT_COMMANDS` (10000), `SWITCHYARD_BENCH_SCALEOUT_REPS` (20),
//! `SWITCHYARD_BENCH_SCALEOUT_SECS` (3, per durability measurement), `SWITCHYARD_BIN`.

use super::{add, env_or, median, raw_sequence, shop_throughput, RawSequence};
use anyhow::Context as _;
use e2e::{Client, TestDb};
use futures::stream::{FuturesUnordered, StreamExt};
use std::fmt::Write as _;
use std::future::IntoFuture as _;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

type Deployment = e2e::cluster::NatsCluster;

/// Connects to `dep` once JetStream is ready, with stream `RAWBENCH` over `bench.js.>` made.
async fn ready(dep: &Deployment) -> anyhow::Result<(Client, async_nats::jetstream::Context)> {
    let client = dep.wait_jetstream("RAWBENCH", "bench.js.>").await?;
    let js = async_nats::jetstream::new(client.nats.clone());
    Ok((client, js))
}

/// Acked publishes per second with 64 in flight, for `secs` seconds.
async fn publish_for(js: &async_nats::jetstream::Context, secs: f64) -> anyhow::Result<f64> {
    let payload = bytes::Bytes::from(vec![b'x'; 180]);
    let t = Instant::now();
    let mut inflight = FuturesUnordered::new();
    let mut acked = 0u64;
    let mut i = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        if inflight.len() >= 64 {
            inflight.next().await.context("ack")??;
            acked += 1;
        }
        let ack = js
            .publish(format!("bench.js.rate.{}", i % 1000), payload.clone())
            .await?;
        inflight.push(ack.into_future());
        i += 1;
    }
    while let Some(a) = inflight.next().await {
        a?;
        acked += 1;
    }
    Ok(acked as f64 / t.elapsed().as_secs_f64())
}

#[derive(Clone, Copy, Default)]
struct Cpu {
    switchyard: f64,
    nats: f64,
    pg: f64,
    bench: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            switchyard: self.switchyard - o.switchyard,
            nats: self.nats - o.nats,
            pg: self.pg - o.pg,
            bench: self.bench - o.bench,
        }
    }
}

fn cpu_now(procs: &[Child], nats: &[u32], pg: Option<u32>) -> Cpu {
    Cpu {
        switchyard: procs
            .iter()
            .map(|c| super::cpu_seconds(c.id(), false))
            .sum(),
        nats: nats.iter().map(|&p| super::cpu_seconds(p, false)).sum(),
        pg: pg.map_or(0.0, |p| super::cpu_seconds(p, true)),
        bench: super::cpu_seconds(std::process::id(), false),
    }
}

/// `switchyard run shop` processes of one configuration.
struct Processes {
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn switchyard_bin() -> PathBuf {
    std::env::var_os("SWITCHYARD_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/switchyard"),
        PathBuf::from,
    )
}

async fn start_processes(
    n: usize,
    nats_url: &str,
    db_url: &str,
    replicas: usize,
) -> anyhow::Result<Processes> {
    let bin = switchyard_bin();
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: `cargo build --release -p switchyard` (make bench does it)",
        bin.display()
    );
    let dir = tempfile::tempdir()?;
    let mut children = Vec::new();
    let mut logs = Vec::new();
    for i in 0..n {
        let log = dir.path().join(format!("switchyard-{i}.log"));
        let f = std::fs::File::create(&log)?;
        children.push(
            Command::new(&bin)
                .args(["run", "shop"])
                .env("NATS_URL", nats_url)
                .env("DATABASE_URL", db_url)
                .env("SWITCHYARD_REPLICAS", replicas.to_string())
                .env("SWITCHYARD_INSTANCE", format!("bench-{i}"))
                .env("RUST_LOG", "warn,switchyard=info")
                .stdout(f.try_clone()?)
                .stderr(f)
                .spawn()?,
        );
        logs.push(log);
    }
    let mut p = Processes {
        children,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, log) in logs.iter().enumerate() {
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("switchyard ready") {
                break;
            }
            if let Ok(Some(status)) = p.children[i].try_wait() {
                anyhow::bail!("switchyard run shop exited ({status}): {text}");
            }
            if Instant::now() > deadline {
                anyhow::bail!("switchyard run shop was not ready in 120 s: {text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // What a process logs past readiness is not read again.
    for c in &mut p.children {
        let _ = c.try_wait();
    }
    Ok(p)
}

/// One command measurement.
struct CommandRun {
    label: String,
    raw_rate: f64,
    rate: f64,
    add100_ms: f64,
    raw100_ms: f64,
    ratio100: f64,
    per_cmd: Cpu,
}

async fn command_run(
    label: String,
    dep: &Deployment,
    js: &async_nats::jetstream::Context,
    client: &Client,
    processes: usize,
    pg: Option<u32>,
) -> anyhow::Result<CommandRun> {
    eprintln!("bench: scaleout: {label}");
    let total: usize = env_or("SWITCHYARD_BENCH_SCALEOUT_COMMANDS", 10_000);
    let reps: usize = env_or("SWITCHYARD_BENCH_SCALEOUT_REPS", 20);
    // Each configuration starts from an empty SHOP stream and a fresh database.
    let _ = js.delete_stream("SHOP").await;
    let db = TestDb::create().await?;
    let procs = start_processes(processes, &dep.url(), &db.url, dep.replicas()).await?;
    // Warm-up: connections, caches, the consumer's first batches.
    shop_throughput(client, 640, "warm").await?;
    let raw_rate = publish_for(js, 2.0).await?;
    let before = cpu_now(&procs.children, &dep.pids(), pg);
    let rate = shop_throughput(client, total, "tp").await?;
    let cpu = cpu_now(&procs.children, &dep.pids(), pg) - before;
    let n = (total / 64 * 64) as f64;
    let per_cmd = Cpu {
        switchyard: cpu.switchyard / n,
        nats: cpu.nats / n,
        pg: cpu.pg / n,
        bench: cpu.bench / n,
    };
    let raw = RawSequence::start(&client.nats).await?;
    // Each configuration its own raw subjects: they start from an empty subject (expected 0).
    let run_tag = uuid::Uuid::now_v7().simple().to_string();
    let (mut adds, mut raws, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..reps {
        let customer = format!("lat-{r}");
        let t = Instant::now();
        for i in 0..100 {
            client
                .command_seq("shop.cmd.add-item", &add(&customer, &format!("item-{i}")))
                .await?;
        }
        let a = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        raw_sequence(&client.nats, &raw, &format!("bench.js.seq.{run_tag}.{r}")).await?;
        let b = t.elapsed().as_secs_f64() * 1000.0;
        adds.push(a);
        raws.push(b);
        ratios.push(a / b);
    }
    drop(raw);
    drop(procs);
    drop(db);
    Ok(CommandRun {
        label,
        raw_rate,
        rate,
        add100_ms: median(&mut adds),
        raw100_ms: median(&mut raws),
        ratio100: median(&mut ratios),
        per_cmd,
    })
}

/// The section's Markdown.
pub async fn section() -> anyhow::Result<String> {
    let mut out = String::from(
        "## scaleout (issue #13): durability modes, one node and a 3-node R3 cluster\n\n",
    );
    let secs: f64 = env_or("SWITCHYARD_BENCH_SCALEOUT_SECS", 3.0);
    let deps = [
        Deployment::start("1 node, R1, sync_interval default (2m)", 1, "2m")?,
        Deployment::start("1 node, R1, sync_interval always", 1, "always")?,
        Deployment::start("3 nodes, R3, sync_interval default (2m)", 3, "2m")?,
        Deployment::start("3 nodes, R3, sync_interval always", 3, "always")?,
    ];
    let mut readies = Vec::new();
    for d in &deps {
        readies.push(ready(d).await?);
    }
    // Durability modes side by side: three interleaved rounds, the median of each.
    eprintln!("bench: scaleout: durability modes");
    let mut rates = vec![Vec::new(); deps.len()];
    for _ in 0..3 {
        for (k, (_, js)) in readies.iter().enumerate() {
            rates[k].push(publish_for(js, secs).await?);
        }
    }
    writeln!(out, "Acked JetStream publishes, 64 in flight, 180-byte messages, {secs} s per measurement, three interleaved rounds (median; all rounds in brackets). Every node on this machine (one disk, 2 cores shared with everything else), so R3 pays three copies on the same CPU and disk.\n")?;
    writeln!(
        out,
        "| deployment | acked publishes/s | of R1 default |\n|---|---|---|"
    )?;
    let base = median(&mut rates[0].clone());
    for (k, d) in deps.iter().enumerate() {
        let m = median(&mut rates[k].clone());
        writeln!(
            out,
            "| {} | {m:.0} ({}) | {:.2} |",
            d.label,
            rates[k]
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            m / base
        )?;
    }
    // Only the two default-sync deployments are used for commands.
    let pg = super::url_port(&e2e::admin_url()).and_then(super::postmaster_pid);
    let mut runs = Vec::new();
    runs.push(
        command_run(
            "1 node (R1), 1 process".into(),
            &deps[0],
            &readies[0].1,
            &readies[0].0,
            1,
            pg,
        )
        .await?,
    );
    for k in 1..=3 {
        runs.push(
            command_run(
                format!(
                    "3 nodes (R3), {k} process{}",
                    if k == 1 { "" } else { "es" }
                ),
                &deps[2],
                &readies[2].1,
                &readies[2].0,
                k,
                pg,
            )
            .await?,
        );
    }
    let total: usize = env_or("SWITCHYARD_BENCH_SCALEOUT_COMMANDS", 10_000);
    writeln!(out, "\nShop add-item commands through `switchyard run shop` processes (release binary, each its own process, NATS_URL listing every node, SWITCHYARD_REPLICAS as the deployment), {total} commands from 64 concurrent clients (100 carts each); the raw rate is the same deployment's acked-publish rate (64 in flight) measured right before. Add 100: 100 add-items to one cart one after another, against 100 x (request-reply to a bare responder + acked publish with the expected-sequence header) right after; medians.\n")?;
    writeln!(out, "| deployment | raw acked publish/s | commands/s | commands / raw | add 100 (ms) | raw 100 (ms) | add 100 / raw 100 |\n|---|---|---|---|---|---|---|")?;
    for r in &runs {
        writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | {:.2} |",
            r.label,
            r.raw_rate,
            r.rate,
            r.rate / r.raw_rate,
            r.add100_ms,
            r.raw100_ms,
            r.ratio100
        )?;
    }
    writeln!(out, "\nCPU time per command during the throughput run (user + system from /proc/<pid>/stat; PostgreSQL: the postmaster of DATABASE_URL's port and its backends{}):\n", if pg.is_none() { ", not found here, so 0" } else { "" })?;
    writeln!(out, "| deployment | switchyard processes (us) | nats-servers (us) | PostgreSQL (us) | bench clients (us) | total (us) |\n|---|---|---|---|---|---|")?;
    for r in &runs {
        let c = r.per_cmd;
        writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            r.label,
            c.switchyard * 1e6,
            c.nats * 1e6,
            c.pg * 1e6,
            c.bench * 1e6,
            (c.switchyard + c.nats + c.pg + c.bench) * 1e6
        )?;
    }
    // On paper: three machines, each with this machine's cores, one nats node and one switchyard
    // process on each, PostgreSQL on one of them, the clients elsewhere. Every node stores every
    // message (R3), so each carries a third of the nats CPU (leaders spread; one SHOP leader makes
    // its node busier than that), a third of the switchyard CPU, and one carries PostgreSQL too.
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get) as f64;
    if let Some(r3) = runs.last() {
        let c = r3.per_cmd;
        let busiest = c.switchyard / 3.0 + c.nats / 3.0 + c.pg;
        let others = c.switchyard / 3.0 + c.nats / 3.0;
        let here = c.switchyard + c.nats + c.pg + c.bench;
        writeln!(out, "\nOn paper, from the last row (3 processes, R3): this machine has {cores:.0} cores, so spending {:.0} us of CPU per command it could reach at most {:.0} commands/s if nothing else ran (measured: {:.0}). On three such machines (one nats node and one switchyard process each, PostgreSQL on one, clients elsewhere) the PostgreSQL machine spends {:.0} us per command and the other two {:.0} us: at most about {:.0} commands/s, {:.1}x the one-machine bound, before the network's round trips (which add latency, not CPU) and the SHOP leader's extra share.\n",
            here * 1e6, cores / here, r3.rate, busiest * 1e6, others * 1e6, cores / busiest, (cores / busiest) / (cores / here))?;
    }
    drop(readies);
    drop(deps);
    Ok(out)
}
