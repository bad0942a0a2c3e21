//! The runtime under faults and scale-out, through the shop context: two processes sharing work, a
//! crash in the middle of a stream of commands, nats-server restarted, PostgreSQL stopped.

use e2e::shop_load::{add, read_model, send_adds};
use e2e::{Client, PgCluster, Services, TestDb, TestEnv};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

fn expected(prefixes: &[(&str, usize)], carts: usize) -> BTreeMap<String, Vec<(String, i64)>> {
    let mut out: BTreeMap<String, Vec<(String, i64)>> =
        (0..carts).map(|i| (format!("cart-{i}"), vec![])).collect();
    for (prefix, n) in prefixes {
        for i in 0..*n {
            out.get_mut(&format!("cart-{}", i % carts))
                .unwrap()
                .push((format!("{prefix}-{i}"), 1));
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_commands_and_projection_and_agree() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _a = env.services(&["shop"]).await?;
    let _b = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let seq = send_adds(&c, "two", 400, 7, 32).await?;
    assert_eq!(read_model(&c, 7, seq).await?, expected(&[("two", 400)], 7));
    assert_eq!(c.stream_len("SHOP").await?, 400);
    // Both processes answered commands: collect $SRV.STATS replies from every instance.
    let inbox = c.nats.new_inbox();
    let mut sub = c.nats.subscribe(inbox.clone()).await?;
    c.nats
        .publish_with_reply("$SRV.STATS.shop", inbox, "".into())
        .await?;
    let mut served = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(
        Duration::from_millis(500),
        futures::StreamExt::next(&mut sub),
    )
    .await
    {
        let v: Value = serde_json::from_slice(&m.payload)?;
        let n: u64 = v["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["num_requests"].as_u64().unwrap_or(0))
            .sum();
        served.push(n);
    }
    assert_eq!(served.len(), 2, "two shop instances answer $SRV.STATS");
    assert!(
        served.iter().all(|n| *n > 0),
        "both instances served commands: {served:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_stream_loses_nothing_and_counts_nothing_twice() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut first = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let sender = {
        let c = c.clone();
        tokio::spawn(async move { send_adds(&c, "crash", 300, 5, 8).await })
    };
    // Let part of the stream through, then crash the service and start a new one.
    while c.stream_len("SHOP").await.unwrap_or(0) < 80 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill();
    let _second = env.services(&["shop"]).await?;
    let seq = sender.await??;
    assert_eq!(
        c.stream_len("SHOP").await?,
        300,
        "each command appended exactly once"
    );
    assert_eq!(
        read_model(&c, 5, seq).await?,
        expected(&[("crash", 300)], 5)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_nats_loses_no_acknowledged_event() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let seq = send_adds(&c, "before", 100, 4, 8).await?;
    assert_eq!(
        read_model(&c, 4, seq).await?,
        expected(&[("before", 100)], 4)
    );
    env.nats.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.nats.restart()?;
    let c = env.client().await?;
    assert_eq!(
        c.stream_len("SHOP").await?,
        100,
        "every acknowledged event survived"
    );
    let seq = send_adds(&c, "after", 100, 4, 8).await?;
    assert_eq!(c.stream_len("SHOP").await?, 200);
    assert_eq!(
        read_model(&c, 4, seq).await?,
        expected(&[("before", 100), ("after", 100)], 4)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_append_while_postgres_is_down_and_projections_catch_up() -> anyhow::Result<()> {
    e2e::init_logging();
    let pg = PgCluster::start()?;
    let db = TestDb::create_on(&pg.admin_url()).await?;
    let nats = e2e::NatsServer::start()?;
    let _svc = Services::start(runtime::Config::for_urls(&nats.url(), &db.url), &["shop"]).await?;
    let c = Client::connect(&nats.url()).await?;
    send_adds(&c, "up", 50, 3, 8).await?;
    pg.stop()?;
    // Commands still append: the command side needs only JetStream.
    let seq = send_adds(&c, "down", 100, 3, 8).await?;
    assert_eq!(c.stream_len("SHOP").await?, 150);
    let q = c
        .request(
            "shop.query.cart",
            &json!({"customer_id": "cart-0", "min_seq": seq}),
        )
        .await?;
    assert_eq!(
        q.code(),
        Some("unavailable"),
        "queries say the read model is unavailable: {}",
        q.body
    );
    pg.resume()?;
    assert_eq!(
        read_model(&c, 3, seq).await?,
        expected(&[("up", 50), ("down", 100)], 3)
    );
    drop(db);
    Ok(())
}

/// A process whose cached cart is stale must not refuse a command that the other process made valid:
/// the refusal is checked against the stream first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cache_in_another_process_never_refuses_a_valid_command() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _a = env.services(&["shop"]).await?;
    let _b = env.services(&["shop"]).await?;
    let c = env.client().await?;
    // Requests spread over both processes (queue group): both end up caching the cart, and each
    // update below is decided by whichever process gets it, on whatever it cached.
    for round in 0..20 {
        let item = format!("item-{round}");
        let r = c.request("shop.cmd.add-item", &add("stale", &item)).await?;
        assert!(r.code().is_none(), "{}", r.body);
        let r = c
            .request(
                "shop.cmd.update-item",
                &json!({"customer_id": "stale", "item_id": item, "new_count": 3}),
            )
            .await?;
        assert!(r.code().is_none(), "round {round}: {}", r.body);
        let r = c
            .request(
                "shop.cmd.remove-item",
                &json!({"customer_id": "stale", "item_id": item}),
            )
            .await?;
        assert!(r.code().is_none(), "round {round}: {}", r.body);
    }
    assert_eq!(c.stream_len("SHOP").await?, 60);
    Ok(())
}

/// A backlog replayed into a fresh database by two processes at once, then by one alone, in batches
/// of 10 (alone, a process fetches its next batch while committing the last): the read model is
/// exactly the commands' each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_replaying_a_backlog_in_small_prefetched_batches_agree() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let c = env.client().await?;
    let seq = {
        let _first = env.services(&["shop"]).await?;
        send_adds(&c, "backlog", 300, 5, 32).await?
    };
    let db = TestDb::create().await?;
    let mut config = env.config();
    config.database_url = db.url.clone();
    config.projection_batch = 10;
    let (a, b) = tokio::join!(
        Services::start(config.clone(), &["shop"]),
        Services::start(config, &["shop"])
    );
    let (a, b) = (a?, b?);
    assert_eq!(
        read_model(&c, 5, seq).await?,
        expected(&[("backlog", 300)], 5)
    );
    drop((a, b));
    // And one process alone (it fetches each next batch while committing the last).
    let alone = TestDb::create().await?;
    let mut config = env.config();
    config.database_url = alone.url.clone();
    config.projection_batch = 10;
    let _one = Services::start(config, &["shop"]).await?;
    assert_eq!(
        read_model(&c, 5, seq).await?,
        expected(&[("backlog", 300)], 5)
    );
    for url in [&db.url, &alone.url] {
        let pool = sqlx::PgPool::connect(url).await?;
        let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM runtime.dead_letters")
            .fetch_one(&pool)
            .await?;
        assert_eq!(dead, 0);
        let cp: i64 =
            sqlx::query_scalar("SELECT seq FROM runtime.checkpoints WHERE projection = 'shop_dht'")
                .fetch_one(&pool)
                .await?;
        assert_eq!(cp as u64, seq);
    }
    Ok(())
}

/// A command whose first attempt was stored but never answered (the reply lost in a fail-over),
/// sent again with the same `Nats-Msg-Id` to a process that has not seen the cart: it gets the first
/// reply (success, the first attempt's `seq`), not a refusal decided on the state that already holds
/// its own event. Found by the fault tests (`faults.rs`): `remove-item` answered `not_found`,
/// `add-module` `conflict`, `checkout` "the cart is empty" for commands that had been applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sent_again_after_its_unanswered_first_attempt_was_stored_gets_the_first_reply(
) -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut first = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let r = c
        .request("shop.cmd.add-item", &add("lost-reply", "i1"))
        .await?;
    assert!(r.code().is_none(), "{}", r.body);
    // The first attempt of `remove-item` (msg id rm-1) as it was stored; its reply never came.
    let js = async_nats::jetstream::new(c.nats.clone());
    let subject = format!("{}.{}", shop::EVENTS, schemas::encode_token("lost-reply"));
    let event = json!({"id": uuid::Uuid::now_v7(), "type": "ItemRemoved",
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": {"customer_id": "lost-reply", "item_id": "i1"}});
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", "rm-1");
    let stored = js
        .publish_with_headers(subject, h, serde_json::to_vec(&event)?.into())
        .await?
        .await?;
    // Sent again to a process that has not cached the cart.
    first.kill();
    let _second = env.services(&["shop"]).await?;
    let r = c
        .request_with_id(
            "shop.cmd.remove-item",
            "rm-1",
            &json!({"customer_id": "lost-reply", "item_id": "i1"}),
        )
        .await?;
    assert!(
        r.code().is_none(),
        "the first reply, not a refusal: {}",
        r.body
    );
    assert_eq!(r.body["seq"].as_u64(), Some(stored.sequence));
    assert_eq!(r.body["items"], json!([]));
    assert_eq!(c.stream_len("SHOP").await?, 2, "nothing appended again");
    // A refusal of a command that was never stored stays a refusal.
    let r = c
        .request_with_id(
            "shop.cmd.remove-item",
            "rm-2",
            &json!({"customer_id": "lost-reply", "item_id": "i1"}),
        )
        .await?;
    assert_eq!(r.code(), Some("not_found"), "{}", r.body);
    assert_eq!(c.stream_len("SHOP").await?, 2);
    Ok(())
}
