//! Faults under load, judged by the history checker (`e2e::history`): a 3-node JetStream cluster,
//! three `switchyard run` processes (the real binary) and a PostgreSQL of the test's own, a steady
//! mixed load over all five contexts, and one fault per test:
//! - kill -9 the nats-server that leads the busiest stream, then start it again;
//! - SIGSTOP that node for 10 s, then SIGCONT;
//! - kill -9 one of the three `switchyard run` processes, then start it again;
//! - stop PostgreSQL for 10 s.
//!
//! Pass: no acknowledged command lost or doubled, no unexpected event, read models equal to the
//! replay of their streams, every dfs file readable with each chunk at the replication factor. Each
//! test prints the checker's counts and the failover gap (how long commands were refused or timed
//! out after the fault). Also: 64 clients racing on one cart through three processes lose no update.
//!
//! These tests are named `faults_*`: nextest runs them one at a time (`.config/nextest.toml`).

use e2e::history::{self, History};
use e2e::load::{self, World};
use std::time::Duration;

/// Replication of every stream, consumer and bucket (`SWITCHYARD_REPLICAS`).
const REPLICAS: u32 = 3;
/// Chunk replication factor of dfs (the default).
const DFS_FACTOR: usize = 3;

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    PauseLeader,
    KillProcess,
    StopPostgres,
}

/// Runs the load, injects `fault` after a steady start, keeps the load on for a while after the
/// fault has healed, then checks the history.
async fn scenario(fault: Fault) -> anyhow::Result<()> {
    let mut world = World::start(3, REPLICAS).await?;
    let run = format!("f{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let h = History::new(&run);
    let load = load::start_load(&world, &h, 4).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let busiest = world.busiest_stream().await?;
    let t = h.now();
    let what = match fault {
        Fault::KillLeader => {
            let leader = world.nats.leader_of(&world.client, busiest).await?;
            world.nats.kill(leader);
            tokio::time::sleep(Duration::from_secs(5)).await;
            world.nats.restart(leader)?;
            format!(
                "kill -9 nats node {} (leader of {busiest}), restarted after 5 s",
                world.nats.nodes[leader].name
            )
        }
        Fault::PauseLeader => {
            let leader = world.nats.leader_of(&world.client, busiest).await?;
            world.nats.pause(leader);
            tokio::time::sleep(Duration::from_secs(10)).await;
            world.nats.resume(leader);
            format!(
                "SIGSTOP nats node {} (leader of {busiest}) for 10 s",
                world.nats.nodes[leader].name
            )
        }
        Fault::KillProcess => {
            world.procs[1].kill();
            tokio::time::sleep(Duration::from_secs(3)).await;
            world.procs[1].restart().await?;
            "kill -9 switchyard process p1, restarted after 3 s".to_string()
        }
        Fault::StopPostgres => {
            world.pg.stop()?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            world.pg.resume()?;
            "PostgreSQL stopped for 10 s".to_string()
        }
    };
    let healed = h.now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    load.stop().await?;
    let gap = h.gap_after(t, healed - t + Duration::from_secs(10));
    let (mut report, _events) = history::check(&world.client, &h).await?;
    history::check_files(
        &world.client,
        &h,
        DFS_FACTOR,
        Duration::from_secs(40),
        &mut report,
    )
    .await?;
    println!(
        "fault: {what} (at {:.1} s, healed at {:.1} s)",
        t.as_secs_f64(),
        healed.as_secs_f64()
    );
    println!("failover gap: {gap}");
    println!(
        "attempts from the fault until 10 s after it healed: {}",
        history::attempts_summary(&h, t, healed + Duration::from_secs(10))
    );
    println!(
        "dfs puts refused during the run: {}",
        h.dfs_failures().len()
    );
    println!("{report}");
    assert!(report.acknowledged > 100, "the load ran: {report}");
    assert!(report.passed(), "{what}: {report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_kill_the_leader_of_the_busiest_stream() -> anyhow::Result<()> {
    scenario(Fault::KillLeader).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_pause_a_node_for_10_s() -> anyhow::Result<()> {
    scenario(Fault::PauseLeader).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_kill_one_of_three_processes() -> anyhow::Result<()> {
    scenario(Fault::KillProcess).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_stop_postgres_for_10_s() -> anyhow::Result<()> {
    scenario(Fault::StopPostgres).await
}

/// 64 clients add the same item to one cart at once through three processes: the count is the number
/// of acknowledged adds, each is in the stream once, and the read model agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_64_clients_racing_on_one_cart_lose_no_update() -> anyhow::Result<()> {
    let world = World::start(3, REPLICAS).await?;
    let run = format!("r{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let h = History::new(&run);
    let cart = format!("{run}-cart");
    let acked = load::race_one_cart(&world, &h, &cart, 64, 8, 4).await?;
    let (report, events) = history::check(&world.client, &h).await?;
    println!("64 racers x 4 adds: {acked} acknowledged");
    println!("{report}");
    let stored = events
        .iter()
        .filter(|e| e.stream == "SHOP" && e.kind == "ItemAdded")
        .count();
    assert_eq!(acked, 64 * 4);
    assert_eq!(stored, acked, "one ItemAdded per acknowledged add");
    let v = world
        .client
        .request(
            "shop.query.cart",
            &serde_json::json!({"customer_id": cart, "min_seq": events.iter().map(|e| e.seq).max()}),
        )
        .await?
        .ok();
    assert_eq!(
        v["items"][0]["item_count"].as_u64(),
        Some(acked as u64),
        "{v}"
    );
    assert!(report.passed(), "{report}");
    // Every process decided some of them.
    let served = served_per_process(&world.client, "shop").await?;
    assert_eq!(served.len(), 3, "three shop instances: {served:?}");
    assert!(
        served.iter().all(|n| *n > 0),
        "each process served commands: {served:?}"
    );
    Ok(())
}

/// `num_requests` of every instance of `service` (from `$SRV.STATS`).
async fn served_per_process(c: &e2e::Client, service: &str) -> anyhow::Result<Vec<u64>> {
    let inbox = c.nats.new_inbox();
    let mut sub = c.nats.subscribe(inbox.clone()).await?;
    c.nats
        .publish_with_reply(format!("$SRV.STATS.{service}"), inbox, "".into())
        .await?;
    let mut served = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(
        Duration::from_millis(700),
        futures::StreamExt::next(&mut sub),
    )
    .await
    {
        let v: serde_json::Value = serde_json::from_slice(&m.payload)?;
        served.push(
            v["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["num_requests"].as_u64().unwrap_or(0))
                .sum(),
        );
    }
    Ok(served)
}
