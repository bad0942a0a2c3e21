//! `make bench`: the benchmark program (not a test). Starts its own nats-server (like the tests) and
//! creates its own databases on `DATABASE_URL`'s server, runs the services in-process, and prints
//! Markdown tables. Every figure is measured in this run; aims are stated as ratios against raw
//! baselines measured in the same run.
//!
//! Settings: `SWITCHYARD_BENCH_REPS` (default 100), `SWITCHYARD_BENCH_SHARDS` (default
//! `1,10,100,1000,10000`), `SWITCHYARD_BENCH_ONLY` (comma list of sections: shop,dispatch,engine,cluster,dfs,scaleout;
//! and `replay`, only when named: the projection's replay against the plain loop in interleaved rounds).

use anyhow::Context as _;

/// mimalloc: the command path allocates many small short-lived buffers (messages, JSON), which
/// glibc's allocator served at about 6 % of the CPU under load (`BENCHMARKS.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
/// The contexts' sections (moved out of the production crates).
#[path = "bench/cluster.rs"]
mod cluster;
#[path = "bench/dfs.rs"]
mod dfs;
#[path = "bench/dispatch.rs"]
mod dispatch;
#[path = "bench/engine.rs"]
mod engine;
#[path = "bench/scaleout.rs"]
mod scaleout;

use e2e::{Client, NatsServer, Services, TestDb};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::json;
use std::fmt::Write as _;
use std::future::IntoFuture as _;
use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// CPU seconds (user + system) of a process and, with `children`, of its direct children.
pub(crate) fn cpu_seconds(pid: u32, children: bool) -> f64 {
    let stat = |pid: &str| -> Option<(u32, f64)> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
        let ppid = f.get(1)?.parse().ok()?;
        let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some((ppid, ticks / 100.0))
    };
    let mut total = stat(&pid.to_string()).map_or(0.0, |s| s.1);
    if children {
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                if let Some(name) = e.file_name().to_str() {
                    if name.bytes().all(|b| b.is_ascii_digit()) {
                        if let Some((ppid, t)) = stat(name) {
                            if ppid == pid {
                                total += t;
                            }
                        }
                    }
                }
            }
        }
    }
    total
}

/// The postmaster serving `DATABASE_URL`'s port (started by infra/up.sh with `-p <port>`), if it
/// can be found; its backends are its children.
pub(crate) fn postmaster_pid(port: u16) -> Option<u32> {
    let flag = format!("-p\0{port}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.contains("postgres") && cmd.contains(&flag)).then_some(pid)
    })
}

/// The port of a `scheme://[user@]host:port/...` URL.
pub(crate) fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let hostport = rest.split('/').next()?;
    let hostport = hostport.rsplit_once('@').map_or(hostport, |x| x.1);
    hostport.rsplit_once(':')?.1.parse().ok()
}

/// CPU time used so far, in microseconds: by this process (the clients and the in-process
/// services), by the bench's nats-server, and by the PostgreSQL of `DATABASE_URL` (its postmaster
/// and backends).
#[derive(Clone, Copy, Default)]
struct Cpu {
    process: f64,
    nats: f64,
    postgres: f64,
}

impl Cpu {
    fn now(nats_pid: Option<u32>) -> Self {
        static POSTMASTER: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
        let pg = *POSTMASTER.get_or_init(|| url_port(&e2e::admin_url()).and_then(postmaster_pid));
        Self {
            process: cpu_seconds(std::process::id(), false) * 1e6,
            nats: nats_pid.map_or(0.0, |p| cpu_seconds(p, false)) * 1e6,
            postgres: pg.map_or(0.0, |p| cpu_seconds(p, true)) * 1e6,
        }
    }
}

/// CPU used over measured windows, and the commands run in them.
#[derive(Clone, Copy, Default)]
struct CpuTally {
    used: Cpu,
    commands: f64,
    secs: f64,
}

impl CpuTally {
    /// Adds the window from `before` to now, `commands` commands in `secs` seconds.
    fn add(&mut self, before: Cpu, nats_pid: Option<u32>, commands: f64, secs: f64) {
        let after = Cpu::now(nats_pid);
        let d = |a: f64, b: f64| (a - b).max(0.0);
        self.used.process += d(after.process, before.process);
        self.used.nats += d(after.nats, before.nats);
        self.used.postgres += d(after.postgres, before.postgres);
        self.commands += commands;
        self.secs += secs;
    }

    /// `process / nats-server / PostgreSQL us per command (cores used)`.
    fn per_command(&self) -> String {
        let (c, s, u) = (self.commands.max(1.0), self.secs.max(1e-9), self.used);
        format!(
            "{:.0} / {:.0} / {:.0} us ({:.2} / {:.2} / {:.2} cores)",
            u.process / c,
            u.nats / c,
            u.postgres / c,
            u.process / s / 1e6,
            u.nats / s / 1e6,
            u.postgres / s / 1e6
        )
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Acked JetStream publishes per second with 64 in flight (`total` of them).
async fn publish_64(js: &async_nats::jetstream::Context, total: usize) -> anyhow::Result<f64> {
    let payload = bytes::Bytes::from(vec![b'x'; 180]);
    let t = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for i in 0..total {
        if inflight.len() >= 64 {
            inflight.next().await.context("ack")??;
        }
        let ack = js
            .publish(format!("bench.js.many.{}", i % 1000), payload.clone())
            .await?;
        inflight.push(ack.into_future());
    }
    while let Some(a) = inflight.next().await {
        a?;
    }
    Ok(total as f64 / t.elapsed().as_secs_f64())
}

/// A bare responder on `subject` that replies with the request's body.
async fn spawn_echo(
    nats: &async_nats::Client,
    subject: &'static str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut sub = nats.subscribe(subject).await?;
    let responder = nats.clone();
    Ok(tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let _ = responder.publish(r, m.payload).await;
            }
        }
    }))
}

