//! Engine benchmark: `engine.exec` round trips (through the owner hop) and status-update to
//! watch-subscriber delivery, each against a raw NATS request-reply measured in the same run.
//!
//! Two engine instances run in this process (each with its own NATS connection, as two processes
//! would), so about half the calls are answered by the instance that owns the module and half are
//! forwarded to the other. `SWITCHYARD_BENCH_ENGINE_N` sets the samples per measurement (default
//! 2000).

use futures::StreamExt;
use runtime::{Config, Ctx};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    Stats {
        p50: percentile(&v, 50.0),
        p99: percentile(&v, 99.0),
    }
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "-".into();
    }
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

async fn request(
    client: &async_nats::Client,
    subject: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let msg = client
        .request(subject.to_string(), serde_json::to_vec(body)?.into())
        .await?;
    let v: Value = serde_json::from_slice(&msg.payload)?;
    anyhow::ensure!(v.get("error").is_none(), "{subject} failed: {v}");
    Ok(v)
}

/// Runs the benchmark and returns a Markdown section.
///
/// # Errors
/// A dependency is unreachable or a call fails.
pub async fn bench(nats_url: &str, database_url: &str) -> anyhow::Result<String> {
    let n: usize = std::env::var("SWITCHYARD_BENCH_ENGINE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
        .max(10);
    // The instances run in a runtime of their own (like a separate process), shut down at the end.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut instances = Vec::new();
    for _ in 0..2 {
        let config = Config::for_urls(nats_url, database_url);
        let ctx = rt
            .spawn(async move {
                let ctx = Ctx::connect(config).await?;
                ::engine::start(&ctx, &::engine::Settings::from_env()?).await?;
                Ok::<_, anyhow::Error>(ctx)
            })
            .await??;
        instances.push(ctx);
    }
    let result = measure(nats_url, n, &instances).await;
    drop(instances);
    rt.shutdown_background();
    result
}

async fn measure(nats_url: &str, n: usize, instances: &[Ctx]) -> anyhow::Result<String> {
    let client = runtime::ctx::connect_nats(nats_url, "engine-bench").await?;

    // Wait until both instances see each other.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = request(&client, "engine.query.instances", &json!({})).await?;
        let live = r["instances"].as_array().map_or(0, Vec::len);
        if live >= 2 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the two bench instances did not see each other within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let run = uuid::Uuid::now_v7().simple().to_string();
    let system = format!("bench-{run}");
    let mut modules = Vec::new();
    for i in 0..8 {
        let m = format!("bench-{run}-calc-{i}");
        request(
            &client,
            "engine.cmd.add-module",
            &json!({"module_id": m, "driver_id": "calculator", "name": "Calculator"}),
        )
        .await?;
        modules.push(m);
    }
    request(
        &client,
        "engine.cmd.set-system",
        &json!({"system_id": system, "modules": modules}),
    )
    .await?;

    // Baseline: a raw request-reply to a plain subscriber in an engine instance's connection.
    let echo_subject = format!("bench.{run}.echo");
    let mut echo = instances[0].client.subscribe(echo_subject.clone()).await?;
    instances[0].client.flush().await?;
    let responder = instances[0].client.clone();
    tokio::spawn(async move {
        while let Some(m) = echo.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    let payload = serde_json::to_vec(
        &json!({"system_id": system, "module": "Calculator_1", "method": "add", "args": {"a": 1, "b": 2}}),
    )?;
    for _ in 0..50 {
        client
            .request(echo_subject.clone(), payload.clone().into())
            .await?;
    }
    let mut raw = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client
            .request(echo_subject.clone(), payload.clone().into())
            .await?;
        raw.push(t.elapsed());
    }

    // exec, one at a time, over the 8 modules (spread over both instances by ownership).
    let bodies: Vec<Vec<u8>> = (0..8)
        .map(|i| serde_json::to_vec(&json!({"system_id": system, "module": format!("Calculator_{}", i + 1), "method": "add", "args": {"a": i, "b": 2}})))
        .collect::<Result<_, _>>()?;
    for b in bodies.iter().cycle().take(50) {
        request(&client, "engine.exec", &serde_json::from_slice(b)?).await?;
    }
    let mut exec = Vec::with_capacity(n);
    for i in 0..n {
        let body = bodies[i % bodies.len()].clone();
        let t = Instant::now();
        let msg = client.request("engine.exec", body.into()).await?;
        exec.push(t.elapsed());
        anyhow::ensure!(
            msg.headers
                .as_ref()
                .and_then(|h| h.get("Nats-Service-Error-Code"))
                .is_none(),
            "exec failed: {:?}",
            msg.payload
        );
    }

    // Throughput with 64 in flight, exec against raw.
    let in_flight = 64;
    let t = Instant::now();
    let raw_ok = futures::stream::iter(0..n)
        .map(|_| client.request(echo_subject.clone(), payload.clone().into()))
        .buffer_unordered(in_flight)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await;
    let raw_rate = raw_ok as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let exec_ok = futures::stream::iter(0..n)
        .map(|i| client.request("engine.exec", bodies[i % bodies.len()].clone().into()))
        .buffer_unordered(in_flight)
        .filter(|r| futures::future::ready(r.as_ref().is_ok_and(|m| m.headers.is_none())))
        .count()
        .await;
    let exec_rate = exec_ok as f64 / t.elapsed().as_secs_f64();

    // Watch delivery: update-status sent -> message on the indirect watch subject.
    let watched = format!(
        "engine.watch.{}.Calculator_1.load",
        schemas::encode_token(&system)
    );
    let mut sub = client.subscribe(watched).await?;
    client.flush().await?;
    let mut watch = Vec::with_capacity(n);
    let mut after_reply = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({"module_id": modules[0], "name": "load", "value": i});
        let t = Instant::now();
        request(&client, "engine.cmd.update-status", &body).await?;
        let replied = t.elapsed();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
                .await
                .map_err(|_| anyhow::anyhow!("no watch message within 5 s"))?
                .ok_or_else(|| anyhow::anyhow!("watch subscription ended"))?;
            if serde_json::from_slice::<Value>(&m.payload).ok() == Some(json!(i)) {
                break;
            }
        }
        let got = t.elapsed();
        watch.push(got);
        after_reply.push(got.saturating_sub(replied));
    }

    let raw = stats(raw);
    let exec = stats(exec);
    let watch = stats(watch);
    let after_reply = stats(after_reply);
    let mut out = String::new();
    out.push_str("## engine\n\n");
    out.push_str(&format!(
        "{n} samples per row, one at a time; two engine instances in one process, so about half the execs take the owner hop. Ratios are against the raw NATS request-reply of the same run.\n\n"
    ));
    out.push_str("| measure | p50 | p99 | p50 vs raw | p99 vs raw |\n|---|---|---|---|---|\n");
    out.push_str(&format!(
        "| raw NATS request-reply (baseline) | {} | {} | 1.00x | 1.00x |\n",
        us(raw.p50),
        us(raw.p99)
    ));
    out.push_str(&format!(
        "| `engine.exec` round trip (calculator add) | {} | {} | {} | {} |\n",
        us(exec.p50),
        us(exec.p99),
        ratio(exec.p50, raw.p50),
        ratio(exec.p99, raw.p99)
    ));
    out.push_str(&format!(
        "| `update-status` sent -> `engine.watch` message | {} | {} | {} | {} |\n",
        us(watch.p50),
        us(watch.p99),
        ratio(watch.p50, raw.p50),
        ratio(watch.p99, raw.p99)
    ));
    out.push_str(&format!(
        "| `update-status` reply -> `engine.watch` message | {} | {} | {} | {} |\n",
        us(after_reply.p50),
        us(after_reply.p99),
        ratio(after_reply.p50, raw.p50),
        ratio(after_reply.p99, raw.p99)
    ));
    out.push_str(&format!(
        "\nThroughput with {in_flight} in flight: `engine.exec` {exec_rate:.0}/s, raw request-reply {raw_rate:.0}/s ({}).\n",
        if raw_rate > 0.0 { format!("{:.2}x", exec_rate / raw_rate) } else { "-".into() }
    ));
    out.push_str(&format!(
        "Aims: exec p50 within 3x of raw ({}); watch delivery p99 under 5 ms ({}).\n",
        if exec.p50.as_secs_f64() <= 3.0 * raw.p50.as_secs_f64() {
            "met"
        } else {
            "not met"
        },
        if watch.p99 < Duration::from_millis(5) {
            "met"
        } else {
            "not met"
        }
    ));
    Ok(out)
}
