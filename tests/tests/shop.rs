//! shop end to end, through NATS and HTTP as a client: every subject of contract section 3.

use e2e::{Client, TestEnv};
use serde_json::{json, Value};
use std::time::Duration;

fn add(customer: &str, item: &str, count: i64, price: f64) -> Value {
    json!({"customer_id": customer, "item_id": item, "offered_price": price, "item_count": count,
           "special_sale": null, "sale_expiration": null})
}

/// `GET /items/{customer}` on the gateway at `base`, as JSON.
async fn items_over_http(
    http: &reqwest::Client,
    base: &str,
    customer: &str,
) -> anyhow::Result<Value> {
    Ok(http
        .get(format!("{base}/items/{customer}"))
        .send()
        .await?
        .json()
        .await?)
}

async fn cart_at(c: &Client, customer: &str, seq: u64) -> Value {
    c.request(
        "shop.query.cart",
        &json!({"customer_id": customer, "min_seq": seq}),
    )
    .await
    .unwrap()
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_and_query_round_trips() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    for customer in ["jane.doe@example.com", "a*b>c", "x/y z", "plain"] {
        let r = c
            .request("shop.cmd.add-item", &add(customer, "apple.red", 2, 1.25))
            .await?
            .ok();
        assert_eq!(r["customer_id"], customer);
        assert_eq!(r["items"][0]["item_id"], "apple.red");
        assert_eq!(r["items"][0]["item_count"], 2);
        assert_eq!(r["items"][0]["offered_price"], 1.25);
        assert!(r["seq"].as_u64().unwrap() > 0);
        let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let r = c
            .request(
                "shop.cmd.add-item",
                &json!({"customer_id": customer, "item_id": "pear", "offered_price": 3.0,
                "item_count": 1, "special_sale": 2.5, "sale_expiration": until}),
            )
            .await?
            .ok();
        assert_eq!(r["items"].as_array().unwrap().len(), 2);
        let r = c
            .request("shop.cmd.add-item", &add(customer, "apple.red", 3, 1.5))
            .await?
            .ok();
        assert_eq!(
            r["items"][0]["item_count"], 5,
            "adding again adds to the count"
        );
        assert_eq!(
            r["items"][0]["offered_price"], 1.5,
            "and takes the new price"
        );
        let r = c
            .request(
                "shop.cmd.update-item",
                &json!({"customer_id": customer, "item_id": "apple.red", "new_count": 4}),
            )
            .await?
            .ok();
        assert_eq!(r["items"][0]["item_count"], 4);
        let seq = r["seq"].as_u64().unwrap();
        let q = cart_at(&c, customer, seq).await;
        assert_eq!(
            q["items"], r["items"],
            "the read model agrees with the command reply"
        );
        let d = c
            .request(
                "shop.query.dht-get",
                &json!({"key": customer, "min_seq": seq}),
            )
            .await?
            .ok();
        assert_eq!(d["key"], customer);
        assert_eq!(d["value"]["items"], r["items"]);
        assert_eq!(
            d["shard"].as_u64().unwrap(),
            d["hash_key"].as_u64().unwrap() % 16
        );
        let r = c
            .request("shop.cmd.checkout", &json!({"customer_id": customer}))
            .await?
            .ok();
        assert_eq!(r["customer_id"], customer);
        assert!(r["order_id"].as_str().is_some_and(|s| !s.is_empty()));
        let lines = r["items"].as_array().unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            json!({"item_id": "apple.red", "item_count": 4, "unit_price": 1.5})
        );
        assert_eq!(
            lines[1],
            json!({"item_id": "pear", "item_count": 1, "unit_price": 2.5}),
            "the running sale price"
        );
        assert_eq!(r["total"], 8.5);
        let seq = r["seq"].as_u64().unwrap();
        assert_eq!(
            cart_at(&c, customer, seq).await["items"],
            json!([]),
            "the cart is then empty"
        );
        let d = c
            .request(
                "shop.query.dht-get",
                &json!({"key": customer, "min_seq": seq}),
            )
            .await?
            .ok();
        assert_eq!(d["value"], Value::Null);
    }
    // remove-item
    let r = c
        .request("shop.cmd.add-item", &add("rm", "a", 1, 1.0))
        .await?
        .ok();
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    let r = c
        .request(
            "shop.cmd.remove-item",
            &json!({"customer_id": "rm", "item_id": "a"}),
        )
        .await?
        .ok();
    assert_eq!(r["items"], json!([]));
    // the unknown customer has an empty cart
    let q = c
        .request("shop.query.cart", &json!({"customer_id": "nobody"}))
        .await?
        .ok();
    assert_eq!(q, json!({"customer_id": "nobody", "items": [], "seq": 0}));
    // dht-stats
    let s = c
        .request("shop.query.dht-stats", &json!({"min_seq": r["seq"]}))
        .await?
        .ok();
    assert_eq!(s["shards"], 16);
    let keys: u64 = s["keys_per_shard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        keys, 1,
        "only the cart of `rm` (emptied, not checked out) is still stored"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_codes_append_nothing_and_the_service_keeps_answering() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    c.request("shop.cmd.add-item", &add("e", "a", 1, 1.0))
        .await?
        .ok();
    let before = c.stream_len("SHOP").await?;
    let raw = |s: &'static str| bytes::Bytes::from_static(s.as_bytes());
    let cases: Vec<(&str, bytes::Bytes, &str, u16)> = vec![
        ("shop.cmd.add-item", raw("not json"), "invalid_request", 400),
        ("shop.cmd.add-item", raw("[1,2]"), "invalid_request", 400),
        (
            "shop.cmd.add-item",
            raw(r#"{"customer_id": "e", "item_id": "a", "offered_price": "1", "item_count": 1}"#),
            "invalid_request",
            400,
        ),
        (
            "shop.cmd.add-item",
            raw(r#"{"customer_id": "e", "item_id": "a", "offered_price": 1}"#),
            "invalid_request",
            400,
        ),
        (
            "shop.cmd.add-item",
            raw(r#"{"customer_id": "e", "item_id": "a", "offered_price": 1, "item_count": -2}"#),
            "invalid_request",
            400,
        ),
        (
            "shop.cmd.add-item",
            raw(r#"{"customer_id": "e", "item_id": "a", "offered_price": -1, "item_count": 2}"#),
            "invalid_request",
            400,
        ),
        (
            "shop.cmd.add-item",
            raw(r#"{"customer_id": "e", "item_id": "a", "offered_price": 1, "item_count": 1.5}"#),
            "invalid_request",
            400,
        ),
        (
            "shop.cmd.add-item",
            raw(r#"{"customer_id": "", "item_id": "a", "offered_price": 1, "item_count": 1}"#),
            "invalid_request",
            400,
        ),
        (
            "shop.cmd.add-item",
            raw(
                r#"{"customer_id": "e", "item_id": "a", "offered_price": 1, "item_count": 1, "bogus": 1}"#,
            ),
            "invalid_request",
            400,
        ),
        (
            "shop.cmd.update-item",
            raw(r#"{"customer_id": "e", "item_id": "a", "new_count": -1}"#),
            "invalid_request",
            400,
        ),
        (
            "shop.cmd.update-item",
            raw(r#"{"customer_id": "e", "item_id": "zzz", "new_count": 1}"#),
            "not_found",
            404,
        ),
        (
            "shop.cmd.remove-item",
            raw(r#"{"customer_id": "e", "item_id": "zzz"}"#),
            "not_found",
            404,
        ),
        (
            "shop.cmd.checkout",
            raw(r#"{"customer_id": "empty"}"#),
            "conflict",
            409,
        ),
        ("shop.cmd.checkout", raw(r#"{}"#), "invalid_request", 400),
        (
            "shop.query.cart",
            raw(r#"{"customer_id": 5}"#),
            "invalid_request",
            400,
        ),
        ("shop.query.dht-get", raw(r#"{}"#), "invalid_request", 400),
        (
            "shop.cmd.add-item",
            bytes::Bytes::from(vec![b' '; 2 * 1024 * 1024]),
            "payload_too_large",
            413,
        ),
    ];
    for (subject, body, code, status) in cases {
        let r = c.request_raw(subject, None, body.clone()).await?;
        r.assert_error(code, status);
    }
    let long = "x".repeat(257);
    c.request("shop.cmd.add-item", &add(&long, "a", 1, 1.0))
        .await?
        .assert_error("invalid_request", 400);
    assert_eq!(
        c.stream_len("SHOP").await?,
        before,
        "a rejected command appends nothing"
    );
    // still answering
    c.request("shop.cmd.add-item", &add("e", "b", 1, 1.0))
        .await?
        .ok();
    // min_seq that never comes: unavailable after the wait
    let cfg_wait = c
        .request(
            "shop.query.cart",
            &json!({"customer_id": "e", "min_seq": 1_000_000}),
        )
        .await?;
    cfg_wait.assert_error("unavailable", 503);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_adds_to_one_cart_leave_fifty_items() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.request(
                "shop.cmd.add-item",
                &add("busy", &format!("item-{i}"), 1, 1.0),
            )
            .await
        }));
    }
    let mut max_seq = 0;
    for t in tasks {
        let r = t.await??.ok();
        max_seq = max_seq.max(r["seq"].as_u64().unwrap());
    }
    let q = cart_at(&c, "busy", max_seq).await;
    assert_eq!(q["items"].as_array().unwrap().len(), 50);
    assert_eq!(c.stream_len("SHOP").await?, 50);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_msg_id_twice_appends_once_and_replies_the_same() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let first = c
        .request_with_id("shop.cmd.add-item", "req-1", &add("idem", "a", 1, 1.0))
        .await?
        .ok();
    let again = c
        .request_with_id("shop.cmd.add-item", "req-1", &add("idem", "a", 1, 1.0))
        .await?
        .ok();
    assert_eq!(first, again);
    assert_eq!(c.stream_len("SHOP").await?, 1);
    // a remove sent twice: the second gets the first reply, not not_found
    let r1 = c
        .request_with_id(
            "shop.cmd.remove-item",
            "req-2",
            &json!({"customer_id": "idem", "item_id": "a"}),
        )
        .await?
        .ok();
    let r2 = c
        .request_with_id(
            "shop.cmd.remove-item",
            "req-2",
            &json!({"customer_id": "idem", "item_id": "a"}),
        )
        .await?
        .ok();
    assert_eq!(r1, r2);
    // concurrent duplicates
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.request_with_id("shop.cmd.add-item", "req-3", &add("idem", "b", 2, 1.0))
                .await
        }));
    }
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await??.ok());
    }
    assert!(replies.windows(2).all(|w| w[0] == w[1]), "{replies:?}");
    assert_eq!(c.stream_len("SHOP").await?, 3);
    Ok(())
}

/// A command sent again whose first reply was never remembered (the process stored the event and
/// then lost the reply: killed, or the store's ack came too late) is answered from its stored
/// event, found by its msg id, not decided again on a state that already holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_stored_but_not_remembered_is_answered_from_its_event() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    c.request("shop.cmd.add-item", &add("forgot", "a", 2, 3.0))
        .await?
        .ok();
    let first = c
        .request_with_id(
            "shop.cmd.checkout",
            "co-1",
            &json!({"customer_id": "forgot"}),
        )
        .await?
        .ok();
    // Forget every remembered reply, as if the first reply had never been recorded.
    let js = async_nats::jetstream::new(c.nats.clone());
    js.get_stream("SWITCHYARD_IDEMPOTENCY")
        .await?
        .purge()
        .await?;
    let again = c
        .request_with_id(
            "shop.cmd.checkout",
            "co-1",
            &json!({"customer_id": "forgot"}),
        )
        .await?
        .ok();
    assert_eq!(first, again);
    assert_eq!(c.stream_len("SHOP").await?, 2);
    // A different msg id on the emptied cart is decided, and refused.
    let other = c
        .request_with_id(
            "shop.cmd.checkout",
            "co-2",
            &json!({"customer_id": "forgot"}),
        )
        .await?;
    assert_eq!(other.code(), Some("conflict"), "{}", other.body);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postcard_bodies_get_postcard_replies() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let cmd = schemas::shop::AddItem {
        customer_id: "pc".into(),
        item_id: "a".into(),
        offered_price: 2.5,
        item_count: 3,
        special_sale: None,
        sale_expiration: None,
    };
    let mut h = async_nats::HeaderMap::new();
    h.insert("Content-Type", "application/postcard");
    let msg = c
        .nats
        .request_with_headers(
            "shop.cmd.add-item",
            h.clone(),
            postcard::to_stdvec(&cmd)?.into(),
        )
        .await?;
    let cart: schemas::shop::Cart = postcard::from_bytes(&msg.payload)?;
    assert_eq!(cart.items[0].item_count, 3);
    assert_eq!(cart.items[0].offered_price, 2.5);
    // an error in postcard
    let msg = c
        .nats
        .request_with_headers(
            "shop.cmd.checkout",
            h,
            postcard::to_stdvec(&schemas::shop::Checkout {
                customer_id: "none".into(),
            })?
            .into(),
        )
        .await?;
    let err: schemas::ErrorBody = postcard::from_bytes(&msg.payload)?;
    assert_eq!(err.error.code, schemas::ErrorCode::Conflict);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_of_the_original_service() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let svc = env.services(&["shop", "gateway"]).await?;
    let base = format!("http://{}", svc.http_addr.unwrap());
    let http = reqwest::Client::new();
    let r = http.post(format!("{base}/item/jea-265/036000291459")).json(&json!({"offeredPrice": 50, "itemCount": 6, "specialSale": null, "saleExpiration": null})).send().await?;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await?;
    assert_eq!(v["customerId"], "jea-265");
    assert_eq!(v["items"][0]["itemCount"], 6);
    // Read your writes, at once, as with the original (synchronous) service.
    let v = items_over_http(&http, &base, "jea-265").await?;
    assert_eq!(v["items"][0]["itemCount"], 6, "{v}");
    let r = http
        .post(format!("{base}/items/jea-265/other"))
        .json(&json!({"unitCount": 2, "offeredPrice": 10}))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "the alias with unitCount");
    let r = http
        .put(format!("{base}/item/jea-265/036000291459"))
        .json(&json!({"newCount": 3}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let r = http
        .delete(format!("{base}/item/jea-265/other"))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let r = http
        .put(format!("{base}/item/jea-265/nope"))
        .json(&json!({"newCount": 3}))
        .send()
        .await?;
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("{base}/item/jea-265/x"))
        .body("not json")
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    // No waiting for the projection: the gateway asks for the cart's last event.
    let v = items_over_http(&http, &base, "jea-265").await?;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["itemCount"], 3);
    let r = http.delete(format!("{base}/items/jea-265")).send().await?;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await?;
    assert_eq!(v["total"], 150.0);
    let r = http.delete(format!("{base}/items/jea-265")).send().await?;
    assert_eq!(r.status(), 409, "checkout of an empty cart");
    let _ = Duration::from_secs(0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_health_and_ready_announcement() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let c = env.client().await?;
    let mut ready = c.nats.subscribe("engine.system").await?;
    c.nats.flush().await?;
    let _svc = env.services(&["shop"]).await?;
    let m = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut ready),
    )
    .await?
    .unwrap();
    assert_eq!(&m.payload[..], b"ready");
    let ping = c
        .request_raw("$SRV.PING.shop", None, bytes::Bytes::new())
        .await?;
    assert_eq!(ping.body["name"], "shop");
    let info = c
        .request_raw("$SRV.INFO.shop", None, bytes::Bytes::new())
        .await?;
    let subjects: Vec<&str> = info.body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    for s in [
        "shop.cmd.add-item",
        "shop.cmd.update-item",
        "shop.cmd.remove-item",
        "shop.cmd.checkout",
        "shop.query.cart",
        "shop.query.dht-get",
        "shop.query.dht-stats",
    ] {
        assert!(subjects.contains(&s), "{s} in {subjects:?}");
    }
    let stats = c
        .request_raw("$SRV.STATS.shop", None, bytes::Bytes::new())
        .await?;
    assert_eq!(stats.body["type"], "io.nats.micro.v1.stats_response");
    let h = c.request("sys.query.health", &json!({})).await?.ok();
    assert_eq!(h["ready"], true);
    assert_eq!(h["services"]["shop"]["ready"], true);
    assert_eq!(h["services"]["shop"]["projections"]["shop_dht"]["lag"], 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_counted_and_the_projection_moves_on() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let js = async_nats::jetstream::new(c.nats.clone());
    js.publish("shop.events.cart.poison", "this is not an event".into())
        .await?
        .await?;
    js.publish("shop.events.cart.poison", r#"{"id":"0190c3c0-0000-7000-8000-000000000000","type":"Nope","occurred_at":"2026-01-01T00:00:00Z","data":{}}"#.into()).await?.await?;
    let r = c
        .request("shop.cmd.add-item", &add("after-poison", "a", 1, 1.0))
        .await?
        .ok();
    let q = cart_at(&c, "after-poison", r["seq"].as_u64().unwrap()).await;
    assert_eq!(
        q["items"].as_array().unwrap().len(),
        1,
        "the projection went past the poison"
    );
    let h = c.request("sys.query.health", &json!({})).await?.ok();
    assert_eq!(
        h["services"]["shop"]["projections"]["shop_dht"]["parked"],
        2
    );
    let db = sqlx::PgPool::connect(&env.db.url).await?;
    let parked: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, reason FROM runtime.dead_letters ORDER BY seq")
            .fetch_all(&db)
            .await?;
    assert_eq!(parked.len(), 2);
    assert!(parked[0].1.contains("envelope"), "{parked:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_rebuild_replays_the_same_read_model() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let mut seq = 0;
    for i in 0..30 {
        let r = c
            .request(
                "shop.cmd.add-item",
                &add(&format!("rb-{}", i % 3), &format!("i{i}"), 1, 2.0),
            )
            .await?
            .ok();
        seq = r["seq"].as_u64().unwrap();
    }
    c.request("shop.cmd.checkout", &json!({"customer_id": "rb-0"}))
        .await?
        .ok();
    let mut before = Vec::new();
    for i in 0..3 {
        before.push(cart_at(&c, &format!("rb-{i}"), seq + 1).await);
    }
    switchyard::projections_with(env.config(), vec!["rebuild".into(), "shop_dht".into()]).await?;
    let mut after = Vec::new();
    for i in 0..3 {
        after.push(cart_at(&c, &format!("rb-{i}"), seq + 1).await);
    }
    assert_eq!(before, after);
    let err =
        switchyard::projections_with(env.config(), vec!["rebuild".into(), "nope".into()]).await;
    assert!(err.is_err());
    Ok(())
}

/// Random commands on a few carts from concurrent clients; then the read model, and a rebuild of it
/// from the stream (which folds many events of one cart into one batch), must equal the carts the
/// command replies reported last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_histories_project_exactly_as_the_commands_reported() -> anyhow::Result<()> {
    use rand::{Rng, SeedableRng};
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(t);
            let mut seen: Vec<(u64, String, Value)> = Vec::new();
            for _ in 0..60 {
                let cart = format!("r.{}", rng.random_range(0..5));
                let item = format!("i {}", rng.random_range(0..8));
                let roll = rng.random_range(0..100);
                let (subject, body) = if roll < 50 {
                    let sale = if rng.random_bool(0.3) { json!(0.5) } else { Value::Null };
                    ("shop.cmd.add-item", json!({"customer_id": cart, "item_id": item, "offered_price": rng.random_range(1..500) as f64 / 100.0, "item_count": rng.random_range(1..4), "special_sale": sale, "sale_expiration": null}))
                } else if roll < 70 {
                    ("shop.cmd.update-item", json!({"customer_id": cart, "item_id": item, "new_count": rng.random_range(0..5)}))
                } else if roll < 85 {
                    ("shop.cmd.remove-item", json!({"customer_id": cart, "item_id": item}))
                } else {
                    ("shop.cmd.checkout", json!({"customer_id": cart}))
                };
                let r = c.request(subject, &body).await?;
                if r.code().is_none() {
                    let seq = r.body["seq"].as_u64().unwrap();
                    let items = if subject == "shop.cmd.checkout" { json!([]) } else { r.body["items"].clone() };
                    seen.push((seq, cart, items));
                } else {
                    assert!(matches!(r.code(), Some("not_found" | "conflict")), "{}", r.body);
                }
            }
            Ok::<_, anyhow::Error>(seen)
        }));
    }
    let mut last: std::collections::BTreeMap<String, (u64, Value)> = Default::default();
    for t in tasks {
        for (seq, cart, items) in t.await?? {
            let e = last.entry(cart).or_insert((0, json!([])));
            if seq > e.0 {
                *e = (seq, items);
            }
        }
    }
    let max = last.values().map(|v| v.0).max().unwrap_or(0);
    for (cart, (_, items)) in &last {
        assert_eq!(&cart_at(&c, cart, max).await["items"], items, "cart {cart}");
    }
    switchyard::projections_with(env.config(), vec!["rebuild".into(), "shop_dht".into()]).await?;
    for (cart, (_, items)) in &last {
        assert_eq!(
            &cart_at(&c, cart, max).await["items"],
            items,
            "cart {cart} after a rebuild"
        );
    }
    Ok(())
}