struct Baselines {
    rr_us: f64,
    pub_us: f64,
    pub_expected_us: f64,
    pub64_rate: f64,
}

async fn baselines(nats: &async_nats::Client, n: usize) -> anyhow::Result<Baselines> {
    // request-reply against an echo responder
    let echo = spawn_echo(nats, "bench.echo").await?;
    let payload = bytes::Bytes::from(vec![b'x'; 180]);
    let mut rr = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        nats.request("bench.echo", payload.clone()).await?;
        rr.push(us(t.elapsed()));
    }
    echo.abort();
    let js = async_nats::jetstream::new(nats.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.js.>".into()],
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut p1 = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        js.publish(format!("bench.js.one.{}", i % 100), payload.clone())
            .await?
            .await?;
        p1.push(us(t.elapsed()));
    }
    let mut pe = Vec::with_capacity(n);
    let mut last = 0;
    for _ in 0..n {
        let t = Instant::now();
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(payload.clone())
            .message_id(uuid::Uuid::now_v7().to_string())
            .expected_last_subject_sequence(last);
        let ack = js.send_publish("bench.js.expected", msg).await?.await?;
        last = ack.sequence;
        pe.push(us(t.elapsed()));
    }
    let pub64_rate = publish_64(&js, 20 * n).await?;
    Ok(Baselines {
        rr_us: median(&mut rr),
        pub_us: median(&mut p1),
        pub_expected_us: median(&mut pe),
        pub64_rate,
    })
}

/// A bare responder and a JetStream context for [`raw_sequence`].
struct RawSequence {
    js: async_nats::jetstream::Context,
    echo: tokio::task::JoinHandle<()>,
}

impl RawSequence {
    async fn start(nats: &async_nats::Client) -> anyhow::Result<Self> {
        let echo = spawn_echo(nats, "bench.echo.seq").await?;
        nats.flush().await?;
        Ok(Self {
            js: async_nats::jetstream::new(nats.clone()),
            echo,
        })
    }
}

impl Drop for RawSequence {
    fn drop(&mut self) {
        self.echo.abort();
    }
}

/// 100 x (request-reply + acked publish with the expected-sequence header), one after another.
async fn raw_sequence(
    nats: &async_nats::Client,
    raw: &RawSequence,
    subject: &str,
) -> anyhow::Result<()> {
    let payload = bytes::Bytes::from(vec![b'x'; 180]);
    let mut last = 0;
    for _ in 0..100 {
        nats.request("bench.echo.seq", payload.clone()).await?;
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(payload.clone())
            .message_id(uuid::Uuid::now_v7().to_string())
            .expected_last_subject_sequence(last);
        last = raw
            .js
            .send_publish(subject.to_string(), msg)
            .await?
            .await?
            .sequence;
    }
    Ok(())
}

