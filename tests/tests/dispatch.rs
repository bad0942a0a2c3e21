//! End-to-end tests of contract section 4 (dispatch): real nats-server and PostgreSQL, the service
//! in-process, talked to only over NATS (and HTTP) as a client would.

use async_nats::jetstream;
use e2e::{eventually, Client, TestEnv};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

fn token(id: &str) -> String {
    schemas::encode_token(id)
}

async fn ok(c: &Client, subject: &str, body: Value) -> Value {
    let r = c.request(subject, &body).await.expect("reply");
    assert!(r.status.is_none(), "{subject} {body} -> {}", r.body);
    r.body
}

/// Registers a cart at `home` with one SSD holding `datasets` (1 GB each).
async fn cart_with(c: &Client, cart: &str, home: &str, datasets: &[&str]) {
    ok(
        c,
        "dispatch.cmd.register-cart",
        json!({"cart_id": cart, "home": home}),
    )
    .await;
    let ssd = format!("{cart}/ssd");
    ok(c, "dispatch.cmd.register-ssd", json!({"ssd_id": ssd, "cart_id": cart, "capacity_bytes": 1_000_000_000_000u64, "health": "ok"})).await;
    for d in datasets {
        ok(
            c,
            "dispatch.cmd.put-dataset",
            json!({"ssd_id": ssd, "dataset": d, "size_bytes": 1_000_000_000u64}),
        )
        .await;
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

/// Drives a reserved cart through a whole trip by hand.
async fn drive_trip(c: &Client, cart: &str) {
    for r in [
        "departed",
        "docked",
        "transfer_started",
        "transfer_completed",
        "undocked",
        "returned",
    ] {
        report(c, cart, r).await;
    }
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `secs`.
/// The request from the read model (an error body while the projection has not reached it yet).
async fn request_state(c: &Client, request_id: &str) -> Value {
    c.request("dispatch.query.request", &json!({"request_id": request_id}))
        .await
        .expect("reply")
        .body
}

async fn wait_delivered(c: &Client, request_id: &str, secs: u64) -> Value {
    eventually(
        Duration::from_secs(secs),
        &format!("request {request_id} delivered"),
        || async {
            let r = request_state(c, request_id).await;
            (r["state"] == "delivered").then_some(r)
        },
    )
    .await
}

/// Every event of the DISPATCH stream on `filter`, as (subject, envelope).
async fn events(c: &Client, filter: &str) -> Vec<(String, Value)> {
    let js = jetstream::new(c.nats.clone());
    let mut stream = js.get_stream("DISPATCH").await.expect("stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: filter.into(),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), messages.next()).await;
        let Ok(Some(Ok(m))) = next else { break };
        let seq = m.info().map(|i| i.stream_sequence).unwrap_or(u64::MAX);
        out.push((
            m.subject.to_string(),
            serde_json::from_slice(&m.payload).expect("json"),
        ));
        if seq >= last {
            break;
        }
    }
    out
}

/// Checks from the stream that no cart was ever reserved while it was not FREE, and returns the
/// number of reservations per request.
async fn assert_no_double_booking(c: &Client) -> HashMap<String, usize> {
    let mut status: HashMap<String, String> = HashMap::new();
    let mut per_request: HashMap<String, usize> = HashMap::new();
    for (subject, e) in events(c, "dispatch.events.cart.>").await {
        let s = status
            .entry(subject.clone())
            .or_insert_with(|| "FREE".into());
        match e["type"].as_str() {
            Some("CartRegistered") => *s = "FREE".into(),
            Some("CartReserved") => {
                assert_eq!(s, "FREE", "{subject} reserved while {s}: {e}");
                *s = "QUEUE".into();
                *per_request
                    .entry(
                        e["data"]["request_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                    .or_default() += 1;
            }
            Some("CartReported") => {
                *s = e["data"]["status"].as_str().unwrap_or_default().to_string()
            }
            _ => {}
        }
    }
    per_request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_served_end_to_end_by_the_simulator_with_every_status_in_order() {
    let env = TestEnv::new().await.unwrap();
    let _svc = env.services(&["dispatch"]).await.unwrap();
    let c = env.client().await.unwrap();
    let cart = "sim cart.1>*";
    cart_with(&c, cart, "bay-c", &["e2e/dataset.one"]).await;
    let mut live = c
        .nats
        .subscribe(format!("dispatch.status.cart.{}", token(cart)))
        .await
        .unwrap();
    c.nats.flush().await.unwrap();
    let _sim = tools::dispatch_sim::spawn(
        c.nats.clone(),
        tools::dispatch_sim::SimOptions {
            speed: 200.0,
            ..Default::default()
        },
    );
    let reply = ok(
        &c,
        "dispatch.cmd.request-datasets",
        json!({"server_id": "ml-node-3", "directory": ["e2e/dataset.one"]}),
    )
    .await;
    assert_eq!(reply["server_id"], "ml-node-3");
    assert_eq!(reply["carts"][0]["cart_id"], cart);
    assert_eq!(reply["carts"][0]["datasets"], json!(["e2e/dataset.one"]));
    assert!(reply["seq"].as_u64().unwrap() > 0);
    let request_id = reply["request_id"].as_str().unwrap().to_string();

    let mut seen: Vec<String> = Vec::new();
    let mut locations = Vec::new();
    let mut last_seq = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(m) = live.next().await {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(v["cart_id"], cart);
            let s = v["status"].as_str().unwrap().to_string();
            last_seq = last_seq.max(v["seq"].as_u64().unwrap());
            if seen.is_empty() && s == "FREE" {
                continue; // the updates of the setup, published just before
            }
            if s == "FLIGHT" {
                locations.push(v["location"].as_str().unwrap().to_string());
            }
            if seen.last() != Some(&s) {
                seen.push(s.clone());
            }
            if s == "FREE" && seen.len() > 1 {
                break;
            }
        }
    })
    .await
    .expect("the trip did not finish within 30 s");
    assert_eq!(
        seen,
        ["QUEUE", "FLIGHT", "DOCKED", "TRANSFER", "DOCKED", "FLIGHT", "FREE"]
    );
    assert!(
        locations.len() > 2,
        "position reports along the route: {locations:?}"
    );
    let r = wait_delivered(&c, &request_id, 10).await;
    assert_eq!(r["carts"][0]["delivered"], true);
    let cart_now = ok(
        &c,
        "dispatch.query.cart",
        json!({"cart_id": cart, "min_seq": last_seq}),
    )
    .await;
    assert_eq!(cart_now["status"], "FREE");
    assert_eq!(cart_now["location"], "bay-c");
    assert_eq!(cart_now["ssds"][0]["datasets"], json!(["e2e/dataset.one"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_cart_serves_waiting_requests_in_arrival_order() {
    let env = TestEnv::new().await.unwrap();
    let _svc = env.services(&["dispatch"]).await.unwrap();
    let c = env.client().await.unwrap();
    let cart = "fifo-cart";
    cart_with(&c, cart, "bay-a", &["fifo-ds"]).await;
    let mut jobs = c
        .nats
        .subscribe(format!("dispatch.cart.{}.job", token(cart)))
        .await
        .unwrap();
    c.nats.flush().await.unwrap();
    let mut ids = Vec::new();
    for server in ["ml-node-1", "ml-node-7", "ml-node-12"] {
        let r = ok(
            &c,
            "dispatch.cmd.request-datasets",
            json!({"server_id": server, "datasets": ["fifo-ds"]}),
        )
        .await;
        assert_eq!(r["carts"][0]["cart_id"], cart);
        ids.push((r["request_id"].as_str().unwrap().to_string(), server));
    }
    for (i, (id, server)) in ids.iter().enumerate() {
        let m = tokio::time::timeout(Duration::from_secs(10), jobs.next())
            .await
            .expect("a job")
            .unwrap();
        let job: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            job["request_id"],
            id.as_str(),
            "job {i} is for the request that came {i}th"
        );
        assert_eq!(job["server_id"], *server);
        assert_eq!(job["route"][0], "bay-a");
        assert_eq!(job["route"].as_array().unwrap().last().unwrap(), *server);
        assert!(job["seconds"].as_f64().unwrap() > 0.0);
        // While the cart is out, the later requests stay queued and get no job.
        let seq = report(&c, cart, "departed").await["seq"].as_u64().unwrap();
        for (later, _) in &ids[i + 1..] {
            let r = ok(
                &c,
                "dispatch.query.request",
                json!({"request_id": later, "min_seq": seq}),
            )
            .await;
            assert_eq!(r["state"], "queued", "{r}");
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(200), jobs.next())
                .await
                .is_err(),
            "a job while the cart is out"
        );
        for rep in [
            "docked",
            "transfer_started",
            "transfer_completed",
            "undocked",
            "returned",
        ] {
            report(&c, cart, rep).await;
        }
    }
    for (id, _) in &ids {
        wait_delivered(&c, id, 10).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_requests_race_for_three_carts_without_double_booking() {
    let env = TestEnv::new().await.unwrap();
    // Two processes: two dispatchers share the durable consumer and race for the same carts.
    let _svc = env.services(&["dispatch"]).await.unwrap();
    let _svc2 = env.services(&["dispatch"]).await.unwrap();
    let c = env.client().await.unwrap();
    for (cart, home) in [
        ("race-1", "bay-a"),
        ("race-2", "bay-b"),
        ("race-3", "bay-c"),
    ] {
        cart_with(&c, cart, home, &["race-ds"]).await;
    }
    let _sim = tools::dispatch_sim::spawn(
        c.nats.clone(),
        tools::dispatch_sim::SimOptions {
            speed: 100_000.0,
            ..Default::default()
        },
    );
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Client::connect(&env.nats.url()).await.unwrap());
    }
    let mut tasks = Vec::new();
    for (k, cl) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let sends = (0..25).map(|i| {
                let cl = cl.clone();
                async move {
                    let server = format!("ml-node-{}", 1 + (k * 25 + i) % 12);
                    ok(
                        &cl,
                        "dispatch.cmd.request-datasets",
                        json!({"server_id": server, "datasets": ["race-ds"]}),
                    )
                    .await
                }
            });
            for r in futures::future::join_all(sends).await {
                ids.push(r["request_id"].as_str().unwrap().to_string());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    assert_eq!(ids.len(), 100);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 100);
    for id in &ids {
        wait_delivered(&c, id, 40).await;
    }
    let per_request = assert_no_double_booking(&c).await;
    for id in &ids {
        assert_eq!(per_request.get(id), Some(&1), "request {id} reserved once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_mid_flight_hands_the_datasets_to_another_cart_or_fails_the_request() {
    let env = TestEnv::new().await.unwrap();
    let _svc = env.services(&["dispatch"]).await.unwrap();
    let c = env.client().await.unwrap();
    // Two carts hold "shared"; the nearer one to ml-node-1 (bay-a) goes first.
    cart_with(&c, "near", "bay-a", &["shared", "solo"]).await;
    cart_with(&c, "far", "bay-c", &["shared"]).await;
    let mut far_jobs = c
        .nats
        .subscribe(format!("dispatch.cart.{}.job", token("far")))
        .await
        .unwrap();
    c.nats.flush().await.unwrap();
    let r = ok(
        &c,
        "dispatch.cmd.request-datasets",
        json!({"server_id": "ml-node-1", "datasets": ["shared", "solo"]}),
    )
    .await;
    assert_eq!(
        r["carts"].as_array().unwrap().len(),
        1,
        "one cart carries both: {r}"
    );
    assert_eq!(r["carts"][0]["cart_id"], "near");
    assert_eq!(r["carts"][0]["status"], "QUEUE");
    let id = r["request_id"].as_str().unwrap().to_string();
    report(&c, "near", "departed").await;
    ok(
        &c,
        "dispatch.cmd.cart-report",
        json!({"cart_id": "near", "report": "position", "location": "spine-1"}),
    )
    .await;
    let fault = report(&c, "near", "fault").await;
    assert_eq!(fault["status"], "FAULT");
    // "shared" goes on "far"; "solo" is nowhere else: the request fails with a reason.
    let m = tokio::time::timeout(Duration::from_secs(10), far_jobs.next())
        .await
        .expect("far gets a job")
        .unwrap();
    let job: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(job["request_id"], id.as_str());
    assert_eq!(job["datasets"], json!(["shared"]));
    let state = eventually(
        Duration::from_secs(10),
        "the re-plan in the read model",
        || async {
            let s = request_state(&c, &id).await;
            (s["state"] == "failed").then_some(s)
        },
    )
    .await;
    assert_eq!(state["failed"], json!(["solo"]));
    assert!(state["reason"].as_str().unwrap().contains("near"));
    let carts: Vec<&str> = state["carts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cart_id"].as_str().unwrap())
        .collect();
    assert_eq!(carts, ["far"]);

    // A second request for data that only a faulted cart has is a conflict; "shared" still works.
    c.request(
        "dispatch.cmd.request-datasets",
        &json!({"server_id": "ml-node-2", "datasets": ["solo"]}),
    )
    .await
    .unwrap()
    .assert_error("conflict", 409);
    drive_trip(&c, "far").await;
    let r2 = ok(
        &c,
        "dispatch.cmd.request-datasets",
        json!({"server_id": "ml-node-2", "datasets": ["shared"]}),
    )
    .await;
    assert_eq!(r2["carts"][0]["cart_id"], "far");
    // Repaired: registered again, the cart is FREE at home.
    let again = ok(
        &c,
        "dispatch.cmd.register-cart",
        json!({"cart_id": "near", "home": "bay-a"}),
    )
    .await;
    assert_eq!(again["status"], "FREE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_contract_codes_and_appends_nothing() {
    let env = TestEnv::new().await.unwrap();
    let _svc = env.services(&["dispatch"]).await.unwrap();
    let c = env.client().await.unwrap();
    cart_with(&c, "bad-cart", "bay-a", &["good-ds"]).await;
    ok(&c, "dispatch.cmd.register-ssd", json!({"ssd_id": "broken", "cart_id": "bad-cart", "capacity_bytes": 10, "health": "failed"})).await;
    // A failed SSD takes nothing; the dataset that is only there comes from another cart's SSD
    // that then fails.
    cart_with(&c, "other", "bay-b", &["doomed"]).await;
    ok(
        &c,
        "dispatch.cmd.set-ssd-health",
        json!({"ssd_id": "other/ssd", "health": "failed"}),
    )
    .await;
    let before = c.stream_len("DISPATCH").await.unwrap();

    let cases: Vec<(&str, Value, &str, u16)> = vec![
        (
            "dispatch.cmd.request-datasets",
            json!({"server_id": "nowhere", "datasets": ["good-ds"]}),
            "not_found",
            404,
        ),
        (
            "dispatch.cmd.request-datasets",
            json!({"server_id": "bay-a", "datasets": ["good-ds"]}),
            "not_found",
            404,
        ),
        (
            "dispatch.cmd.request-datasets",
            json!({"server_id": "ml-node-1", "datasets": ["no-such-ds"]}),
            "not_found",
            404,
        ),
        (
            "dispatch.cmd.request-datasets",
            json!({"server_id": "ml-node-1", "datasets": ["doomed"]}),
            "conflict",
            409,
        ),
        (
            "dispatch.cmd.request-datasets",
            json!({"server_id": "ml-node-1", "datasets": []}),
            "invalid_request",
            400,
        ),
        (
            "dispatch.cmd.request-datasets",
            json!({"server_id": "ml-node-1"}),
            "invalid_request",
            400,
        ),
        (
            "dispatch.cmd.request-datasets",
            json!({"server_id": 5, "datasets": ["good-ds"]}),
            "invalid_request",
            400,
        ),
        (
            "dispatch.cmd.request-datasets",
            json!({"server_id": "ml-node-1", "datasets": ["good-ds"], "x": 1}),
            "invalid_request",
            400,
        ),
        (
            "dispatch.cmd.put-dataset",
            json!({"ssd_id": "bad-cart/ssd", "dataset": "huge", "size_bytes": 2_000_000_000_000u64}),
            "conflict",
            409,
        ),
        (
            "dispatch.cmd.put-dataset",
            json!({"ssd_id": "broken", "dataset": "x", "size_bytes": 1}),
            "conflict",
            409,
        ),
        (
            "dispatch.cmd.put-dataset",
            json!({"ssd_id": "nope", "dataset": "x", "size_bytes": 1}),
            "not_found",
            404,
        ),
        (
            "dispatch.cmd.put-dataset",
            json!({"ssd_id": "bad-cart/ssd", "dataset": "x", "size_bytes": -1}),
            "invalid_request",
            400,
        ),
        (
            "dispatch.cmd.register-ssd",
            json!({"ssd_id": "s", "cart_id": "nope", "capacity_bytes": 5, "health": "ok"}),
            "not_found",
            404,
        ),
        (
            "dispatch.cmd.register-ssd",
            json!({"ssd_id": "s", "cart_id": "bad-cart", "capacity_bytes": 5, "health": "bad"}),
            "invalid_request",
            400,
        ),
        (
            "dispatch.cmd.register-ssd",
            json!({"ssd_id": "broken", "cart_id": "bad-cart", "capacity_bytes": 5, "health": "ok"}),
            "conflict",
            409,
        ),
        (
            "dispatch.cmd.register-cart",
            json!({"cart_id": "bad-cart", "home": "bay-a"}),
            "conflict",
            409,
        ),
        (
            "dispatch.cmd.register-cart",
            json!({"cart_id": "new", "home": "mars"}),
            "not_found",
            404,
        ),
        (
            "dispatch.cmd.register-cart",
            json!({"cart_id": "", "home": "bay-a"}),
            "invalid_request",
            400,
        ),
        (
            "dispatch.cmd.set-ssd-health",
            json!({"ssd_id": "nope", "health": "ok"}),
            "not_found",
            404,
        ),
        (
            "dispatch.cmd.cart-report",
            json!({"cart_id": "nope", "report": "departed"}),
            "not_found",
            404,
        ),
        (
            "dispatch.cmd.cart-report",
            json!({"cart_id": "bad-cart", "report": "teleported"}),
            "invalid_request",
            400,
        ),
        (
            "dispatch.cmd.cart-report",
            json!({"cart_id": "bad-cart", "report": "position"}),
            "invalid_request",
            400,
        ),
        (
            "dispatch.cmd.set-facility",
            json!({"nodes": [{"id": "a", "kind": "dock"}, {"id": "b", "kind": "dock"}], "edges": []}),
            "invalid_request",
            400,
        ),
        (
            "dispatch.cmd.set-facility",
            json!({"nodes": [{"id": "a", "kind": "moon"}], "edges": []}),
            "invalid_request",
            400,
        ),
        (
            "dispatch.query.cart",
            json!({"cart_id": "nope"}),
            "not_found",
            404,
        ),
        (
            "dispatch.query.request",
            json!({"request_id": "nope"}),
            "not_found",
            404,
        ),
        (
            "dispatch.query.dataset",
            json!({"dataset": "nope"}),
            "not_found",
            404,
        ),
        (
            "dispatch.query.route",
            json!({"from": "bay-a", "to": "mars"}),
            "not_found",
            404,
        ),
        (
            "dispatch.query.carts",
            json!({"status": "SLEEPING"}),
            "invalid_request",
            400,
        ),
    ];
    for (subject, body, code, status) in cases {
        let r = c.request(subject, &body).await.unwrap();
        assert_eq!(r.code(), Some(code), "{subject} {body} -> {}", r.body);
        r.assert_error(code, status);
    }
    // Every report that is not a transition from FREE.
    for rep in [
        "departed",
        "docked",
        "transfer_started",
        "transfer_completed",
        "undocked",
        "returned",
    ] {
        c.request(
            "dispatch.cmd.cart-report",
            &json!({"cart_id": "bad-cart", "report": rep}),
        )
        .await
        .unwrap()
        .assert_error("conflict", 409);
    }
    for body in [&b"not json"[..], b"[1,2]", b"{\"cart_id\": 1}", b"\xff\xfe"] {
        for subject in [
            "dispatch.cmd.cart-report",
            "dispatch.cmd.request-datasets",
            "dispatch.cmd.register-cart",
            "dispatch.cmd.set-facility",
        ] {
            c.request_raw(subject, None, bytes::Bytes::from_static(body))
                .await
                .unwrap()
                .assert_error("invalid_request", 400);
        }
    }
    assert_eq!(
        c.stream_len("DISPATCH").await.unwrap(),
        before,
        "rejected commands appended nothing"
    );
    // Still answering.
    let r = ok(
        &c,
        "dispatch.query.route",
        json!({"from": "bay-a", "to": "ml-node-12"}),
    )
    .await;
    assert_eq!(r["path"][0], "bay-a");
    assert_eq!(r["path"].as_array().unwrap().last().unwrap(), "ml-node-12");
}

/// Appends one event to the stream as a crashed dispatcher would have left it.
async fn append_event(c: &Client, subject: &str, event: &schemas::dispatch::DispatchEvent) -> u64 {
    let js = jetstream::new(c.nats.clone());
    let payload =
        runtime::store::encode_event(uuid::Uuid::now_v7(), chrono::Utc::now(), event).unwrap();
    js.publish(subject.to_string(), payload)
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_killed_between_reservation_and_job_publishes_the_job_once_after_restart() {
    use schemas::dispatch::{self as w, DispatchEvent as E};
    let env = TestEnv::new().await.unwrap();
    let mut svc = env.services(&["dispatch"]).await.unwrap();
    let c = env.client().await.unwrap();
    cart_with(&c, "crash-cart", "bay-b", &["crash-ds"]).await;
    // Wait until the first process has seen everything, then crash it.
    ok(
        &c,
        "dispatch.query.cart",
        json!({"cart_id": "crash-cart", "min_seq": c.stream_len("DISPATCH").await.unwrap()}),
    )
    .await;
    svc.kill();
    // What the crashed process had stored: the request and the reservation, but no job yet.
    let rid = "req-crash";
    let plan = vec![w::PlannedCart {
        cart_id: "crash-cart".into(),
        datasets: vec!["crash-ds".into()],
    }];
    append_event(
        &c,
        &format!("dispatch.events.request.{rid}"),
        &E::DatasetsRequested(w::DatasetsRequested {
            request_id: rid.into(),
            server_id: "ml-node-4".into(),
            datasets: vec!["crash-ds".into()],
            plan,
        }),
    )
    .await;
    append_event(
        &c,
        "dispatch.events.cart.crash-cart",
        &E::CartReserved(w::CartReserved {
            cart_id: "crash-cart".into(),
            request_id: rid.into(),
            server_id: "ml-node-4".into(),
            datasets: vec!["crash-ds".into()],
            route: vec![
                "bay-b".into(),
                "spine-2".into(),
                "aisle-2-1".into(),
                "ml-node-4".into(),
            ],
            seconds: 13.0,
            bytes: 1_000_000_000,
        }),
    )
    .await;
    let mut jobs = c
        .nats
        .subscribe(format!("dispatch.cart.{}.job", token("crash-cart")))
        .await
        .unwrap();
    c.nats.flush().await.unwrap();
    let _svc2 = env.services(&["dispatch"]).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(15), jobs.next())
        .await
        .expect("the job after restart")
        .unwrap();
    let job: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(job["request_id"], rid);
    assert_eq!(job["server_id"], "ml-node-4");
    // Not reserved again, not published again.
    drive_trip(&c, "crash-cart").await;
    wait_delivered(&c, rid, 10).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), jobs.next())
            .await
            .is_err(),
        "a second job"
    );
    assert_eq!(assert_no_double_booking(&c).await.get(rid), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_under_load_loses_and_doubles_no_request() {
    let env = TestEnv::new().await.unwrap();
    let mut svc = env.services(&["dispatch"]).await.unwrap();
    let c = env.client().await.unwrap();
    let carts: Vec<String> = (0..20).map(|i| format!("load-{i}")).collect();
    for (i, cart) in carts.iter().enumerate() {
        cart_with(&c, cart, "bay-a", &[&format!("load-ds-{i}")]).await;
    }
    let sends = (0..20).map(|i| {
        let c = c.clone();
        async move {
            let r = ok(
                &c,
                "dispatch.cmd.request-datasets",
                json!({"server_id": "ml-node-9", "datasets": [format!("load-ds-{i}")]}),
            )
            .await;
            r["request_id"].as_str().unwrap().to_string()
        }
    });
    let ids = futures::future::join_all(sends).await;
    svc.kill();
    let _svc2 = env.services(&["dispatch"]).await.unwrap();
    let _sim = tools::dispatch_sim::spawn(
        c.nats.clone(),
        tools::dispatch_sim::SimOptions {
            speed: 100_000.0,
            ..Default::default()
        },
    );
    for id in &ids {
        wait_delivered(&c, id, 30).await;
    }
    let per_request = assert_no_double_booking(&c).await;
    for id in &ids {
        assert_eq!(per_request.get(id), Some(&1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_facility_queries_idempotency_and_http() {
    let env = TestEnv::new().await.unwrap();
    // Two processes starting at once load the default facility once.
    let (a, b) = tokio::join!(
        env.services(&["dispatch"]),
        env.services(&["dispatch", "gateway"])
    );
    let (_a, b) = (a.unwrap(), b.unwrap());
    let c = env.client().await.unwrap();
    let f = ok(&c, "dispatch.query.facility", json!({})).await;
    let docks = f["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "dock")
        .count();
    assert!(docks >= 12);
    let registered = events(&c, "dispatch.events.cart.>").await;
    let carts: HashSet<&str> = registered.iter().map(|(s, _)| s.as_str()).collect();
    assert!(carts.len() >= 8);
    assert_eq!(
        registered.len(),
        carts.len(),
        "each default cart registered once"
    );
    assert_eq!(events(&c, "dispatch.events.facility.>").await.len(), 1);
    let all = ok(
        &c,
        "dispatch.query.carts",
        json!({"min_seq": c.stream_len("DISPATCH").await.unwrap()}),
    )
    .await;
    assert_eq!(all["carts"].as_array().unwrap().len(), carts.len());
    let free = ok(&c, "dispatch.query.carts", json!({"status": "FREE"})).await;
    assert_eq!(free["carts"].as_array().unwrap().len(), carts.len());
    let ds = ok(
        &c,
        "dispatch.query.dataset",
        json!({"dataset": "imagenet_train"}),
    )
    .await;
    assert!(ds["ssds"].as_array().unwrap().len() >= 2);

    // Nats-Msg-Id: the same command twice appends once and answers the same.
    let id_body = json!({"server_id": "ml-node-2", "datasets": ["imagenet_val"]});
    let r1 = c
        .request_with_id("dispatch.cmd.request-datasets", "once-1", &id_body)
        .await
        .unwrap()
        .ok();
    let len = c.stream_len("DISPATCH").await.unwrap();
    let r2 = c
        .request_with_id("dispatch.cmd.request-datasets", "once-1", &id_body)
        .await
        .unwrap()
        .ok();
    assert_eq!(r1["request_id"], r2["request_id"]);
    assert_eq!(r1["seq"], r2["seq"]);
    assert!(
        c.stream_len("DISPATCH").await.unwrap() <= len + 1,
        "at most the reservation of the first request"
    );

    // HTTP: POST /request-datasets with `directory`.
    let addr = b.http_addr.unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("http://{addr}/request-datasets"))
        .json(&json!({"server_id": "ml-node-11", "directory": ["coco_2017"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["server_id"], "ml-node-11");
    assert!(body["request_id"].is_string());
    let resp = http
        .post(format!("http://{addr}/request-datasets"))
        .json(&json!({"server_id": "nowhere", "datasets": ["coco_2017"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = http
        .post(format!("http://{addr}/request-datasets"))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Postcard works too.
    let q = schemas::dispatch::RouteQuery {
        from: "bay-a".into(),
        to: "ml-node-1".into(),
        min_seq: None,
    };
    let mut h = async_nats::HeaderMap::new();
    h.insert("Content-Type", "application/postcard");
    let m = c
        .nats
        .request_with_headers("dispatch.query.route", h, postcard_bytes(&q))
        .await
        .unwrap();
    let route: schemas::dispatch::RouteReply = postcard_decode(&m.payload);
    assert_eq!(route.path.first().map(String::as_str), Some("bay-a"));
    // Discovery.
    let ping = c
        .nats
        .request("$SRV.PING.dispatch", bytes::Bytes::new())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&ping.payload).contains("dispatch"));
}

fn postcard_bytes<T: serde::Serialize>(v: &T) -> bytes::Bytes {
    runtime::codec::Codec::Postcard.encode(v).unwrap()
}

fn postcard_decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> T {
    runtime::codec::Codec::Postcard.decode(b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_moves_to_another_cart_when_its_ssd_fails() {
    let env = TestEnv::new().await.unwrap();
    let _svc = env.services(&["dispatch"]).await.unwrap();
    let c = env.client().await.unwrap();
    cart_with(&c, "busy", "bay-a", &["moving-ds"]).await;
    cart_with(&c, "spare", "bay-c", &[]).await;
    let mut spare_jobs = c
        .nats
        .subscribe(format!("dispatch.cart.{}.job", token("spare")))
        .await
        .unwrap();
    c.nats.flush().await.unwrap();
    let r0 = ok(
        &c,
        "dispatch.cmd.request-datasets",
        json!({"server_id": "ml-node-1", "datasets": ["moving-ds"]}),
    )
    .await;
    assert_eq!(r0["carts"][0]["cart_id"], "busy");
    let r1 = ok(
        &c,
        "dispatch.cmd.request-datasets",
        json!({"server_id": "ml-node-2", "datasets": ["moving-ds"]}),
    )
    .await;
    assert_eq!(
        r1["carts"][0]["cart_id"], "busy",
        "waits for the busy cart: {r1}"
    );
    let r1_id = r1["request_id"].as_str().unwrap();
    ok(
        &c,
        "dispatch.cmd.put-dataset",
        json!({"ssd_id": "spare/ssd", "dataset": "moving-ds", "size_bytes": 1000}),
    )
    .await;
    ok(
        &c,
        "dispatch.cmd.set-ssd-health",
        json!({"ssd_id": "busy/ssd", "health": "failed"}),
    )
    .await;
    let m = tokio::time::timeout(Duration::from_secs(10), spare_jobs.next())
        .await
        .expect("the spare cart gets the request")
        .unwrap();
    let job: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(job["request_id"], r1_id);
    drive_trip(&c, "spare").await;
    wait_delivered(&c, r1_id, 10).await;
}
