//! The dfs benchmark: upload and download throughput of one file with 3 replicas against the raw
//! rate of moving the same bytes through NATS request-reply (same chunk size, same parallelism, same
//! run), and the time to re-replicate after losing one of 4 chunk servers.
//!
//! It creates its own database on `database_url`'s server (dropped at the end), runs the dfs
//! coordinator and 4 chunk servers in a runtime of their own, with data in a temporary directory.
//! One upload and download warm the deployment up first (reported, not in the medians); the CPU
//! time of each measure (this process and nats-server, from `/proc`) is reported beside it.
//! Settings: `SWITCHYARD_BENCH_DFS_MB` (file size, default 200) and `SWITCHYARD_BENCH_DFS_REREP_MB`
//! (data held before a server is lost, default 1024) and `SWITCHYARD_BENCH_DFS_REPS` (uploads,
//! downloads and raw runs whose medians are reported, default 5), `SWITCHYARD_BENCH_DFS_CHUNK_KB`
//! (chunk size, default the client's 4096).

use ::dfs::chunk_server::{ChunkServer, ChunkServerOptions};
use ::dfs::client::{self, PutOptions, PARALLEL};
use anyhow::Context as _;
use futures::StreamExt;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

async fn admin(url: &str, sql: String) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut conn =
        sqlx::PgConnection::connect(&runtime::db::with_database(url, "postgres")).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// CPU seconds used so far by this process (clients and services) and by the nats-server this
/// bench process started (its child), from `/proc`.
#[derive(Clone, Copy, Default)]
struct Cpu {
    own: f64,
    nats: f64,
}

/// The command name and the fields after it in `/proc/<pid>/stat`.
fn proc_stat(pid: &str) -> Option<(String, Vec<String>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    Some((name, rest.split_whitespace().map(str::to_string).collect()))
}

/// The pid of the nats-server this bench process started (a child of ours; one per section, and
/// dfs is the only section that reads CPU time), looked up once.
fn nats_server_pid() -> Option<&'static str> {
    static PID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PID.get_or_init(|| {
        let me = std::process::id().to_string();
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .find(|pid| {
                proc_stat(pid).is_some_and(|(name, f)| {
                    name == "nats-server" && f.get(1).map(String::as_str) == Some(me.as_str())
                })
            })
    })
    .as_deref()
}

impl Cpu {
    fn now() -> Self {
        Self {
            own: super::cpu_seconds(std::process::id(), false),
            nats: nats_server_pid()
                .and_then(|p| p.parse().ok())
                .map_or(0.0, |p| super::cpu_seconds(p, false)),
        }
    }

    fn since(self) -> Self {
        let now = Self::now();
        Self {
            own: now.own - self.own,
            nats: now.nats - self.nats,
        }
    }
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} s here + {:.2} s nats-server", self.own, self.nats)
    }
}

fn mb(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1_048_576.0 / d.as_secs_f64().max(1e-9)
}

/// Raw disk: `total` bytes written as chunk-sized files, each fsynced (what one replica costs).
fn raw_disk(dir: &std::path::Path, total: u64, chunk: u64) -> anyhow::Result<f64> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let blob = vec![7u8; chunk as usize];
    let t = Instant::now();
    let mut left = total;
    let mut i = 0;
    while left > 0 {
        let n = left.min(chunk) as usize;
        let mut f = std::fs::File::create(dir.join(format!("c{i}")))?;
        f.write_all(&blob[..n])?;
        f.sync_all()?;
        left -= n as u64;
        i += 1;
    }
    let rate = mb(total, t.elapsed());
    std::fs::remove_dir_all(dir)?;
    Ok(rate)
}