/// The bare command pipeline, without any of Switchyard's code: 64 clients each send a request;
/// a responder (a runtime and a connection of its own, as the services have) appends the body with
/// `Nats-Expected-Last-Subject-Sequence` on the cart's subject and `Nats-Msg-Id`, waits for the
/// ack and replies with the sequence. What every command must cost at least (three message routings
/// and one store), without decoding, deciding, caching or projecting. Returns commands per second.
async fn bare_pipeline(
    nats_url: &str,
    client: &async_nats::Client,
    total: usize,
    prefix: &str,
) -> anyhow::Result<f64> {
    let prefix = prefix.to_string();
    let url = nats_url.to_string();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let responder = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let conns: usize = env_or("SWITCHYARD_BENCH_BARE_CONNS", 1).max(1);
            let first = async_nats::connect(&url).await?;
            async_nats::jetstream::new(first.clone())
                .create_stream(async_nats::jetstream::stream::Config {
                    name: "BENCHCMD".into(),
                    subjects: vec!["bench.cmdev.>".into()],
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let last = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
                String,
                u64,
            >::new()));
            let mut serving = Vec::new();
            for k in 0..conns {
                let nats = if k == 0 {
                    first.clone()
                } else {
                    async_nats::connect(&url).await?
                };
                let js = async_nats::jetstream::new(nats.clone());
                let mut sub = nats.queue_subscribe("bench.cmd.*", "bench".into()).await?;
                nats.flush().await?;
                let last = last.clone();
                serving.push(tokio::spawn(async move {
                    while let Some(m) = sub.next().await {
                        let (js, nats, last) = (js.clone(), nats.clone(), last.clone());
                        tokio::spawn(async move {
                            let cart = m
                                .subject
                                .as_str()
                                .rsplit('.')
                                .next()
                                .unwrap_or_default()
                                .to_string();
                            let subject = format!("bench.cmdev.{cart}");
                            let expected = last
                                .lock()
                                .map(|l| l.get(&cart).copied().unwrap_or(0))
                                .unwrap_or(0);
                            let msg = async_nats::jetstream::message::PublishMessage::build()
                                .payload(m.payload.clone())
                                .message_id(uuid::Uuid::now_v7().to_string())
                                .expected_last_subject_sequence(expected);
                            let Ok(ack) = js.send_publish(subject, msg).await else {
                                return;
                            };
                            let Ok(ack) = ack.await else { return };
                            if let Ok(mut l) = last.lock() {
                                l.insert(cart, ack.sequence);
                            }
                            if let Some(reply) = m.reply {
                                let _ = nats
                                    .publish(reply, format!("{{\"seq\":{}}}", ack.sequence).into())
                                    .await;
                            }
                        });
                    }
                }));
            }
            let _ = ready_tx.send(());
            let _ = stop_rx.await;
            for s in serving {
                s.abort();
            }
            Ok(())
        })
    });
    ready_rx.await.context("the bare responder did not start")?;
    // Its subscription is sent, but the server may not have it yet (a flush does not wait for
    // the server): ask until the responder answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client
            .request(
                format!("bench.cmd.{prefix}-probe"),
                serde_json::to_vec(&add(&format!("{prefix}-probe"), "probe"))?.into(),
            )
            .await
        {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "the bare responder is not subscribed yet");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => anyhow::bail!("the bare responder does not answer: {e}"),
        }
    }
    // The clients do exactly what `shop_throughput`'s do (they share the two cores with the
    // responder): build and serialise an add-item body per request, and read `seq` off the reply.
    let client = Client {
        nats: client.clone(),
    };
    let rate = with_64_clients(total, move |w, i| {
        let (c, prefix) = (client.clone(), prefix.clone());
        async move {
            c.command_seq(
                &format!("bench.cmd.{prefix}-{w}-{}", i % 100),
                &add(&format!("{prefix}-{w}-{}", i % 100), &format!("i-{i}")),
            )
            .await?;
            Ok(())
        }
    })
    .await;
    let _ = stop_tx.send(());
    let rate = rate?;
    responder
        .join()
        .map_err(|_| anyhow::anyhow!("the bare responder panicked"))??;
    Ok(rate)
}

/// Transactions committed in the database of `conn` so far, and the updates of the projections'
/// checkpoint rows (one per projection batch): PostgreSQL's statistics, which lag by up to their
/// flush interval, so the bench reads them after a pause.
async fn db_commits(conn: &mut sqlx::PgConnection) -> anyhow::Result<(i64, i64)> {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await?;
    let batches: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(n_tup_upd), 0)::bigint FROM pg_stat_user_tables WHERE schemaname = 'runtime' AND relname = 'checkpoints'",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((n, batches))
}

