//! `make bench`, cluster part: delta delivery latency from command to subscriber at a steady
//! 1,000 commands/s, and `cluster.query.tree` fetch time for a manager of 50 workers x 10 nodes.
//! Baseline measured in the same run: a plain NATS request-reply round trip on the same server.
//!
//! `SWITCHYARD_BENCH_CLUSTER_COMMANDS` sets how many node reports are sent (default 5,000, i.e. 5 s),
//! `SWITCHYARD_BENCH_CLUSTER_RATE` their rate per second (default 1,000).

use futures::StreamExt;
use runtime::{Config, Ctx};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WORKERS: usize = 50;
const NODES_PER_WORKER: usize = 10;
const MANAGERS: usize = 8;

/// (delta subject, version) -> when the command was sent and how long its reply took.
type Sent = Arc<Mutex<HashMap<(String, u64), (Instant, Duration)>>>;

async fn setup_manager(client: &async_nats::Client, m: &str) -> anyhow::Result<u64> {
    call(
        client,
        "cluster.cmd.start-manager",
        &json!({"manager_id": m, "ip": "10.0.0.1", "port": 9000}),
    )
    .await?;
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let mut mapping = serde_json::Map::new();
    for w in 0..WORKERS {
        let wid = format!("w{w}");
        call(client, "cluster.cmd.connect-worker", &json!({"manager_id": m, "worker": {"id": wid, "name": format!("worker {w}"), "ip": "10.0.1.1", "port": 9100}})).await?;
        for n in 0..NODES_PER_WORKER {
            let nid = format!("n{w}-{n}");
            nodes.push(json!({"id": nid, "name": format!("node {w}/{n}"), "port": 9200 + n, "data_type": "Series", "dashboard_component": "LineChart", "capabilities": ["start", "stop"]}));
            if n > 0 {
                edges.push(json!([format!("n{w}-{}", n - 1), nid]));
            }
            mapping.insert(nid, json!(wid));
        }
    }
    call(
        client,
        "cluster.cmd.commit-graph",
        &json!({"manager_id": m, "nodes": nodes, "edges": edges, "mapping": mapping}),
    )
    .await?;
    let last = call(client, "cluster.cmd.execute", &json!({"manager_id": m})).await?;
    Ok(last["seq"].as_u64().unwrap_or(0))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "-".into();
    }
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

async fn call(client: &async_nats::Client, subject: &str, body: &Value) -> anyhow::Result<Value> {
    let r = runtime::client::request_json(client, subject, body).await;
    anyhow::ensure!(r.status == 200, "{subject}: {} {}", r.status, r.body);
    Ok(r.body)
}

