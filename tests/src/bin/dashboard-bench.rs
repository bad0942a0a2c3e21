//! Browser benchmark of the dashboard (`make bench-dashboard`; a program, not a test).
//!
//! Starts its own stack (nats-server with WebSocket, a fresh database, every service, the gateway
//! serving the built page), registers `SWITCHYARD_DASH_BENCH_CARTS` carts (1,000) each with an SSD
//! and a dataset, dispatches every one of them and has each report a `position` 5 times a second
//! (`dispatch.cmd.cart-report`, the real path: command, event, `dispatch.status.cart.<id>`), while
//! 50 pipeline simulators (`tools::cluster_sim`, one manager each, a change every 100 ms) drive the
//! cluster. Headless Chromium shows the dispatch view with `?perf=1`; the page records its frame
//! intervals, the JS time of each coalesced flush, and when each cart update (by `seq`) was on
//! screen. Publish-to-paint lag = that time minus the wall-clock time this program sent the
//! command whose reply carried that `seq` (same machine, same clock). Prints a Markdown table.

use e2e::{browser, Client, TestEnv};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

async fn ok(c: &Client, subject: &str, body: Value) -> anyhow::Result<Value> {
    let r = c.request(subject, &body).await?;
    anyhow::ensure!(r.body.get("error").is_none(), "{subject}: {}", r.body);
    Ok(r.body)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let carts: usize = std::env::var("SWITCHYARD_DASH_BENCH_CARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let managers: usize = std::env::var("SWITCHYARD_DASH_BENCH_MANAGERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let hz: f64 = std::env::var("SWITCHYARD_DASH_BENCH_HZ")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let secs: u64 = std::env::var("SWITCHYARD_DASH_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    browser::check_prerequisites()?;
    let env = TestEnv::new().await?;
    let dir = tempfile::tempdir()?;
    std::env::set_var("NATS_WS_URL", env.nats.ws_url());
    std::env::set_var(
        "SWITCHYARD_DASHBOARD_DIR",
        browser::dashboard_dir().join("dist"),
    );
    let mut config = switchyard::Configuration::with_runtime(env.config())?;
    config.dfs.dir = dir.path().join("dfs").to_string_lossy().to_string();
    let services = e2e::Services::start_configured(config, &[]).await?;
    let http = services.http_addr.expect("gateway");
    let c = env.client().await?;
    let docks: Vec<String> = (1..=12).map(|i| format!("ml-node-{i}")).collect();
    let bays = ["bay-a", "bay-b", "bay-c"];

    eprintln!("setting up {carts} carts ...");
    let t = Instant::now();
    let routes: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let mut set = tokio::task::JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    for i in 0..carts {
        let (c, sem, routes) = (c.clone(), sem.clone(), routes.clone());
        let home = bays[i % bays.len()].to_string();
        let dock = docks[i % docks.len()].clone();
        set.spawn(async move {
            let _p = sem.acquire().await?;
            let cart = format!("bench-cart-{i}");
            ok(&c, "dispatch.cmd.register-cart", json!({"cart_id": cart, "home": home})).await?;
            ok(&c, "dispatch.cmd.register-ssd", json!({"ssd_id": format!("bench-ssd-{i}"), "cart_id": cart, "capacity_bytes": 1u64 << 40, "health": "ok"})).await?;
            ok(&c, "dispatch.cmd.put-dataset", json!({"ssd_id": format!("bench-ssd-{i}"), "dataset": format!("bench-ds-{i}"), "size_bytes": 1u64 << 30})).await?;
            let req = ok(&c, "dispatch.cmd.request-datasets", json!({"server_id": dock, "datasets": [format!("bench-ds-{i}")]})).await?;
            let seq = req["seq"].as_u64().unwrap_or(0);
            // Wait for the reservation, then depart.
            for _ in 0..100 {
                let info = ok(&c, "dispatch.query.cart", json!({"cart_id": cart, "min_seq": seq})).await?;
                if info["status"] == "QUEUE" {
                    let route: Vec<String> = serde_json::from_value(info["route"].clone()).unwrap_or_default();
                    routes.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(cart.clone(), route);
                    ok(&c, "dispatch.cmd.cart-report", json!({"cart_id": cart, "report": "departed"})).await?;
                    return Ok::<_, anyhow::Error>(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::bail!("{cart} was not reserved")
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    eprintln!("set up in {:.1} s", t.elapsed().as_secs_f64());

    let sims: Vec<_> = (0..managers)
        .map(|i| {
            let sim = tools::cluster_sim::Sim::new(
                c.nats.clone(),
                &format!("bench-pipe-{i}"),
                Duration::from_millis(100),
            );
            tokio::spawn(async move {
                let _ = sim.run(0).await;
            })
        })
        .collect();

    let sent: Arc<Mutex<HashMap<u64, f64>>> = Arc::default();
    let counts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handle = tokio::runtime::Handle::current();
    let vars = vec![
        ("DASH_URL", format!("http://{http}/?perf=1#dispatch")),
        ("CARTS", carts.to_string()),
    ];
    let routes = routes
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let mut achieved = 0.0;
    let out = tokio::task::block_in_place(|| {
        browser::run_spec(
            "bench.spec.mjs",
            &vars,
            Duration::from_secs(secs + 240),
            |command| {
                anyhow::ensure!(command == "LOAD", "unknown command {command}");
                let start = Instant::now();
                handle.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for (cart, route) in routes.clone() {
                    let (c, sent, counts) = (c.clone(), sent.clone(), counts.clone());
                    tasks.spawn(async move {
                        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / hz));
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                        let mut k = 0usize;
                        let until = Instant::now() + Duration::from_secs(secs);
                        while Instant::now() < until {
                            tick.tick().await;
                            // Back and forth along the first hops of its route.
                            let n = route.len().saturating_sub(1).max(1);
                            let loc = &route[(k % n).min(route.len() - 1)];
                            k += 1;
                            let at = now_ms();
                            if let Ok(r) = c.request("dispatch.cmd.cart-report", &json!({"cart_id": cart, "report": "position", "location": loc})).await {
                                if let Some(seq) = r.body["seq"].as_u64() {
                                    if let Ok(mut s) = sent.lock() { s.insert(seq, at); }
                                    counts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                            }
                        }
                    });
                }
                while tasks.join_next().await.is_some() {}
            });
                achieved = counts.load(std::sync::atomic::Ordering::Relaxed) as f64
                    / start.elapsed().as_secs_f64();
                Ok(())
            },
        )
    })?;
    for s in sims {
        s.abort();
    }
    let line = out
        .iter()
        .find_map(|l| l.strip_prefix("PERF "))
        .ok_or_else(|| anyhow::anyhow!("the spec gave no PERF line"))?;
    let perf: Value = serde_json::from_str(line)?;
    let mut frames: Vec<f64> = serde_json::from_value(perf["frames"].clone())?;
    let mut flush: Vec<f64> = serde_json::from_value(perf["flushMs"].clone())?;
    let mut draw: Vec<f64> = serde_json::from_value(perf["drawMs"].clone()).unwrap_or_default();
    let mut page_lag: Vec<f64> =
        serde_json::from_value(perf["pageLagMs"].clone()).unwrap_or_default();
    let painted: Vec<(u64, f64)> = serde_json::from_value(perf["painted"].clone())?;
    let sent = sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut lag: Vec<f64> = painted
        .iter()
        .filter_map(|(seq, at)| sent.get(seq).map(|s| at - s))
        .collect();
    let received = perf["received"].as_f64().unwrap_or(0.0);
    println!("\n### Dashboard in the browser ({carts} carts x {hz} positions/s, {managers} pipeline simulators, {secs} s, headless Chromium)\n");
    println!("| figure | value | aim |\n|---|---|---|");
    println!(
        "| position commands sent and acknowledged | {achieved:.0}/s (asked {:.0}/s) | 5,000/s |",
        carts as f64 * hz
    );
    println!(
        "| cart updates received by the page | {:.0}/s | |",
        received / secs as f64
    );
    println!(
        "| frame interval p50 / p95 / max | {:.1} / {:.1} / {:.1} ms ({} frames) | p95 < 20 ms |",
        pct(&mut frames, 0.5),
        pct(&mut frames, 0.95),
        pct(&mut frames, 1.0),
        frames.len()
    );
    println!(
        "| JS per coalesced flush p50 / p95 | {:.2} / {:.2} ms | |",
        pct(&mut flush, 0.5),
        pct(&mut flush, 0.95)
    );
    println!(
        "| map redraw (carts on the canvas) p50 / p95 | {:.2} / {:.2} ms | |",
        pct(&mut draw, 0.5),
        pct(&mut draw, 0.95)
    );
    println!(
        "| the page's share of the lag (update arrived on the WebSocket -> painted) p50 / p95 | {:.0} / {:.0} ms | |",
        pct(&mut page_lag, 0.5),
        pct(&mut page_lag, 0.95)
    );
    println!(
        "| publish-to-paint lag p50 / p95 ({} updates matched) | {:.0} / {:.0} ms | p95 < 100 ms |",
        lag.len(),
        pct(&mut lag, 0.5),
        pct(&mut lag, 0.95)
    );
    drop(services);
    Ok(())
}
