//! `make bench`, dispatch part. Starts the dispatch service in this process on the given NATS and
//! PostgreSQL (ids are unique per run, so an existing deployment is not disturbed) and measures:
//!
//! 1. Dispatch throughput: N free carts (default 1,000), each holding a different dataset; N
//!    requests sent at once by 16 clients; requests per second from the first request to the last
//!    job published. Baseline in the same run: N acknowledged JetStream publishes from 16 clients
//!    (the raw event-store ceiling; a dispatch costs two appends plus the dispatcher's round trip).
//! 2. Queue drain: 10 carts and M requests (default 200) with the simulator at high speed (default
//!    x200): the time until all are delivered, against the ideal (sum of trip times / 10).
//! 3. Route computation on a generated facility of 10,000 nodes: median time per route, against
//!    one full single-source Dijkstra over the same graph.
//!
//! Sizes: `SWITCHYARD_BENCH_DISPATCH_CARTS`, `SWITCHYARD_BENCH_DISPATCH_DRAIN`,
//! `SWITCHYARD_BENCH_DISPATCH_SPEED`.

use ::dispatch::domain::Graph;
use futures::StreamExt;
use runtime::{Config, Ctx};
use schemas::dispatch::{self as w, NodeKind};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn call(client: &async_nats::Client, subject: &str, body: &Value) -> anyhow::Result<Value> {
    let r = runtime::client::request_json(client, subject, body).await;
    anyhow::ensure!(r.status == 200, "{subject} {body}: {} {}", r.status, r.body);
    Ok(r.body)
}

