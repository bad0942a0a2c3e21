//! End-to-end tests of the queries added for the dashboard (README, Dashboard; schemas in
//! `schemas/src/live.rs`): `engine.query.systems` (the systems to pick from) and
//! `dispatch.query.queue` (the requests waiting in each cart's FIFO queue). Real nats-server and
//! PostgreSQL, the services in-process, talked to only over NATS as a client would.

use e2e::{Client, TestEnv};
use serde_json::{json, Value};
use std::time::Duration;

async fn ok(c: &Client, subject: &str, body: Value) -> Value {
    c.request(subject, &body).await.expect("reply").ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systems_lists_every_system_with_its_module_count() {
    let env = TestEnv::new().await.unwrap();
    let _svc = env.services(&["engine"]).await.unwrap();
    let c = env.client().await.unwrap();
    let r = ok(&c, "engine.query.systems", json!({})).await;
    assert_eq!(r, json!({"systems": [], "total": 0}), "no system yet");
    for m in ["ls-d1", "ls-d2", "ls-d3"] {
        ok(
            &c,
            "engine.cmd.add-module",
            json!({"module_id": m, "driver_id": "display", "name": "Display"}),
        )
        .await;
    }
    // Ids may hold any UTF-8: the answer has them as they were given.
    let odd = "zone/é b\u{0}1";
    ok(
        &c,
        "engine.cmd.set-system",
        json!({"system_id": "ls-hall", "modules": ["ls-d1", "ls-d2", "ls-d3"]}),
    )
    .await;
    let last = ok(
        &c,
        "engine.cmd.set-system",
        json!({"system_id": odd, "modules": ["ls-d2"]}),
    )
    .await;
    let r = ok(&c, "engine.query.systems", json!({"min_seq": last["seq"]})).await;
    assert_eq!(r["total"], 2, "{r}");
    let systems = r["systems"].as_array().unwrap();
    assert_eq!(systems.len(), 2, "{r}");
    assert_eq!(systems[0]["system_id"], "ls-hall");
    assert_eq!(systems[0]["modules"], 3);
    assert_eq!(systems[1]["system_id"], odd);
    assert_eq!(systems[1]["modules"], 1);
    assert_eq!(systems[1]["seq"], last["seq"]);
    // A re-order with fewer modules shows at once (min_seq).
    let shrunk = ok(
        &c,
        "engine.cmd.set-system",
        json!({"system_id": "ls-hall", "modules": ["ls-d3"]}),
    )
    .await;
    let r = ok(
        &c,
        "engine.query.systems",
        json!({"min_seq": shrunk["seq"], "limit": 1}),
    )
    .await;
    assert_eq!(
        r,
        json!({"systems": [{"system_id": "ls-hall", "modules": 1, "seq": shrunk["seq"]}], "total": 2}),
        "limit cuts the list, total counts them all"
    );
    for bad in [
        json!({"limit": 0}),
        json!({"limit": 5001}),
        json!({"system_id": "x"}),
    ] {
        c.request("engine.query.systems", &bad)
            .await
            .unwrap()
            .assert_error("invalid_request", 400);
    }
}

async fn report(c: &Client, cart: &str, report: &str) -> Value {
    ok(
        c,
        "dispatch.cmd.cart-report",
        json!({"cart_id": cart, "report": report}),
    )
    .await
}

/// Polls `dispatch.query.queue` of `cart` until its request ids are `want`.
async fn queue_becomes(c: &Client, cart: &str, want: &[&str]) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = ok(c, "dispatch.query.queue", json!({"cart_id": cart})).await;
        let ids: Vec<&str> = r["queues"][0]["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["request_id"].as_str().unwrap())
            .collect();
        if ids == want {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue of {cart}: {ids:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_shows_the_requests_waiting_for_a_cart_in_order() {
    let env = TestEnv::new().await.unwrap();
    let _svc = env.services(&["dispatch"]).await.unwrap();
    let c = env.client().await.unwrap();
    let cart = "queue-cart";
    ok(
        &c,
        "dispatch.cmd.register-cart",
        json!({"cart_id": cart, "home": "bay-b"}),
    )
    .await;
    ok(&c, "dispatch.cmd.register-ssd", json!({"ssd_id": "queue-ssd", "cart_id": cart, "capacity_bytes": 1_000_000_000_000u64, "health": "ok"})).await;
    for d in ["queue-a", "queue-b"] {
        ok(
            &c,
            "dispatch.cmd.put-dataset",
            json!({"ssd_id": "queue-ssd", "dataset": d, "size_bytes": 1_000_000_000u64}),
        )
        .await;
    }
    let r = ok(&c, "dispatch.query.queue", json!({"cart_id": cart})).await;
    assert_eq!(r["queues"], json!([{"cart_id": cart, "requests": []}]));
    // Only this cart holds the datasets: the first request reserves it, the others wait in order.
    let mut ids = Vec::new();
    for (server, datasets) in [
        ("ml-node-1", json!(["queue-a"])),
        ("ml-node-5", json!(["queue-a", "queue-b"])),
        ("ml-node-9", json!(["queue-b"])),
    ] {
        let r = ok(
            &c,
            "dispatch.cmd.request-datasets",
            json!({"server_id": server, "datasets": datasets}),
        )
        .await;
        ids.push(r["request_id"].as_str().unwrap().to_string());
    }
    let r = queue_becomes(&c, cart, &[&ids[1], &ids[2]]).await;
    assert_eq!(
        r["queues"][0]["requests"],
        json!([
            {"request_id": ids[1], "server_id": "ml-node-5", "datasets": ["queue-a", "queue-b"]},
            {"request_id": ids[2], "server_id": "ml-node-9", "datasets": ["queue-b"]},
        ])
    );
    assert!(r["seq"].as_u64().unwrap() > 0);
    // Every cart with a non-empty queue: only this one (the default carts wait for nothing).
    let all = ok(&c, "dispatch.query.queue", json!({})).await;
    assert_eq!(all["queues"], r["queues"], "{all}");
    // The trip done, the next in line leaves and the queue moves up.
    for rep in [
        "departed",
        "docked",
        "transfer_started",
        "transfer_completed",
        "undocked",
        "returned",
    ] {
        report(&c, cart, rep).await;
    }
    queue_becomes(&c, cart, &[&ids[2]]).await;
    c.request("dispatch.query.queue", &json!({"cart_id": "no-such-cart"}))
        .await
        .unwrap()
        .assert_error("not_found", 404);
    c.request("dispatch.query.queue", &json!({"cart": cart}))
        .await
        .unwrap()
        .assert_error("invalid_request", 400);
}