/// Waits (at most 2 minutes) until the shop's projection holds everything stream `SHOP` holds.
async fn shop_caught_up(client: &Client, conn: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    let last = client.stream_len("SHOP").await? as i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let cp: i64 =
            sqlx::query_scalar("SELECT seq FROM runtime.checkpoints WHERE projection = 'shop_dht'")
                .fetch_one(&mut *conn)
                .await?;
        if cp >= last || Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `total` add-item commands from 64 concurrent clients (100 carts each, named after `prefix`);
/// commands per second.
async fn shop_throughput(client: &Client, total: usize, prefix: &str) -> anyhow::Result<f64> {
    let (client, prefix) = (client.clone(), prefix.to_string());
    with_64_clients(total, move |w, i| {
        let (c, prefix) = (client.clone(), prefix.clone());
        async move {
            c.command_seq(
                "shop.cmd.add-item",
                &add(&format!("{prefix}-{w}-{}", i % 100), &format!("i-{i}")),
            )
            .await?;
            Ok(())
        }
    })
    .await
}

/// Runs `total / 64` requests one after another in each of 64 concurrent clients (`send(client,
/// i)` makes request `i` of a client); requests per second.
async fn with_64_clients<F, Fut>(total: usize, send: F) -> anyhow::Result<f64>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let send = send.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..total / 64 {
                send(w, i).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok((total / 64 * 64) as f64 / t.elapsed().as_secs_f64())
}

fn add(customer: &str, item: &str) -> serde_json::Value {
    json!({"customer_id": customer, "item_id": item, "offered_price": 9.99, "item_count": 1, "special_sale": null, "sale_expiration": null})
}

async fn shop_section(out: &mut String) -> anyhow::Result<()> {
    let reps: usize = env_or("SWITCHYARD_BENCH_REPS", 100);
    let shards: Vec<u32> = std::env::var("SWITCHYARD_BENCH_SHARDS")
        .unwrap_or_else(|_| "1,10,100,1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let nats = NatsServer::start()?;
    let client = Client::connect(&nats.url()).await?;
    let b = baselines(&client.nats, 2000).await?;
    let raw = RawSequence::start(&client.nats).await?;
    let budget_us = 100.0 * (b.rr_us + b.pub_expected_us);
    writeln!(out, "## shop\n")?;
    writeln!(out, "Raw baselines (same run, same machine):\n")?;
    writeln!(out, "| baseline | figure |\n|---|---|")?;
    writeln!(
        out,
        "| NATS request-reply round trip, p50 | {:.0} us |",
        b.rr_us
    )?;
    writeln!(
        out,
        "| JetStream acked publish, 1 in flight, p50 | {:.0} us |",
        b.pub_us
    )?;
    writeln!(
        out,
        "| JetStream acked publish with expected-sequence header, 1 in flight, p50 | {:.0} us |",
        b.pub_expected_us
    )?;
    writeln!(
        out,
        "| JetStream acked publish, 64 in flight | {:.0} msg/s |",
        b.pub64_rate
    )?;
    writeln!(out, "\nAdd 100 products one after another, then check out 100 products, through NATS (request, durable append, reply); medians over {reps} repetitions. Right after each add 100, its raw equivalent runs: 100 x (request-reply against a bare responder + acked publish with the expected-sequence header), one after another; the ratio is the median of the per-repetition ratios (aim <= 1.3). From the p50s above, 100 x raw = {:.1} ms.\n", budget_us / 1000.0)?;
    writeln!(out, "| shards | add 100 (ms) | raw 100 (ms) | add 100 / raw 100 | checkout 100 (us) | original add 100 (ms) | original checkout (us) |\n|---|---|---|---|---|---|---|")?;
    let original = [
        (1u32, 95.619, 1067),
        (10, 94.262, 1053),
        (100, 94.381, 1151),
        (1000, 92.164, 1062),
        (10000, 91.372, 1226),
    ];
    let mut adds = Vec::new();
    let mut last_db = None;
    let mut last_svc = None;
    for &n in &shards {
        // One deployment at a time: two deployments with different databases on one NATS would share
        // (and fight over) the projection's durable consumer.
        drop(last_svc.take());
        let db = TestDb::create().await?;
        let mut cfg = switchyard::Configuration::with_runtime(runtime::Config::for_urls(
            &nats.url(),
            &db.url,
        ))?;
        cfg.shop.shards = n;
        let svc = Services::start_configured(cfg, &["shop"]).await?;
        let mut add_ms = Vec::new();
        let mut raw_ms = Vec::new();
        let mut ratios = Vec::new();
        let mut co_us = Vec::new();
        for r in 0..reps {
            let customer = format!("bench-{n}-{r}");
            let t = Instant::now();
            for i in 0..100 {
                client
                    .command_seq("shop.cmd.add-item", &add(&customer, &format!("item-{i}")))
                    .await?;
            }
            let a = t.elapsed().as_secs_f64() * 1000.0;
            // The raw equivalent, right after: 100 x (request-reply + acked publish with the
            // expected sequence), so that the ratio does not drift with the machine.
            let t = Instant::now();
            raw_sequence(&client.nats, &raw, &format!("bench.js.add.{n}.{r}")).await?;
            let raw_ms_r = t.elapsed().as_secs_f64() * 1000.0;
            add_ms.push(a);
            raw_ms.push(raw_ms_r);
            ratios.push(a / raw_ms_r);
            let t = Instant::now();
            let v = client
                .request("shop.cmd.checkout", &json!({"customer_id": customer}))
                .await?
                .ok();
            co_us.push(us(t.elapsed()));
            anyhow::ensure!(
                v["items"].as_array().map(Vec::len) == Some(100),
                "checkout of 100 products"
            );
        }
        let a = median(&mut add_ms);
        let raw_a = median(&mut raw_ms);
        let ratio = median(&mut ratios);
        let c = median(&mut co_us);
        adds.push(a);
        let (oa, oc) = original
            .iter()
            .find(|o| o.0 == n)
            .map_or((f64::NAN, 0), |o| (o.1, o.2));
        writeln!(
            out,
            "| {n} | {a:.1} | {raw_a:.1} | {ratio:.2} | {c:.0} | {oa:.1} | {oc} |"
        )?;
        last_db = Some(db);
        last_svc = Some(svc);
    }
    let flat =
        adds.iter().cloned().fold(0.0, f64::max) / adds.iter().cloned().fold(f64::MAX, f64::min);
    writeln!(
        out,
        "\nFlatness across shard counts (slowest / fastest add 100): {flat:.2}\n"
    )?;
    drop(last_svc);
    drop(last_db);

    // Command throughput: 64 concurrent clients, against the bare pipeline first.
    let total = env_or("SWITCHYARD_BENCH_THROUGHPUT_COMMANDS", 20_000usize);
    // The raw rate drifts with the machine: measured again here and after the throughput runs,
    // and the best of the three is the baseline (the least favourable to the ratios).
    let js = async_nats::jetstream::new(client.nats.clone());
    let mut raw64 = vec![b.pub64_rate, publish_64(&js, 40_000).await?];
    let commands = (total / 64 * 64) as f64;
    // `SWITCHYARD_BENCH_THROUGHPUT_ROUNDS` (default 1) rounds of: the bare pipeline, the shop with
    // its projection running, the shop with it paused; each ratio is taken within its round, and
    // the medians are reported (the machine drifts between rounds).
    let rounds = env_or("SWITCHYARD_BENCH_THROUGHPUT_ROUNDS", 1usize).max(1);
    let db = TestDb::create().await?;
    let mut config = runtime::Config::for_urls(&nats.url(), &db.url);
    // `SWITCHYARD_BENCH_LINGER_MS`: the projection's linger for the throughput runs (an experiment
    // knob; the default is the service's).
    if let Ok(ms) = std::env::var("SWITCHYARD_BENCH_LINGER_MS") {
        config.projection_linger = Duration::from_millis(ms.parse()?);
    }
    // `SWITCHYARD_BENCH_SYNC_COMMIT=off`: projection commits that do not wait for the WAL flush.
    if std::env::var("SWITCHYARD_BENCH_SYNC_COMMIT").is_ok_and(|v| v == "off") {
        config.projection_sync_commit = false;
    }
    let svc = Services::start(config, &["shop"]).await?;
    let (mut bares, mut rates, mut pauseds) = (Vec::new(), Vec::new(), Vec::new());
    let (mut bare_cpu, mut rate_cpu, mut paused_cpu) = <(CpuTally, CpuTally, CpuTally)>::default();
    // While the projection ran: transactions committed in the shop's database, and its batches.
    let mut running_commits = 0i64;
    let mut running_batches = 0i64;
    let mut conn = {
        use sqlx::Connection as _;
        sqlx::PgConnection::connect(&db.url).await?
    };
    for round in 0..rounds {
        let cpu = Cpu::now(nats.pid());
        let bare = bare_pipeline(&nats.url(), &client.nats, total, &format!("b{round}")).await?;
        bare_cpu.add(cpu, nats.pid(), commands, commands / bare);
        eprintln!("bench: shop throughput (round {round})");
        let commits = db_commits(&mut conn).await?;
        let cpu = Cpu::now(nats.pid());
        let rate = shop_throughput(&client, total, &format!("tp{round}")).await?;
        rate_cpu.add(cpu, nats.pid(), commands, commands / rate);

        // Let the projection catch up, then the same with it paused (the bench holds its checkpoint
        // row, so the projector waits): what the command path alone reaches.
        shop_caught_up(&client, &mut conn).await?;
        let (c, b) = db_commits(&mut conn).await?;
        running_commits += c - commits.0;
        running_batches += b - commits.1;
        let paused = {
            use sqlx::Connection as _;
            let mut tx = conn.begin().await?;
            sqlx::query(
                "SELECT seq FROM runtime.checkpoints WHERE projection = 'shop_dht' FOR UPDATE",
            )
            .execute(&mut *tx)
            .await?;
            eprintln!("bench: shop throughput, projection paused (round {round})");
            let cpu = Cpu::now(nats.pid());
            let rate = shop_throughput(&client, total, &format!("tq{round}")).await?;
            paused_cpu.add(cpu, nats.pid(), commands, commands / rate);
            tx.rollback().await?;
            rate
        };
        shop_caught_up(&client, &mut conn).await?;
        bares.push(bare);
        rates.push(rate);
        pauseds.push(paused);
    }
    let ratios = |v: &[f64]| -> Vec<f64> { v.iter().zip(&bares).map(|(r, b)| r / b).collect() };
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (rate_ratios, paused_ratios) = (ratios(&rates), ratios(&pauseds));
    let rate = median(&mut rates.clone());
    let paused = median(&mut pauseds.clone());
    let bare = median(&mut bares.clone());
    let rate_ratio = median(&mut rate_ratios.clone());
    let paused_ratio = median(&mut paused_ratios.clone());
    raw64.push(publish_64(&js, 40_000).await?);
    let best64 = raw64.iter().cloned().fold(0.0, f64::max);
    writeln!(
        out,
        "| throughput and lag | figure | ratio |\n|---|---|---|"
    )?;
    writeln!(out, "| raw JetStream acked publish, 64 in flight: three measurements in this section ({}) msg/s; the best is the baseline below | {best64:.0} msg/s | |", raw64.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "))?;
    writeln!(out, "| shop add-item commands, 64 concurrent clients (100 carts each), projection running; median of {rounds} round(s) | {rate:.0} cmd/s | {:.2} of raw 64-in-flight acked publish; {rate_ratio:.2} of the bare pipeline (per round: {}) |", rate / best64, list(&rate_ratios))?;
    writeln!(out, "| shop add-item commands, 64 concurrent clients, projection paused | {paused:.0} cmd/s | {:.2} of raw 64-in-flight acked publish; {paused_ratio:.2} of the bare pipeline (per round: {}) |", paused / best64, list(&paused_ratios))?;
    writeln!(out, "| bare pipeline, 64 concurrent clients: request, acked publish with expected sequence, reply; no Switchyard code | {bare:.0} cmd/s | {:.2} of raw 64-in-flight acked publish |", bare / best64)?;
    writeln!(out, "| CPU per command, 64 clients, projection running: this process (clients and service) / nats-server / PostgreSQL, all rounds | {} | |", rate_cpu.per_command())?;
    writeln!(
        out,
        "| CPU per command, 64 clients, projection paused | {} | |",
        paused_cpu.per_command()
    )?;
    writeln!(out, "| events per projection batch, from the start of a running round until the projection caught up (its checkpoint's updates); all transactions committed in its database meanwhile (the batches, the live publisher's and `min_seq` waits' reads, the bench's polls) | {:.1} ({running_batches} batches); {running_commits} transactions | |", rate_cpu.commands / running_batches.max(1) as f64)?;
    writeln!(
        out,
        "| CPU per command, bare pipeline (this process: clients and bare responder) | {} | |",
        bare_cpu.per_command()
    )?;
    // Projection lag at a steady load: 2,000 commands/s for 5 s; every 20th command's visibility delay.
    let steady = env_or("SWITCHYARD_BENCH_STEADY_RATE", 2000u64);
    let mut vis = Vec::new();
    let mut lags = Vec::new();
    let interval = Duration::from_secs_f64(16.0 / steady as f64);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut workers = Vec::new();
    for w in 0..16 {
        let c = client.clone();
        workers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            let mut vis = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                let r = c.request("shop.cmd.add-item", &add(&format!("steady-{w}-{}", i % 20), &format!("s-{i}"))).await?.ok();
                if i.is_multiple_of(20) {
                    let t = Instant::now();
                    c.request("shop.query.cart", &json!({"customer_id": format!("steady-{w}-{}", i % 20), "min_seq": r["seq"]})).await?.ok();
                    vis.push(us(t.elapsed()));
                }
                i += 1;
            }
            Ok::<_, anyhow::Error>(vis)
        }));
    }
    while Instant::now() < deadline {
        let h = client.request("sys.query.health", &json!({})).await?.body;
        if let Some(l) = h["services"]["shop"]["projections"]["shop_dht"]["lag"].as_f64() {
            lags.push(l);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in workers {
        vis.extend(w.await??);
    }
    writeln!(out, "| read-model visibility after a command at {steady} cmd/s (query with min_seq), p50 / p99 | {:.0} us / {:.0} us | |", pct(&mut vis.clone(), 0.5), pct(&mut vis, 0.99))?;
    writeln!(out, "| projection lag sampled every 100 ms at {steady} cmd/s, median / max | {:.0} / {:.0} events | |", median(&mut lags.clone()), lags.iter().cloned().fold(0.0, f64::max))?;
    drop(svc);
    drop(db);
    let ab = group_commit_ab(&client, &nats.url(), total).await?;
    let (off, on) = (
        median(&mut ab.rate[0].clone()),
        median(&mut ab.rate[1].clone()),
    );
    let (lone_off, lone_on) = (
        median(&mut ab.lone_us[0].clone()),
        median(&mut ab.lone_us[1].clone()),
    );
    writeln!(out, "\nGroup commit (`SWITCHYARD_GROUP_COMMIT`), A/B in this run: the same database, the shop service restarted with it off and on, alternately ({} rounds, median; all rounds in brackets), projection running, {total} add-item commands from 64 concurrent clients per round. Lone command: one add-item at a time, 100 in a row, per command.\n", ab.rate[0].len())?;
    writeln!(out, "| measure | group commit off | group commit on | on / off | on / bare pipeline |\n|---|---|---|---|---|")?;
    let all = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        out,
        "| commands/s, 64 clients | {off:.0} ({}) | {on:.0} ({}) | {:.2} | {:.2} |",
        all(&ab.rate[0]),
        all(&ab.rate[1]),
        on / off,
        on / bare
    )?;
    writeln!(
        out,
        "| lone command latency (us) | {lone_off:.0} ({}) | {lone_on:.0} ({}) | {:.2} | |",
        all(&ab.lone_us[0]),
        all(&ab.lone_us[1]),
        lone_on / lone_off
    )?;
    writeln!(
        out,
        "| events per acknowledgement (on) | 1 | {:.1} | | |\n",
        ab.events_per_ack
    )?;

    // Projection throughput: replay the whole SHOP stream into a fresh database.
    // Two figures: from the start of the process until it is ready (connecting, migrations and
    // creating the consumer included), and the projection alone: from its first committed batch
    // to its last, read off the checkpoint row every 2 ms by another connection.
    eprintln!("bench: shop replay");
    let events = client.stream_len("SHOP").await?;
    let last_seq = {
        let js = async_nats::jetstream::new(client.nats.clone());
        js.get_stream("SHOP")
            .await?
            .info()
            .await?
            .state
            .last_sequence
    };
    let (from_start, alone) = replay_projection(&nats.url(), last_seq, events).await?;
    writeln!(out, "| projection replay into PostgreSQL ({events} events), from process start to ready (connecting, migrations, consumer creation included) | {from_start:.0} events/s | |")?;
    if let Some(rate) = alone {
        writeln!(out, "| projection replay into PostgreSQL, the projection alone: events after its first committed batch / time to its last (aim >= 40,000; the issue says a plain loop of fetch 500, one transaction, ack reaches about 53,000 on its machine; the same-run baseline is the next row) | {rate:.0} events/s | |")?;
    }
    let plain = plain_projection_loop(&client.nats, last_seq).await?;
    writeln!(out, "| baseline, same run: a plain loop of fetch 500, one PostgreSQL transaction inserting them (seq, subject, payload), ack, over the same {events} events | {plain:.0} events/s | |")?;
    Ok(())
}