/// Raw request-reply over NATS: `total` bytes in `chunk`-sized requests (upload) and replies
/// (download), `parallel` in flight, against a responder that does nothing else; and the same
/// upload fanned out to 3 bare responders (the floor of a 3-replica upload).
async fn raw_rates(
    nats_url: &str,
    nats: &async_nats::Client,
    total: u64,
    chunk: u64,
    parallel: usize,
) -> anyhow::Result<RawRates> {
    let mut sub = nats.subscribe("bench.dfs.raw.*").await?;
    let responder = nats.clone();
    let blob = bytes::Bytes::from(vec![7u8; chunk as usize]);
    let reply_blob = blob.clone();
    let echo = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let body = if m.subject.as_str().ends_with("down") {
                    reply_blob.clone()
                } else {
                    bytes::Bytes::from_static(b"{\"status\":\"success\"}")
                };
                let _ = responder.publish(r, body).await;
            }
        }
    });
    let n = total.div_ceil(chunk) as usize;
    let c0 = Cpu::now();
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|_| nats.request("bench.dfs.raw.up", blob.clone()))
        .buffer_unordered(parallel)
        .for_each(|r| async move {
            let _ = r;
        })
        .await;
    let up = mb(total, t.elapsed());
    let up_cpu = c0.since();
    eprintln!("dfs bench: raw up, {parallel} in flight: {up:.0} MB/s, CPU {up_cpu}");
    // What a fanned-out 3-replica upload must move at least: each chunk published once and copied
    // by NATS to 3 bare responders (connections of their own, as chunk servers have), each replying.
    let up_fan = {
        let mut responders = Vec::new();
        let mut names = Vec::new();
        for k in 0..3 {
            let name = format!("rawfan{k}");
            let conn = async_nats::connect(nats_url).await?;
            let mut subs = Vec::new();
            for pattern in ::dfs::fanout::patterns(&name) {
                subs.push(conn.subscribe(pattern).await?);
            }
            conn.flush().await?;
            let mut subs = futures::stream::select_all(subs);
            let header_value = name.clone();
            responders.push(tokio::spawn(async move {
                while let Some(m) = subs.next().await {
                    if let Some(r) = m.reply {
                        let mut h = async_nats::HeaderMap::new();
                        h.insert(::dfs::fanout::SERVER_HEADER, header_value.as_str());
                        let _ = conn
                            .publish_with_headers(
                                r,
                                h,
                                bytes::Bytes::from_static(b"{\"status\":\"success\"}"),
                            )
                            .await;
                    }
                }
            }));
            names.push(name);
        }
        let fanout = ::dfs::fanout::Fanout::new(nats)
            .await
            .map_err(anyhow::Error::msg)?;
        let ids: Vec<&str> = names.iter().map(String::as_str).collect();
        let c0 = Cpu::now();
        let t = Instant::now();
        futures::stream::iter(0..n)
            .map(|_| fanout.upload(&ids, blob.clone(), Duration::from_secs(30)))
            .buffer_unordered(parallel)
            .for_each(|r| async move {
                debug_assert_eq!(r.len(), 3);
            })
            .await;
        let rate = mb(total, t.elapsed());
        let cpu = c0.since();
        eprintln!("dfs bench: raw fanned-out up, {parallel} in flight: {rate:.0} MB/s, CPU {cpu}");
        for r in responders {
            r.abort();
        }
        (rate, cpu)
    };
    let c0 = Cpu::now();
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|_| nats.request("bench.dfs.raw.down", bytes::Bytes::new()))
        .buffered(parallel)
        .for_each(|r| async move {
            let _ = r;
        })
        .await;
    let down = mb(total, t.elapsed());
    let down_cpu = c0.since();
    eprintln!("dfs bench: raw down, {parallel} in flight: {down:.0} MB/s, CPU {down_cpu}");
    echo.abort();
    Ok(RawRates {
        up: (up, up_cpu),
        down: (down, down_cpu),
        fan: up_fan,
    })
}

/// Raw rates (MB/s) and the CPU each took.
struct RawRates {
    up: (f64, Cpu),
    down: (f64, Cpu),
    fan: (f64, Cpu),
}

impl RawRates {
    /// For each measure, the better of the two.
    fn best(a: Self, b: Self) -> Self {
        let better = |x: (f64, Cpu), y: (f64, Cpu)| if x.0 >= y.0 { x } else { y };
        Self {
            up: better(a.up, b.up),
            down: better(a.down, b.down),
            fan: better(a.fan, b.fan),
        }
    }
}