/// `shop.query.shard-carts` (an addition): a shard lists exactly the carts `dht-get` places on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_lists_the_carts_it_holds() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let mut seq = 0;
    let mut on_shard: Vec<(u64, String)> = Vec::new();
    for customer in ["ann", "bob", "cy.d@example.com", "dee", "eve", "fay"] {
        seq = c
            .request("shop.cmd.add-item", &add(customer, "apple", 1, 1.0))
            .await?
            .ok()["seq"]
            .as_u64()
            .unwrap();
        let g = c
            .request(
                "shop.query.dht-get",
                &json!({"key": customer, "min_seq": seq}),
            )
            .await?
            .ok();
        on_shard.push((g["shard"].as_u64().unwrap(), customer.to_string()));
    }
    let shard = on_shard[0].0;
    let mut expected: Vec<String> = on_shard
        .iter()
        .filter(|(s, _)| *s == shard)
        .map(|(_, c)| c.clone())
        .collect();
    expected.sort();
    let r = c
        .request(
            "shop.query.shard-carts",
            &json!({"shard": shard, "min_seq": seq}),
        )
        .await?
        .ok();
    assert_eq!(r["shard"], shard);
    let listed: Vec<&str> = r["carts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["customer_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, expected);
    assert!(r["carts"][0]["seq"].as_u64().unwrap() > 0);
    let err = c
        .request("shop.query.shard-carts", &json!({"shard": 16}))
        .await?;
    assert_eq!(err.code(), Some("invalid_request"), "16 shards: 0..16");
    Ok(())
}