/// Group commit off and on, alternately, on one database (so that no run replays another's events).
struct GroupCommitAb {
    /// Commands per second, [off, on], per round.
    rate: [Vec<f64>; 2],
    /// Lone command latency in microseconds, [off, on], per round.
    lone_us: [Vec<f64>; 2],
    /// Events per acknowledgement with group commit on (from the stream's sequences and the
    /// number of acks the service logged: appends / (batches + single appends)).
    events_per_ack: f64,
}

async fn group_commit_ab(
    client: &Client,
    nats_url: &str,
    total: usize,
) -> anyhow::Result<GroupCommitAb> {
    let rounds: usize = env_or("SWITCHYARD_BENCH_GC_ROUNDS", 3);
    let db = TestDb::create().await?;
    let mut ab = GroupCommitAb {
        rate: [Vec::new(), Vec::new()],
        lone_us: [Vec::new(), Vec::new()],
        events_per_ack: f64::NAN,
    };
    let (mut appends, mut acks) = (0u64, 0u64);
    for round in 0..rounds {
        for (k, on) in [false, true].into_iter().enumerate() {
            eprintln!(
                "bench: shop group commit {} (round {round})",
                if on { "on" } else { "off" }
            );
            let mut cfg = runtime::Config::for_urls(nats_url, &db.url);
            cfg.group_commit = on;
            let svc = Services::start(cfg, &["shop"]).await?;
            wait_projection(client, &db.url).await?;
            let before = runtime::store::group_commit::totals();
            ab.rate[k].push(shop_throughput(client, total, &format!("gc{round}{k}")).await?);
            let t = runtime::store::group_commit::totals();
            // Counted over the throughput run only (the lone commands below are batches of one).
            let (a, b, e) = (
                t.appends - before.appends,
                t.batches - before.batches,
                t.batched - before.batched,
            );
            appends += a;
            acks += b + (a - e);
            wait_projection(client, &db.url).await?;
            let customer = format!("lone-{round}-{k}");
            let t = Instant::now();
            for i in 0..100 {
                client
                    .command_seq("shop.cmd.add-item", &add(&customer, &format!("item-{i}")))
                    .await?;
            }
            ab.lone_us[k].push(us(t.elapsed()) / 100.0);
            drop(svc);
        }
    }
    if acks > 0 {
        ab.events_per_ack = appends as f64 / acks as f64;
    }
    drop(db);
    Ok(ab)
}