/// Runs the benchmark against a NATS server and a PostgreSQL database (the cluster service is
/// started in this process) and returns a Markdown section.
///
/// # Errors
/// A dependency is unreachable or a command fails.
pub async fn bench(nats_url: &str, database_url: &str) -> anyhow::Result<String> {
    let commands: usize = std::env::var("SWITCHYARD_BENCH_CLUSTER_COMMANDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
        .max(10);
    let rate_per_s: u64 = std::env::var("SWITCHYARD_BENCH_CLUSTER_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 100_000);
    let ctx = Ctx::connect(Config::for_urls(nats_url, database_url)).await?;
    ctx.health.declare("cluster");
    ::cluster::start(&ctx).await?;
    tokio::time::timeout(Duration::from_secs(60), ctx.health.wait_ready())
        .await
        .map_err(|_| anyhow::anyhow!("cluster not ready in 60 s"))?;
    let client = runtime::ctx::connect_nats(nats_url, "cluster-bench").await?;

    // Baseline: a plain request-reply round trip on the same server.
    let echo_subject = format!("bench.cluster.echo.{}", uuid::Uuid::now_v7().simple());
    let mut echo = ctx.client.subscribe(echo_subject.clone()).await?;
    let responder = ctx.client.clone();
    tokio::spawn(async move {
        while let Some(m) = echo.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    let mut rtt = Vec::with_capacity(500);
    for _ in 0..500 {
        let t = Instant::now();
        client.request(echo_subject.clone(), "{}".into()).await?;
        rtt.push(t.elapsed());
    }
    rtt.sort();
    let rtt50 = pct(&rtt, 0.5);

    // MANAGERS managers of 50 workers x 10 nodes each, executing (one manager's commands are
    // serialised by its aggregate, so the steady rate is spread over several, as in a real cluster).
    let run = uuid::Uuid::now_v7().simple().to_string();
    let ids: Vec<String> = (0..MANAGERS).map(|i| format!("bench-{run}-{i}")).collect();
    let mut seq = 0;
    for m in &ids {
        seq = seq.max(setup_manager(&client, m).await?);
    }
    let m = ids[0].clone();

    // Tree fetch.
    let tree = call(
        &client,
        "cluster.query.tree",
        &json!({"manager_id": m, "min_seq": seq}),
    )
    .await?;
    let tree_bytes = serde_json::to_vec(&tree)?.len();
    let mut fetch = Vec::with_capacity(200);
    let query = bytes::Bytes::from(serde_json::to_vec(&json!({"manager_id": m}))?);
    for _ in 0..200 {
        // Time to the reply's bytes (a dashboard's own JSON parsing is not the service's).
        let t = Instant::now();
        let reply = client.request("cluster.query.tree", query.clone()).await?;
        fetch.push(t.elapsed());
        anyhow::ensure!(
            reply.payload.len() == tree_bytes,
            "the tree changed size during the fetch benchmark"
        );
    }
    fetch.sort();

    // Delta latency at a steady rate.
    let received: Arc<Mutex<HashMap<(String, u64), Instant>>> = Arc::default();
    let mut sub = client.subscribe("cluster.tree.>").await?;
    client.flush().await?;
    let rx = received.clone();
    let listener = tokio::spawn(async move {
        let mut versions: HashMap<String, Vec<u64>> = HashMap::new();
        while let Some(msg) = sub.next().await {
            let now = Instant::now();
            if let Some(v) = serde_json::from_slice::<Value>(&msg.payload)
                .ok()
                .and_then(|d| d["version"].as_u64())
            {
                let key = msg.subject.to_string();
                versions.entry(key.clone()).or_default().push(v);
                if let Ok(mut r) = rx.lock() {
                    r.insert((key, v), now);
                }
            }
        }
        versions
    });
    let sent: Sent = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate_per_s));
    let mut tasks = Vec::with_capacity(commands);
    let started = Instant::now();
    for i in 0..commands {
        tick.tick().await;
        let client = client.clone();
        let sent = sent.clone();
        let k = i / MANAGERS;
        let node = format!(
            "n{}-{}",
            (k / NODES_PER_WORKER) % WORKERS,
            k % NODES_PER_WORKER
        );
        let running = (k / (WORKERS * NODES_PER_WORKER)).is_multiple_of(2);
        let manager = &ids[i % MANAGERS];
        let key = format!("cluster.tree.{}", schemas::encode_token(manager));
        let body = json!({"manager_id": manager, "node_id": node, "running": running});
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = call(&client, "cluster.cmd.node-report", &body).await;
            if let Some(v) = r.ok().and_then(|b| b["version"].as_u64()) {
                if let Ok(mut s) = sent.lock() {
                    s.insert((key, v), (t, t.elapsed()));
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    // Let the last deltas arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let have = received
            .lock()
            .map(|r| {
                sent.lock()
                    .map(|s| s.keys().all(|v| r.contains_key(v)))
                    .unwrap_or(true)
            })
            .unwrap_or(true);
        if have || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut delta_lat, mut reply_lat, mut missing) = (Vec::new(), Vec::new(), 0usize);
    {
        let r = received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let s = sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        for (v, (t, reply)) in s.iter() {
            reply_lat.push(*reply);
            match r.get(v) {
                Some(at) => delta_lat.push(at.saturating_duration_since(*t)),
                None => missing += 1,
            }
        }
    }
    listener.abort();
    let versions = listener.await.unwrap_or_default();
    let gaps: usize = versions
        .values()
        .map(|vs| vs.windows(2).filter(|w| w[1] != w[0] + 1).count())
        .sum();
    delta_lat.sort();
    reply_lat.sort();
    let rate = commands as f64 / elapsed.as_secs_f64();
    let (d50, d99) = (pct(&delta_lat, 0.5), pct(&delta_lat, 0.99));
    let (f50, f99) = (pct(&fetch, 0.5), pct(&fetch, 0.99));
    let (r50, r99) = (pct(&reply_lat, 0.5), pct(&reply_lat, 0.99));
    let aim_delta = Duration::from_millis(10);
    let aim_fetch = Duration::from_millis(5);
    let mut out = String::new();
    out.push_str("## cluster\n\n");
    out.push_str(&format!(
        "{commands} node reports at {rate:.0}/s spread over {MANAGERS} managers of {WORKERS} workers x {NODES_PER_WORKER} nodes each; tree of {tree_bytes} bytes. \
         Baseline: plain NATS request-reply p50 {} (same run). Deltas received {}/{} ({missing} missing), {gaps} version gaps.\n\n",
        ms(rtt50),
        delta_lat.len(),
        reply_lat.len()
    ));
    out.push_str("| figure | value | vs NATS round trip | vs aim |\n|---|---|---|---|\n");
    out.push_str(&format!(
        "| delta latency p50 (command sent -> delta received) | {} | {} | {} of 10 ms |\n",
        ms(d50),
        ratio(d50, rtt50),
        ratio(d50, aim_delta)
    ));
    out.push_str(&format!(
        "| delta latency p99 | {} | {} | {} of 10 ms |\n",
        ms(d99),
        ratio(d99, rtt50),
        ratio(d99, aim_delta)
    ));
    out.push_str(&format!(
        "| command reply p50 | {} | {} | - |\n",
        ms(r50),
        ratio(r50, rtt50)
    ));
    out.push_str(&format!(
        "| command reply p99 | {} | {} | - |\n",
        ms(r99),
        ratio(r99, rtt50)
    ));
    out.push_str(&format!(
        "| tree fetch p50 (50 x 10) | {} | {} | {} of 5 ms |\n",
        ms(f50),
        ratio(f50, rtt50),
        ratio(f50, aim_fetch)
    ));
    out.push_str(&format!(
        "| tree fetch p99 (50 x 10) | {} | {} | {} of 5 ms |\n",
        ms(f99),
        ratio(f99, rtt50),
        ratio(f99, aim_fetch)
    ));
    Ok(out)
}