/// Runs the three measurements and returns the Markdown section.
///
/// # Errors
/// A dependency is unreachable or the service misbehaves.
pub async fn bench(nats_url: &str, database_url: &str) -> anyhow::Result<String> {
    let n_carts = env_or("SWITCHYARD_BENCH_DISPATCH_CARTS", 1000).max(16);
    let n_drain = env_or("SWITCHYARD_BENCH_DISPATCH_DRAIN", 200).max(10);
    let speed = env_or("SWITCHYARD_BENCH_DISPATCH_SPEED", 200).max(1) as f64;
    let ctx = Ctx::connect(Config::for_urls(nats_url, database_url)).await?;
    ctx.health.declare("dispatch");
    ::dispatch::start(&ctx, &::dispatch::Settings::from_env()?).await?;
    tokio::time::timeout(Duration::from_secs(120), ctx.health.wait_ready())
        .await
        .map_err(|_| anyhow::anyhow!("dispatch not ready in 120 s"))?;
    let client = runtime::ctx::connect_nats(nats_url, "dispatch-bench").await?;
    let run = uuid::Uuid::now_v7().simple().to_string();

    // The facility in place (the default one unless someone replaced it).
    let f: w::Facility =
        serde_json::from_value(call(&client, "dispatch.query.facility", &json!({})).await?)?;
    let home = f
        .nodes
        .iter()
        .find(|n| n.kind == NodeKind::Storage)
        .map(|n| n.id.clone())
        .ok_or_else(|| anyhow::anyhow!("the facility has no storage node"))?;
    let docks: Vec<String> = f
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Dock)
        .map(|n| n.id.clone())
        .collect();
    anyhow::ensure!(!docks.is_empty(), "the facility has no dock");

    // ---- 1. dispatch throughput -----------------------------------------------------------
    let prefix = format!("bench-{run}-");
    futures::stream::iter(0..n_carts)
        .map(|i| {
            let (client, prefix, home) = (client.clone(), prefix.clone(), home.clone());
            async move {
                let cart = format!("{prefix}{i}");
                let ssd = format!("{cart}-ssd");
                call(&client, "dispatch.cmd.register-cart", &json!({"cart_id": cart, "home": home})).await?;
                call(&client, "dispatch.cmd.register-ssd", &json!({"ssd_id": ssd, "cart_id": cart, "capacity_bytes": 1u64 << 40, "health": "ok"})).await?;
                call(&client, "dispatch.cmd.put-dataset", &json!({"ssd_id": ssd, "dataset": format!("{cart}-ds"), "size_bytes": 1_000_000_000u64})).await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut jobs = client.subscribe("dispatch.cart.*.job").await?;
    client.flush().await?;
    let mut clients = Vec::new();
    for i in 0..16 {
        clients.push(runtime::ctx::connect_nats(nats_url, &format!("dispatch-bench-{i}")).await?);
    }
    let per = n_carts.div_ceil(16);
    let started = Instant::now();
    let senders: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let (c, prefix, docks) = (c.clone(), prefix.clone(), docks.clone());
            tokio::spawn(async move {
                let sends = (k * per..((k + 1) * per).min(n_carts)).map(|i| {
                    let (c, prefix, server) =
                        (c.clone(), prefix.clone(), docks[i % docks.len()].clone());
                    async move {
                        call(
                            &c,
                            "dispatch.cmd.request-datasets",
                            &json!({"server_id": server, "datasets": [format!("{prefix}{i}-ds")]}),
                        )
                        .await
                    }
                });
                futures::future::join_all(sends)
                    .await
                    .into_iter()
                    .collect::<anyhow::Result<Vec<_>>>()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < n_carts {
        let m = tokio::time::timeout_at(deadline, jobs.next())
            .await
            .map_err(|_| anyhow::anyhow!("only {} of {n_carts} jobs in 120 s", seen.len()))?;
        let Some(m) = m else { break };
        if let Ok(job) = serde_json::from_slice::<w::Job>(&m.payload) {
            if job.cart_id.starts_with(&prefix) {
                seen.insert(job.cart_id);
            }
        }
    }
    let dispatch_time = started.elapsed();
    for s in senders {
        s.await??;
    }
    tracing::info!(replies_after = ?started.elapsed(), "all request replies in");
    let dispatch_rate = n_carts as f64 / dispatch_time.as_secs_f64();

    // Baseline: n acked JetStream publishes from 16 clients at once.
    let js_stream = format!("BENCH_DISPATCH_{run}");
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: js_stream.clone(),
        subjects: vec![format!("bench.dispatch.{run}.>")],
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let pubs: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let js = async_nats::jetstream::new(c.clone());
            let run = run.clone();
            tokio::spawn(async move {
                let acks = (0..per).map(|i| {
                    let js = js.clone();
                    let subject = format!("bench.dispatch.{run}.{k}.{i}");
                    async move {
                        js.publish(subject, "{}".into())
                            .await?
                            .await
                            .map(|_| ())
                            .map_err(anyhow::Error::from)
                    }
                });
                futures::future::join_all(acks)
                    .await
                    .into_iter()
                    .collect::<anyhow::Result<Vec<_>>>()
            })
        })
        .collect();
    for p in pubs {
        p.await??;
    }
    let js_rate = (per * 16) as f64 / started.elapsed().as_secs_f64();
    let _ = js.delete_stream(&js_stream).await;

    // ---- 2. queue drain ---------------------------------------------------------------------
    let drain_prefix = format!("drain-{run}-");
    let dataset = format!("{drain_prefix}ds");
    let size = 1_000_000_000u64;
    for i in 0..10 {
        let cart = format!("{drain_prefix}{i}");
        call(
            &client,
            "dispatch.cmd.register-cart",
            &json!({"cart_id": cart, "home": home}),
        )
        .await?;
        call(&client, "dispatch.cmd.register-ssd", &json!({"ssd_id": format!("{cart}-ssd"), "cart_id": cart, "capacity_bytes": 1u64 << 40, "health": "ok"})).await?;
        call(
            &client,
            "dispatch.cmd.put-dataset",
            &json!({"ssd_id": format!("{cart}-ssd"), "dataset": dataset, "size_bytes": size}),
        )
        .await?;
    }
    let (tx, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let opts = tools::dispatch_sim::SimOptions {
        speed,
        only_prefix: Some(drain_prefix.clone()),
        delivered: Some(tx),
        ..Default::default()
    };
    let bytes_per_second = opts.bytes_per_second;
    let sim = tools::dispatch_sim::spawn(client.clone(), opts);
    tokio::time::sleep(Duration::from_millis(200)).await; // the simulator subscribes
    let started = Instant::now();
    let sends = (0..n_drain).map(|i| {
        let (c, server, dataset) = (
            clients[i % 16].clone(),
            docks[i % docks.len()].clone(),
            dataset.clone(),
        );
        async move {
            call(
                &c,
                "dispatch.cmd.request-datasets",
                &json!({"server_id": server, "datasets": [dataset]}),
            )
            .await
        }
    });
    let replies = futures::future::join_all(sends)
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut ideal_seconds = 0.0;
    let mut pending: Vec<(String, f64)> = Vec::new();
    for r in &replies {
        let id = r["request_id"].as_str().unwrap_or_default().to_string();
        let server = r["server_id"].as_str().unwrap_or_default();
        let route: w::RouteReply = serde_json::from_value(
            call(
                &client,
                "dispatch.query.route",
                &json!({"from": home, "to": server}),
            )
            .await?,
        )?;
        let trip = 2.0 * route.seconds + size as f64 / bytes_per_second;
        ideal_seconds += trip;
        pending.push((id, trip));
    }
    let mut ids: HashSet<String> = pending.into_iter().map(|(id, _)| id).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while !ids.is_empty() {
        let got = tokio::time::timeout_at(deadline, delivered.recv())
            .await
            .map_err(|_| anyhow::anyhow!("{} requests not delivered in 300 s", ids.len()))?;
        let Some((_, request)) = got else {
            anyhow::bail!("the simulator stopped")
        };
        ids.remove(&request);
    }
    let drain = started.elapsed();
    sim.abort();
    let ideal = Duration::from_secs_f64(ideal_seconds / 10.0 / speed);

    // ---- 3. routes on 10,000 nodes ---------------------------------------------------------
    let side = 100;
    let mut nodes = Vec::with_capacity(side * side);
    let mut edges = Vec::new();
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for y in 0..side {
        for x in 0..side {
            nodes.push(w::Node {
                id: format!("n{x}-{y}"),
                kind: NodeKind::Junction,
            });
            if x > 0 {
                edges.push(w::Edge {
                    from: format!("n{}-{y}", x - 1),
                    to: format!("n{x}-{y}"),
                    seconds: 1.0 + (next() % 20) as f64,
                });
            }
            if y > 0 {
                edges.push(w::Edge {
                    from: format!("n{x}-{}", y - 1),
                    to: format!("n{x}-{y}"),
                    seconds: 1.0 + (next() % 20) as f64,
                });
            }
        }
    }
    let graph = Graph::new(nodes, edges).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut route_times = Vec::with_capacity(200);
    let mut full_times = Vec::with_capacity(200);
    for _ in 0..200 {
        let a = format!("n{}-{}", next() % side as u64, next() % side as u64);
        let b = format!("n{}-{}", next() % side as u64, next() % side as u64);
        let t = Instant::now();
        let r = graph.route(&a, &b);
        route_times.push(t.elapsed());
        anyhow::ensure!(r.is_some(), "no route {a} -> {b}");
        let t = Instant::now();
        let d = graph.distances(&a);
        full_times.push(t.elapsed());
        anyhow::ensure!(d.is_some(), "no distances from {a}");
    }
    route_times.sort();
    full_times.sort();
    let route_median = route_times[route_times.len() / 2];
    let full_median = full_times[full_times.len() / 2];

    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    let mut out = String::new();
    out.push_str("## dispatch\n\n");
    out.push_str(&format!(
        "Dispatch service in-process; {n_carts} carts for throughput, 10 carts and {n_drain} requests for the drain (simulator x{speed}), a 100x100 grid for routes.\n\n"
    ));
    out.push_str(
        "| measurement | result | baseline (same run) | ratio | aim |\n|---|---|---|---|---|\n",
    );
    out.push_str(&format!(
        "| dispatch throughput ({n_carts} requests, 16 clients, first request to last job) | {dispatch_rate:.0} dispatches/s ({}) | {js_rate:.0} acked JetStream publishes/s | {:.2}x | >= 2,000/s ({:.2}x of aim) |\n",
        ms(dispatch_time),
        dispatch_rate / js_rate,
        dispatch_rate / 2000.0
    ));
    out.push_str(&format!(
        "| queue drain (10 carts, {n_drain} requests, all delivered) | {} | ideal {} (sum of trips / 10) | {:.2}x | close to 1x |\n",
        ms(drain),
        ms(ideal),
        drain.as_secs_f64() / ideal.as_secs_f64().max(1e-9)
    ));
    out.push_str(&format!(
        "| route on 10,000 nodes (median of 200) | {} | full single-source Dijkstra {} | {:.2}x | < 5 ms ({:.2}x of aim) |\n",
        ms(route_median),
        ms(full_median),
        route_median.as_secs_f64() / full_median.as_secs_f64().max(1e-12),
        route_median.as_secs_f64() / 0.005
    ));
    Ok(out)
}