/// Waits until the shop projection of `db_url` has applied the whole SHOP stream.
async fn wait_projection(client: &Client, db_url: &str) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(db_url).await?;
    let last = client.stream_len("SHOP").await? as i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let cp: i64 =
            sqlx::query_scalar("SELECT seq FROM runtime.checkpoints WHERE projection = 'shop_dht'")
                .fetch_optional(&pool)
                .await?
                .unwrap_or(0);
        if cp >= last || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.close().await;
    Ok(())
}

/// Replays the whole SHOP stream (`last_seq`, `events` events) into a fresh database with the shop
/// service: (events/s from process start to ready, events/s of the projection alone, from its
/// first committed batch to its last, read off the checkpoint row every 2 ms).
async fn replay_projection(
    nats_url: &str,
    last_seq: u64,
    events: u64,
) -> anyhow::Result<(f64, Option<f64>)> {
    replay_projection_with(nats_url, last_seq, events, true).await
}

/// [`replay_projection`], each batch's commit waiting for the WAL flush when `sync_commit`.
async fn replay_projection_with(
    nats_url: &str,
    last_seq: u64,
    events: u64,
    sync_commit: bool,
) -> anyhow::Result<(f64, Option<f64>)> {
    let db = TestDb::create().await?;
    let watcher = sqlx::PgPool::connect(&db.url).await?;
    let t = Instant::now();
    let mut config = runtime::Config::for_urls(nats_url, &db.url);
    config.projection_sync_commit = sync_commit;
    config.projection_batch = env_or("SWITCHYARD_BENCH_REPLAY_BATCH", config.projection_batch);
    let starting = tokio::spawn(Services::start(config, &["shop"]));
    let mut first: Option<(Instant, i64)> = None;
    let mut done = None;
    while done.is_none() && t.elapsed() < Duration::from_secs(120) {
        let seq: i64 =
            sqlx::query_scalar("SELECT seq FROM runtime.checkpoints WHERE projection = 'shop_dht'")
                .fetch_optional(&watcher)
                .await
                .ok()
                .flatten()
                .unwrap_or(0);
        let now = Instant::now();
        if seq > 0 && first.is_none() {
            first = Some((now, seq));
        }
        if seq >= last_seq as i64 {
            done = Some(now);
        } else {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let svc = starting.await??;
    let from_start = events as f64 / t.elapsed().as_secs_f64();
    let alone = match (first, done) {
        (Some((t0, s0)), Some(t1)) => {
            Some((last_seq as i64 - s0) as f64 / (t1 - t0).as_secs_f64().max(1e-9))
        }
        _ => None,
    };
    watcher.close().await;
    drop(svc);
    drop(db);
    Ok((from_start, alone))
}

/// `SWITCHYARD_BENCH_ONLY=replay`: the projection's replay against the plain loop, alone and in
/// interleaved rounds (`SWITCHYARD_BENCH_REPLAY_ROUNDS`, 3), over one stream of
/// `SWITCHYARD_BENCH_REPLAY_EVENTS` (100,000) add-item events from 64 clients on 6,400 carts.
async fn replay_section(out: &mut String) -> anyhow::Result<()> {
    let rounds: usize = env_or("SWITCHYARD_BENCH_REPLAY_ROUNDS", 3);
    let total: usize = env_or("SWITCHYARD_BENCH_REPLAY_EVENTS", 100_000);
    let nats = NatsServer::start()?;
    let client = Client::connect(&nats.url()).await?;
    {
        let db = TestDb::create().await?;
        let svc =
            Services::start(runtime::Config::for_urls(&nats.url(), &db.url), &["shop"]).await?;
        shop_throughput(&client, total, "rp").await?;
        drop(svc);
    }
    let events = client.stream_len("SHOP").await?;
    let last_seq = async_nats::jetstream::new(client.nats.clone())
        .get_stream("SHOP")
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    writeln!(out, "## replay\n\nThe shop projection replaying {events} events into a fresh database (the projection alone: from its first committed batch to its last) against the plain loop (fetch 500, one transaction inserting them, ack; its commits wait for the WAL flush), interleaved, {rounds} rounds. The projection as configured by default (commits that wait for the WAL flush, like the plain loop's) and with `SWITCHYARD_PROJECTION_SYNC_COMMIT=off`.\n")?;
    writeln!(out, "| round | projection, default (events/s) | from process start (events/s) | projection, sync commit off (events/s) | plain loop (events/s) | default / plain | sync off / plain |\n|---|---|---|---|---|---|---|")?;
    let (mut ratios, mut async_ratios) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let (from_start, alone) = replay_projection(&nats.url(), last_seq, events).await?;
        let (_, async_alone) = replay_projection_with(&nats.url(), last_seq, events, false).await?;
        let plain = plain_projection_loop(&client.nats, last_seq).await?;
        let alone = alone.unwrap_or(f64::NAN);
        let async_alone = async_alone.unwrap_or(f64::NAN);
        ratios.push(alone / plain);
        async_ratios.push(async_alone / plain);
        writeln!(
            out,
            "| {r} | {alone:.0} | {from_start:.0} | {async_alone:.0} | {plain:.0} | {:.2} | {:.2} |",
            alone / plain,
            async_alone / plain
        )?;
    }
    writeln!(
        out,
        "\nMedian ratios: default {:.2}, sync commit off {:.2} (aim >= 1.0).\n",
        median(&mut ratios),
        median(&mut async_ratios)
    )?;
    Ok(())
}

/// The reference loop: an ephemeral pull consumer over the whole SHOP stream; fetch 500,
/// insert them into a plain table in one transaction, commit, ack each; events per second.
async fn plain_projection_loop(nats: &async_nats::Client, last_seq: u64) -> anyhow::Result<f64> {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    let db = TestDb::create().await?;
    let pool = sqlx::PgPool::connect(&db.url).await?;
    sqlx::query("CREATE TABLE plain_events (seq bigint PRIMARY KEY, subject text NOT NULL, payload bytea NOT NULL)")
        .execute(&pool)
        .await?;
    let js = async_nats::jetstream::new(nats.clone());
    let stream = js.get_stream("SHOP").await?;
    let t = Instant::now();
    let consumer = stream
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut done = 0u64;
    let mut events = 0u64;
    while done < last_seq {
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut msgs = Vec::with_capacity(500);
        while let Some(m) = batch.next().await {
            msgs.push(m.map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        if msgs.is_empty() {
            continue;
        }
        let (mut seqs, mut subjects, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
        for m in &msgs {
            let seq = m
                .info()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .stream_sequence;
            done = done.max(seq);
            seqs.push(seq as i64);
            subjects.push(m.subject.to_string());
            payloads.push(m.payload.to_vec());
        }
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO plain_events SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bytea[])",
        )
        .bind(&seqs)
        .bind(&subjects)
        .bind(&payloads)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        for m in &msgs {
            m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        events += msgs.len() as u64;
    }
    let rate = events as f64 / t.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}

fn main() -> anyhow::Result<()> {
    runtime::allocator::keep_freed_memory();
    run()
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let only: Option<Vec<String>> = std::env::var("SWITCHYARD_BENCH_ONLY")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let mut out = String::from("# Switchyard benchmarks\n\nCommand: `make bench` (release build; services in-process beside the clients, on one nats-server and PostgreSQL of this machine).\n\n");
    if wanted("shop") {
        eprintln!("bench: shop ...");
        if let Err(e) = shop_section(&mut out).await {
            writeln!(out, "shop section failed: {e:#}")?;
        }
    }
    if only
        .as_ref()
        .is_some_and(|o| o.iter().any(|x| x == "replay"))
    {
        eprintln!("bench: replay ...");
        if let Err(e) = replay_section(&mut out).await {
            writeln!(out, "replay section failed: {e:#}")?;
        }
    }
    // The other contexts' sections: each on a nats-server and a database of its own.
    for name in ["dispatch", "engine", "cluster", "dfs"] {
        if !wanted(name) {
            continue;
        }
        eprintln!("bench: {name} ...");
        let nats = NatsServer::start()?;
        let db = TestDb::create().await?;
        let section = match name {
            "dispatch" => dispatch::bench(&nats.url(), &db.url).await,
            "engine" => engine::bench(&nats.url(), &db.url).await,
            "cluster" => cluster::bench(&nats.url(), &db.url).await,
            _ => dfs::bench(&nats.url(), &db.url).await,
        };
        match section {
            Ok(text) => writeln!(out, "{text}\n")?,
            Err(e) => writeln!(out, "## {name}\n\nthe {name} benchmark failed: {e:#}\n")?,
        }
    }
    if wanted("scaleout") {
        eprintln!("bench: scaleout ...");
        match scaleout::section().await {
            Ok(text) => writeln!(out, "{text}\n")?,
            Err(e) => writeln!(out, "## scaleout\n\nthe scaleout benchmark failed: {e:#}\n")?,
        }
    }
    println!("{out}");
    Ok(())
}