struct Deployment {
    rt: Option<tokio::runtime::Runtime>,
    servers: Vec<ChunkServer>,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

async fn deploy(nats_url: &str, db_url: &str, dir: &std::path::Path) -> anyhow::Result<Deployment> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let config = runtime::Config::for_urls(nats_url, db_url);
    let mut settings = ::dfs::Settings::from_env()?;
    settings.servers = 0;
    settings.dir = dir.to_string_lossy().to_string();
    let dir = dir.to_path_buf();
    let url = nats_url.to_string();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let servers = rt
        .spawn(async move {
            let ctx = runtime::Ctx::connect(config).await?;
            ctx.health.declare("dfs");
            ::dfs::start(&ctx, &settings).await?;
            let mut servers = Vec::new();
            for n in 0..4 {
                let opts = ChunkServerOptions {
                    dir: dir.join(format!("bench-{n}")),
                    id: Some(format!("bench{n}-{run}")),
                    settings: settings.clone(),
                };
                servers.push(::dfs::chunk_server::connect(&url, opts).await?);
            }
            // Keep the context (and so its connection) alive with the runtime.
            tokio::spawn(async move {
                let _ctx = ctx;
                std::future::pending::<()>().await;
            });
            Ok::<_, anyhow::Error>(servers)
        })
        .await??;
    Ok(Deployment {
        rt: Some(rt),
        servers,
    })
}