/// Lines added to a cart are first written as plain inserts (the cheaper statement for new lines);
/// an add to a line an earlier batch wrote meets that line, and the batch then adds to it instead.
/// Each add is projected before the next is sent, so every one is a batch of its own, and the
/// counts, prices and the lines' order must be what the commands reported, also for many re-adds
/// in a row (the projection upserts at once for a while after a plain insert met a line).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_added_again_in_a_later_batch_adds_to_its_line() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let mut reported = json!(null);
    let mut seq = 0;
    for round in 0..80 {
        for (item, price) in [("pear", 1.5), ("fig", 2.0 + f64::from(round % 3))] {
            let r = c
                .request("shop.cmd.add-item", &add("again", item, 1, price))
                .await?
                .ok();
            seq = r["seq"].as_u64().unwrap();
            reported = r["items"].clone();
            let projected = cart_at(&c, "again", seq).await;
            assert_eq!(projected["items"], reported, "round {round}, {item}");
        }
        if round == 40 {
            // A new line after many re-adds (a plain insert is tried again later).
            let r = c
                .request("shop.cmd.add-item", &add("again", "kiwi", 2, 0.5))
                .await?
                .ok();
            seq = r["seq"].as_u64().unwrap();
            reported = r["items"].clone();
        }
    }
    let cart = cart_at(&c, "again", seq).await;
    assert_eq!(cart["items"], reported);
    let counts: Vec<i64> = cart["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["item_count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, vec![80, 80, 2], "{cart}");
    Ok(())
}
