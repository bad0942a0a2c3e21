//! Projection work shared by several processes (#13): one owner per projection at a time, chosen by
//! a PostgreSQL advisory lock that standbys only *try* (they never wait on a lock), a fast take-over
//! when the owner dies, and nothing applied twice or skipped across it.
//!
//! Each process here gets its own `application_name` on its database URL, so the test can see in
//! `pg_stat_activity` which process holds a projection's lease, and kill exactly that one.

use e2e::shop_load::{read_model, send_adds};
use e2e::{Services, TestEnv};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A process of the shop context whose database connections are named `name`.
async fn process(env: &TestEnv, name: &str) -> anyhow::Result<Services> {
    let mut config = env.config();
    config.database_url = format!("{}?application_name={name}", env.db.url);
    Services::start(config, &["shop"]).await
}

/// The `application_name` of the connection holding the `shop_dht` lease, if any.
async fn owner(pool: &sqlx::PgPool) -> anyhow::Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND (l.classid::bigint << 32 | l.objid::bigint) = hashtextextended('switchyard.projection.shop_dht', 0)",
    )
    .fetch_optional(pool)
    .await?)
}

/// Waits until some process other than `not` (any, when `None`) holds the lease; its name and how
/// long it took.
async fn wait_owner(pool: &sqlx::PgPool, not: Option<&str>) -> anyhow::Result<(String, Duration)> {
    let t = Instant::now();
    loop {
        if let Some(o) = owner(pool).await? {
            if Some(o.as_str()) != not {
                return Ok((o, t.elapsed()));
            }
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "no process took the shop_dht lease over within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Each command's line exactly once with count 1: an event applied twice would show count 2, one
/// skipped would be missing.
fn expected(prefix: &str, n: usize, carts: usize) -> BTreeMap<String, Vec<(String, i64)>> {
    let mut out: BTreeMap<String, Vec<(String, i64)>> =
        (0..carts).map(|i| (format!("cart-{i}"), vec![])).collect();
    for i in 0..n {
        out.get_mut(&format!("cart-{}", i % carts))
            .unwrap()
            .push((format!("{prefix}-{i}"), 1));
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projection_owner_is_killed_twice_and_another_takes_over_applying_each_event_once(
) -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let pool = sqlx::PgPool::connect(&env.db.url).await?;
    let mut procs = BTreeMap::new();
    for name in ["proc-a", "proc-b", "proc-c"] {
        procs.insert(name.to_string(), process(&env, name).await?);
    }
    let c = env.client().await?;
    let (first, _) = wait_owner(&pool, None).await?;
    // Commands keep coming (through every process) while owners die.
    let sender = {
        let c = c.clone();
        tokio::spawn(async move { send_adds(&c, "kill", 900, 7, 8).await })
    };
    let mut killed = first;
    let mut takeovers = Vec::new();
    for at in [150, 450] {
        while c.stream_len("SHOP").await? < at {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        procs
            .get_mut(&killed)
            .expect("the owner is one of ours")
            .kill();
        let (next, took) = wait_owner(&pool, Some(&killed)).await?;
        eprintln!("killed the owner {killed} at {at} events; {next} took over in {took:?}");
        assert_ne!(next, killed);
        takeovers.push(took);
        killed = next;
    }
    let seq = sender.await??;
    assert_eq!(
        c.stream_len("SHOP").await?,
        900,
        "each command appended once"
    );
    assert_eq!(read_model(&c, 7, seq).await?, expected("kill", 900, 7));
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM runtime.dead_letters")
        .fetch_one(&pool)
        .await?;
    assert_eq!(dead, 0);
    let cp: i64 =
        sqlx::query_scalar("SELECT seq FROM runtime.checkpoints WHERE projection = 'shop_dht'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(cp as u64, seq);
    eprintln!("take-over times: {takeovers:?}");
    Ok(())
}

/// Three processes, idle and then busy: no statement of theirs ever waits on a lock (the old
/// projector's standbys queued on the checkpoint row, `SELECT .. FOR UPDATE`, for as long as the
/// holder waited on NATS), and only one of them holds the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_busy_processes_never_wait_on_a_lock() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let pool = sqlx::PgPool::connect(&env.db.url).await?;
    let _a = process(&env, "proc-a").await?;
    let _b = process(&env, "proc-b").await?;
    let _c = process(&env, "proc-c").await?;
    let c = env.client().await?;
    wait_owner(&pool, None).await?;
    let sampler = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let (mut samples, mut waiting, mut holders_seen) = (0u32, Vec::new(), 0i64);
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                // Any backend of this database waiting for a lock, whatever the lock.
                let w: Vec<String> = sqlx::query_scalar(
                    "SELECT coalesce(application_name, '') || ': ' || coalesce(query, '') FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_all(&pool)
                .await?;
                waiting.extend(w);
                let holders: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                )
                .fetch_one(&pool)
                .await?;
                holders_seen = holders_seen.max(holders);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, anyhow::Error>((samples, waiting, holders_seen))
        })
    };
    // Two seconds idle, then commands through all three processes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seq = send_adds(&c, "busy", 300, 5, 16).await?;
    let (samples, waiting, holders) = sampler.await??;
    assert!(samples > 50, "the sampler ran ({samples} samples)");
    assert!(
        waiting.is_empty(),
        "statements waited on a lock: {waiting:?}"
    );
    assert_eq!(holders, 1, "one lease holder for the one projection");
    assert_eq!(read_model(&c, 5, seq).await?, expected("busy", 300, 5));
    Ok(())
}