async fn live_servers(nats: &async_nats::Client) -> anyhow::Result<Vec<String>> {
    let v = client::coordinator(
        nats,
        &serde_json::json!({"request_type": "GET_CHUNK_SERVERS"}),
    )
    .await?;
    Ok(v["chunk_servers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["chnk_srv_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

async fn fully_replicated(
    nats: &async_nats::Client,
    file_id: &str,
    without: &str,
) -> anyhow::Result<bool> {
    let locs = client::locations(nats, file_id).await?;
    Ok(!locs.is_empty()
        && locs
            .values()
            .all(|v| v.len() == 3 && !v.iter().any(|s| s.ends_with(&format!(".{without}")))))
}

fn random_file(path: &std::path::Path, size: u64) -> anyhow::Result<()> {
    use rand::RngCore;
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    let mut rng = rand::rng();
    while left > 0 {
        rng.fill_bytes(&mut buf);
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// Runs the dfs benchmark and returns a Markdown section.
///
/// # Errors
/// NATS or PostgreSQL unreachable, or a step failed.
pub async fn bench(nats_url: &str, database_url: &str) -> anyhow::Result<String> {
    let size_mb = env_or("SWITCHYARD_BENCH_DFS_MB", 200).max(1);
    let rerep_mb = env_or("SWITCHYARD_BENCH_DFS_REREP_MB", 1024);
    let db_name = format!("bench_dfs_{}", uuid::Uuid::now_v7().simple());
    admin(database_url, format!("CREATE DATABASE \"{db_name}\""))
        .await
        .context("creating the bench database")?;
    let tmp = tempfile_dir()?;
    let result = run(
        nats_url,
        &runtime::db::with_database(database_url, &db_name),
        &tmp,
        size_mb,
        rerep_mb,
    )
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    if let Err(e) = admin(
        database_url,
        format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"),
    )
    .await
    {
        tracing::warn!(error = %e, "could not drop the bench database");
    }
    result
}

async fn run(
    nats_url: &str,
    db_url: &str,
    tmp: &std::path::Path,
    size_mb: u64,
    rerep_mb: u64,
) -> anyhow::Result<String> {
    let tmp = tmp.to_path_buf();
    let mut dep = deploy(nats_url, db_url, &tmp.join("data")).await?;
    let nats = runtime::ctx::connect_nats(nats_url, "dfs-bench").await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while live_servers(&nats).await?.len() < 4 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the 4 chunk servers did not join"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let chunk = env_or(
        "SWITCHYARD_BENCH_DFS_CHUNK_KB",
        client::DEFAULT_CHUNK / 1024,
    )
    .max(1)
    .saturating_mul(1024)
    .min(client::max_chunk(&nats));
    let size = size_mb * 1_048_576;
    let reps = env_or("SWITCHYARD_BENCH_DFS_REPS", 5).max(1);
    let disk_dir = tmp.join("disk");
    let disk = tokio::task::spawn_blocking(move || raw_disk(&disk_dir, size, chunk)).await??;
    let path = tmp.join("bench.bin");
    random_file(&path, size)?;
    let opts = PutOptions {
        replicas: Some(3),
        chunk_size: Some(chunk),
        metadata_dir: tmp.clone(),
        progress: false,
    };
    let out = tmp.join("bench.out");
    // Warm-up: one upload and one download on the just-started deployment, reported apart and left
    // out of the medians (as criterion warms up before it measures). Its processes fault their
    // working memory in on first use: profiled, the kernel zeroing fresh pages was a third of the
    // CPU of that first upload, against a tenth in the later ones.
    let (cold_up, cold_down) = {
        eprintln!("dfs bench: warm-up upload and download");
        let t = Instant::now();
        let file_id = client::put(&nats, &path, &opts).await?;
        let up = mb(size, t.elapsed());
        let t = Instant::now();
        client::get(&nats, &file_id, &out, false).await?;
        let down = mb(size, t.elapsed());
        let _ = std::fs::remove_file(&out);
        client::rm(&nats, &file_id).await?;
        (up, down)
    };
    // Each repetition measures the baselines, then an upload (a new file) and a download of it, so
    // that a ratio compares figures taken moments apart (this machine's speed drifts by a third
    // over minutes); the ratios reported are the medians of the per-repetition ratios.
    let (mut raw_ups, mut raw_downs, mut raw_fan) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ups, mut downs) = (Vec::new(), Vec::new());
    let (mut up_cpus, mut down_cpus, mut fan_cpus, mut raw_up_cpus, mut raw_down_cpus) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut up_ratios, mut down_ratios, mut fan_ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut file_ids = Vec::new();
    for rep in 0..reps {
        // The baseline is the better of the client's parallelism and fewer in flight (on 2 cores,
        // more large messages in flight can make the bare transfer slower).
        let raw = RawRates::best(
            raw_rates(nats_url, &nats, size, chunk, PARALLEL).await?,
            raw_rates(nats_url, &nats, size, chunk, RAW_FEWER).await?,
        );
        let (raw_up, raw_down, fan) = (raw.up.0, raw.down.0, raw.fan.0);
        raw_up_cpus.push(raw.up.1);
        raw_down_cpus.push(raw.down.1);
        fan_cpus.push(raw.fan.1);
        eprintln!("dfs bench: upload {rep}");
        let c0 = Cpu::now();
        let t = Instant::now();
        let file_id = client::put(&nats, &path, &opts).await?;
        let up = mb(size, t.elapsed());
        let cpu = c0.since();
        up_cpus.push(cpu);
        eprintln!("dfs bench: upload {up:.0} MB/s, CPU {cpu}");
        eprintln!("dfs bench: download {rep}");
        let c0 = Cpu::now();
        let t = Instant::now();
        client::get(&nats, &file_id, &out, false).await?;
        let down = mb(size, t.elapsed());
        let cpu = c0.since();
        down_cpus.push(cpu);
        eprintln!("dfs bench: download {down:.0} MB/s, CPU {cpu}");
        let _ = std::fs::remove_file(&out);
        file_ids.push(file_id);
        raw_ups.push(raw_up);
        raw_downs.push(raw_down);
        raw_fan.push(fan);
        ups.push(up);
        downs.push(down);
        up_ratios.push(up / raw_up);
        down_ratios.push(down / raw_down);
        fan_ratios.push(up / fan);
    }
    eprintln!("dfs bench: raw up {raw_ups:.1?} MB/s, raw down {raw_downs:.1?} MB/s, raw fanned-out to 3 {raw_fan:.1?} MB/s");
    eprintln!("dfs bench: uploads {ups:.1?} MB/s, downloads {downs:.1?} MB/s");
    eprintln!("dfs bench: upload ratios {up_ratios:.2?}, download ratios {down_ratios:.2?}");
    let fan_of_raw: Vec<f64> = raw_fan.iter().zip(&raw_ups).map(|(f, u)| f / u).collect();
    let (raw_up, raw_down, raw_x3) = (median(raw_ups), median(raw_downs), median(raw_fan));
    let (up, down) = (median(ups), median(downs));
    let (up_ratio, down_ratio, fan_ratio, fan_of_raw) = (
        median(up_ratios),
        median(down_ratios),
        median(fan_ratios),
        median(fan_of_raw),
    );
    let cpu = |v: &[Cpu]| Cpu {
        own: median(v.iter().map(|c| c.own).collect()),
        nats: median(v.iter().map(|c| c.nats).collect()),
    };
    let (up_cpu, down_cpu, fan_cpu, raw_up_cpu, raw_down_cpu) = (
        cpu(&up_cpus),
        cpu(&down_cpus),
        cpu(&fan_cpus),
        cpu(&raw_up_cpus),
        cpu(&raw_down_cpus),
    );
    for file_id in &file_ids {
        client::rm(&nats, file_id).await?;
    }

    // Re-replication (skipped when SWITCHYARD_BENCH_DFS_REREP_MB is 0).
    let rerep_row = if rerep_mb > 0 {
        // Re-replication: `rerep_mb` of file data (3 replicas) over 4 servers, then one is lost.
        let rerep = rerep_mb * 1_048_576;
        random_file(&path, rerep)?;
        let file_id = client::put(&nats, &path, &opts).await?;
        let _ = std::fs::remove_file(&path);
        let info = client::file_info(&nats, &file_id).await?;
        let locs = client::locations(&nats, &file_id).await?;
        let victim = dep.servers[0].id().to_string();
        let held: u64 = info
            .chunks
            .iter()
            .filter(|c| {
                locs.get(&c.chunk_id)
                    .is_some_and(|v| v.iter().any(|s| s.ends_with(&format!(".{victim}"))))
            })
            .map(|c| c.size)
            .sum();
        let server = dep.servers.remove(0);
        let t = Instant::now();
        server.stop().await;
        while live_servers(&nats).await?.contains(&victim) {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(60),
                "the lost server was never detected"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let detected = t.elapsed();
        while !fully_replicated(&nats, &file_id, &victim).await? {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(600),
                "re-replication did not finish in 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let total = t.elapsed();
        let copy = total - detected;
        let copy_rate = mb(held, copy);
        for s in dep.servers.drain(..) {
            s.stop().await;
        }
        Some(format!(
        "| re-replication after losing 1 of 4 servers ({rerep_mb} MB of file data, {:.0} MB on the lost server): copy rate after detection | {copy_rate:.1} MB/s ({:.1} s total = {:.1} s to detect, dead after 5 s, + {:.1} s to copy) | NATS request-reply {raw_up:.1} MB/s | {:.2} | |",
        held as f64 / 1_048_576.0,
        total.as_secs_f64(),
        detected.as_secs_f64(),
        copy.as_secs_f64(),
        copy_rate / raw_up
    ))
    } else {
        None
    };
    drop(dep);

    let mut out = String::new();
    writeln!(out, "## dfs\n")?;
    writeln!(
        out,
        "{size_mb} MB file, a warm-up upload and download, then {reps} repetitions (each: baselines, an upload, a download), medians of the rates and of the per-repetition ratios, {} KiB chunks, {PARALLEL} chunks in flight, 4 chunk servers in-process; baseline: the same bytes as NATS request-reply in chunk-sized messages against a bare responder, same run, the better of {PARALLEL} and {RAW_FEWER} in flight.\n",
        chunk / 1024
    )?;
    writeln!(
        out,
        "| measure | dfs | raw baseline, same run | ratio | aim |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    writeln!(
        out,
        "| upload, 3 replicas, each fsynced | {up:.1} MB/s | NATS request-reply {raw_up:.1} MB/s | {up_ratio:.2} | >= 0.25 |",
    )?;
    writeln!(
        out,
        "| upload, 3 replicas, against what its transfer costs alone (each chunk published once, NATS copying it to 3 bare responders that reply) | {up:.1} MB/s | fanned-out NATS request {raw_x3:.1} MB/s of file data ({fan_of_raw:.2} of the baseline) | {fan_ratio:.2} | |",
    )?;
    writeln!(
        out,
        "| upload, 3 replicas: disk bytes written | {:.1} MB/s | one writer, chunk files fsynced {disk:.1} MB/s | {:.2} | |",
        3.0 * up,
        3.0 * up / disk
    )?;
    writeln!(
        out,
        "| download, verified on server and client | {down:.1} MB/s | NATS request-reply {raw_down:.1} MB/s | {down_ratio:.2} | >= 0.50 |",
    )?;
    writeln!(
        out,
        "| CPU time of one upload (median): this process (client and servers) + nats-server | {up_cpu} | raw request-reply {raw_up_cpu}; fanned-out {fan_cpu} | | |",
    )?;
    writeln!(
        out,
        "| CPU time of one download (median) | {down_cpu} | raw request-reply {raw_down_cpu} | | |",
    )?;
    writeln!(
        out,
        "| warm-up: the first upload and download after the deployment started (not in the medians) | {cold_up:.1} MB/s up, {cold_down:.1} MB/s down | | | |",
    )?;
    if let Some(row) = rerep_row {
        writeln!(out, "{row}")?;
    }
    Ok(out)
}

/// The other parallelism the raw baseline is measured with.
const RAW_FEWER: usize = 4;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-dfs-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
