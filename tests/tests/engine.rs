//! End-to-end tests of contract section 5 (engine), against a real nats-server and PostgreSQL,
//! talking only NATS as a client would.

use bytes::Bytes;
use e2e::{Client, Reply, TestEnv};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "switchyard-dev-secret-change-me";

/// Short membership timing so that fail-over tests are fast (read by the engine at start).
fn fast_membership() {
    std::env::set_var("SWITCHYARD_ENGINE_HEARTBEAT_MS", "200");
    std::env::set_var("SWITCHYARD_ENGINE_DEAD_MS", "1200");
}

fn token(roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_string()).collect();
    engine::auth::issue(SECRET, "jane", &roles, 3600).unwrap()
}

async fn exec(c: &Client, token: Option<&str>, body: &Value) -> Reply {
    let mut h = async_nats::HeaderMap::new();
    if let Some(t) = token {
        h.insert("Authorization", format!("Bearer {t}").as_str());
    }
    c.request_raw(
        "engine.exec",
        Some(h),
        Bytes::from(serde_json::to_vec(body).unwrap()),
    )
    .await
    .unwrap()
}

async fn cmd(c: &Client, subject: &str, body: Value) -> Value {
    c.request(subject, &body).await.unwrap().ok()
}

/// Adds modules and a system: `sys` = [disp-a (Display_1), calc (Calculator_1), disp-b (Display_2)].
async fn given_system(c: &Client, sys: &str) -> u64 {
    cmd(
        c,
        "engine.cmd.add-module",
        json!({"module_id": format!("{sys}/disp.a"), "driver_id": "display", "name": "Display"}),
    )
    .await;
    cmd(c, "engine.cmd.add-module", json!({"module_id": format!("{sys}/calc"), "driver_id": "calculator", "name": "Calculator"})).await;
    cmd(
        c,
        "engine.cmd.add-module",
        json!({"module_id": format!("{sys}/disp.b"), "driver_id": "display", "name": "Display"}),
    )
    .await;
    let r = cmd(
        c,
        "engine.cmd.set-system",
        json!({"system_id": sys, "modules": [format!("{sys}/disp.a"), format!("{sys}/calc"), format!("{sys}/disp.b")]}),
    )
    .await;
    r["seq"].as_u64().unwrap()
}

async fn next_json(sub: &mut async_nats::Subscriber) -> Value {
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("no watch message within 5 s")
        .unwrap();
    serde_json::from_slice(&m.payload).unwrap()
}

#[tokio::test]
async fn commands_and_queries() {
    fast_membership();
    let env = TestEnv::new().await.unwrap();
    let _svc = env.services(&["engine"]).await.unwrap();
    let c = env.client().await.unwrap();

    // The sample drivers are registered at start.
    let d = c
        .request("engine.query.driver", &json!({"driver_id": "calculator"}))
        .await
        .unwrap()
        .ok();
    assert_eq!(
        d["metadata"]["functions"]["future_add"]["b"],
        json!(["Int32", 200])
    );
    assert_eq!(
        d["metadata"]["security"]["administrator"],
        json!(["perform_task"])
    );
    let d = c
        .request("engine.query.driver", &json!({"driver_id": "display"}))
        .await
        .unwrap()
        .ok();
    assert_eq!(
        d["metadata"]["functions"]["power"]["state"],
        json!(["Bool"])
    );

    let sys = "room 1.2*>";
    let seq = given_system(&c, sys).await;
    let l = c
        .request(
            "engine.query.lookup",
            &json!({"system_id": sys, "module": "Display_2", "min_seq": seq}),
        )
        .await
        .unwrap()
        .ok();
    assert_eq!(l, json!({"module_id": format!("{sys}/disp.b")}));
    let l = c
        .request(
            "engine.query.lookup",
            &json!({"system_id": sys, "module": "Display", "index": 1}),
        )
        .await
        .unwrap()
        .ok();
    assert_eq!(l["module_id"], json!(format!("{sys}/disp.a")));
    let l = c
        .request(
            "engine.query.lookup",
            &json!({"system_id": sys, "module": "Calculator_1"}),
        )
        .await
        .unwrap()
        .ok();
    assert_eq!(l["module_id"], json!(format!("{sys}/calc")));
    c.request(
        "engine.query.lookup",
        &json!({"system_id": sys, "module": "Display_3"}),
    )
    .await
    .unwrap()
    .assert_error("not_found", 404);
    c.request(
        "engine.query.lookup",
        &json!({"system_id": "nope", "module": "Display_1"}),
    )
    .await
    .unwrap()
    .assert_error("not_found", 404);

    let s = c
        .request("engine.query.system", &json!({"system_id": sys}))
        .await
        .unwrap()
        .ok();
    assert_eq!(
        s["modules"],
        json!([
            format!("{sys}/disp.a"),
            format!("{sys}/calc"),
            format!("{sys}/disp.b")
        ])
    );
    assert_eq!(s["places"]["Display_2"], json!(format!("{sys}/disp.b")));

    let m = format!("{sys}/disp.a");
    let r = cmd(
        &c,
        "engine.cmd.update-status",
        json!({"module_id": m, "name": "power", "value": {"on": true, "level": [1, 2.5]}}),
    )
    .await;
    let seq = r["seq"].as_u64().unwrap();
    let st = c
        .request(
            "engine.query.status",
            &json!({"module_id": m, "name": "power", "min_seq": seq}),
        )
        .await
        .unwrap()
        .ok();
    assert_eq!(st, json!({"value": {"on": true, "level": [1, 2.5]}}));
    c.request(
        "engine.query.status",
        &json!({"module_id": m, "name": "input"}),
    )
    .await
    .unwrap()
    .assert_error("not_found", 404);
    c.request(
        "engine.query.status",
        &json!({"module_id": "ghost", "name": "power"}),
    )
    .await
    .unwrap()
    .assert_error("not_found", 404);
    let md = c
        .request(
            "engine.query.module",
            &json!({"module_id": m, "min_seq": seq}),
        )
        .await
        .unwrap()
        .ok();
    assert_eq!(
        md,
        json!({"module_id": m, "driver_id": "display", "name": "Display", "status": {"power": {"on": true, "level": [1, 2.5]}}})
    );

    // Refusals append nothing.
    let before = c.stream_len("ENGINE").await.unwrap();
    c.request(
        "engine.cmd.add-module",
        &json!({"module_id": m, "driver_id": "display", "name": "Display"}),
    )
    .await
    .unwrap()
    .assert_error("conflict", 409);
    c.request(
        "engine.cmd.add-module",
        &json!({"module_id": "x", "driver_id": "no-such-driver", "name": "Display"}),
    )
    .await
    .unwrap()
    .assert_error("not_found", 404);
    c.request(
        "engine.cmd.set-system",
        &json!({"system_id": sys, "modules": ["ghost"]}),
    )
    .await
    .unwrap()
    .assert_error("not_found", 404);
    c.request(
        "engine.cmd.update-status",
        &json!({"module_id": "ghost", "name": "power", "value": 1}),
    )
    .await
    .unwrap()
    .assert_error("not_found", 404);
    c.request("engine.query.module", &json!({"module_id": "ghost"}))
        .await
        .unwrap()
        .assert_error("not_found", 404);
    c.request("engine.query.system", &json!({"system_id": "ghost"}))
        .await
        .unwrap()
        .assert_error("not_found", 404);
    c.request("engine.query.driver", &json!({"driver_id": "ghost"}))
        .await
        .unwrap()
        .assert_error("not_found", 404);
    assert_eq!(c.stream_len("ENGINE").await.unwrap(), before);

    // A custom driver's metadata round-trips; registering again replaces it.
    let meta = json!({"functions": {"f": {"x": ["String|Int32", "a"]}}, "implements": ["I"], "requirements": {"Display_1": ["Powerable"]},
                      "security": {"support": ["f"], "administrator": []}});
    let r = cmd(
        &c,
        "engine.cmd.register-driver",
        json!({"driver_id": "custom.v1", "metadata": meta}),
    )
    .await;
    let d = c
        .request(
            "engine.query.driver",
            &json!({"driver_id": "custom.v1", "min_seq": r["seq"]}),
        )
        .await
        .unwrap()
        .ok();
    assert_eq!(d["metadata"], meta);

    // Idempotency: the same Nats-Msg-Id appends once and answers the same.
    let body = json!({"module_id": m, "name": "input", "value": "hdmi"});
    let a = c
        .request_with_id("engine.cmd.update-status", "msg-1", &body)
        .await
        .unwrap()
        .ok();
    let n = c.stream_len("ENGINE").await.unwrap();
    let b = c
        .request_with_id("engine.cmd.update-status", "msg-1", &body)
        .await
        .unwrap()
        .ok();
    assert_eq!(a, b);
    assert_eq!(c.stream_len("ENGINE").await.unwrap(), n);
}

#[tokio::test]
async fn watch_subjects_follow_a_reorder() {
    fast_membership();
    let env = TestEnv::new().await.unwrap();
    let _svc = env.services(&["engine"]).await.unwrap();
    let c = env.client().await.unwrap();
    let sys = "sys.w";
    given_system(&c, sys).await;
    let a = format!("{sys}/disp.a");
    let b = format!("{sys}/disp.b");
    let tok = schemas::encode_token(sys);

    let mut direct = c
        .nats
        .subscribe(format!("engine.status.{}.power", schemas::encode_token(&a)))
        .await
        .unwrap();
    let mut place1 = c
        .nats
        .subscribe(format!("engine.watch.{tok}.Display_1.power"))
        .await
        .unwrap();
    let mut place2 = c
        .nats
        .subscribe(format!("engine.watch.{tok}.Display_2.power"))
        .await
        .unwrap();
    c.nats.flush().await.unwrap();

    cmd(
        &c,
        "engine.cmd.update-status",
        json!({"module_id": a, "name": "power", "value": true}),
    )
    .await;
    assert_eq!(next_json(&mut direct).await, json!(true));
    assert_eq!(next_json(&mut place1).await, json!(true));
    cmd(
        &c,
        "engine.cmd.update-status",
        json!({"module_id": b, "name": "power", "value": false}),
    )
    .await;
    assert_eq!(next_json(&mut place2).await, json!(false));

    // exec on the display reports the status through the same subjects.
    let r = exec(&c, None, &json!({"system_id": sys, "module": "Display_2", "method": "power", "args": {"state": true}})).await.ok();
    assert_eq!(r, json!({"result": true}));
    assert_eq!(next_json(&mut place2).await, json!(true));
    cmd(
        &c,
        "engine.cmd.update-status",
        json!({"module_id": b, "name": "power", "value": "b-now"}),
    )
    .await;
    assert_eq!(next_json(&mut place2).await, json!("b-now"));

    // Re-order: each place carries its new holder's current value at once, without resubscribing.
    let seq = cmd(
        &c,
        "engine.cmd.set-system",
        json!({"system_id": sys, "modules": [b, format!("{sys}/calc"), a]}),
    )
    .await["seq"]
        .clone();
    assert_eq!(next_json(&mut place1).await, json!("b-now"));
    assert_eq!(next_json(&mut place2).await, json!(true));
    // And then follows the new holder.
    cmd(
        &c,
        "engine.cmd.update-status",
        json!({"module_id": b, "name": "power", "value": 42}),
    )
    .await;
    assert_eq!(next_json(&mut place1).await, json!(42));
    cmd(
        &c,
        "engine.cmd.update-status",
        json!({"module_id": a, "name": "power", "value": "a-again"}),
    )
    .await;
    assert_eq!(next_json(&mut place2).await, json!("a-again"));
    assert_eq!(next_json(&mut direct).await, json!("a-again"));
    let l = c
        .request(
            "engine.query.lookup",
            &json!({"system_id": sys, "module": "Display_1", "min_seq": seq}),
        )
        .await
        .unwrap()
        .ok();
    assert_eq!(l["module_id"], json!(b));
}

#[tokio::test]
async fn exec_checks_types_defaults_and_roles() {
    fast_membership();
    let env = TestEnv::new().await.unwrap();
    let _svc = env.services(&["engine"]).await.unwrap();
    let c = env.client().await.unwrap();
    let sys = "sys-x";
    given_system(&c, sys).await;
    let call = |method: &str, args: Value| json!({"system_id": sys, "module": "Calculator_1", "method": method, "args": args});
    let support = token(&["support"]);
    let admin = token(&["administrator"]);
    let nobody = token(&[]);

    // Types.
    assert_eq!(
        exec(&c, None, &call("add", json!({"a": 2, "b": 3})))
            .await
            .ok(),
        json!({"result": 5})
    );
    assert_eq!(
        exec(
            &c,
            None,
            &call("add", json!({"a": 2147483647, "b": -2147483648}))
        )
        .await
        .ok(),
        json!({"result": -1})
    );
    for bad in [
        json!({"a": 2147483648_i64, "b": 1}),
        json!({"a": "1", "b": 1}),
        json!({"a": 1.5, "b": 1}),
        json!({"a": null, "b": 1}),
        json!({"a": 1}),
        json!({"a": 1, "b": 2, "c": 3}),
        json!({"a": true, "b": 1}),
    ] {
        exec(&c, None, &call("add", bad.clone()))
            .await
            .assert_error("invalid_request", 400);
    }
    // Unions.
    assert_eq!(
        exec(
            &c,
            Some(&admin),
            &call("perform_task", json!({"name": "x"}))
        )
        .await
        .ok()["result"],
        json!("performed task x")
    );
    assert_eq!(
        exec(&c, Some(&admin), &call("perform_task", json!({"name": 7})))
            .await
            .ok()["result"],
        json!("performed task 7")
    );
    exec(
        &c,
        Some(&admin),
        &call("perform_task", json!({"name": 7.5})),
    )
    .await
    .assert_error("invalid_request", 400);
    exec(
        &c,
        Some(&admin),
        &call("perform_task", json!({"name": [1]})),
    )
    .await
    .assert_error("invalid_request", 400);
    // Defaults.
    assert_eq!(
        exec(&c, Some(&support), &call("future_add", json!({"a": 1})))
            .await
            .ok(),
        json!({"result": 201})
    );
    assert_eq!(
        exec(
            &c,
            Some(&support),
            &call("future_add", json!({"a": 1, "b": 2}))
        )
        .await
        .ok(),
        json!({"result": 3})
    );

    // Security: support level.
    exec(&c, None, &call("future_add", json!({"a": 1})))
        .await
        .assert_error("unauthorized", 401);
    let forged =
        engine::auth::issue("another-secret", "jane", &["administrator".into()], 3600).unwrap();
    exec(&c, Some(&forged), &call("future_add", json!({"a": 1})))
        .await
        .assert_error("unauthorized", 401);
    let expired =
        engine::auth::issue_with_expiry(SECRET, "jane", &["administrator".into()], 1_000_000)
            .unwrap();
    exec(&c, Some(&expired), &call("future_add", json!({"a": 1})))
        .await
        .assert_error("unauthorized", 401);
    exec(&c, Some("garbage"), &call("future_add", json!({"a": 1})))
        .await
        .assert_error("unauthorized", 401);
    exec(&c, Some(&nobody), &call("future_add", json!({"a": 1})))
        .await
        .assert_error("forbidden", 403);
    // Administrator level.
    exec(&c, None, &call("perform_task", json!({"name": "x"})))
        .await
        .assert_error("unauthorized", 401);
    exec(
        &c,
        Some(&support),
        &call("perform_task", json!({"name": "x"})),
    )
    .await
    .assert_error("forbidden", 403);
    // A driver's own failure is driver_error, and the service goes on.
    exec(&c, None, &call("error_task", json!({})))
        .await
        .assert_error("unauthorized", 401);
    exec(&c, Some(&support), &call("error_task", json!({})))
        .await
        .assert_error("driver_error", 502);
    exec(&c, Some(&admin), &call("error_task", json!({})))
        .await
        .assert_error("driver_error", 502);
    assert_eq!(
        exec(&c, None, &call("add", json!({"a": 1, "b": 1})))
            .await
            .ok(),
        json!({"result": 2})
    );

    // Names that do not exist.
    exec(&c, None, &call("nope", json!({})))
        .await
        .assert_error("not_found", 404);
    exec(&c, None, &json!({"system_id": sys, "module": "Display_9", "method": "power", "args": {"state": true}})).await.assert_error("not_found", 404);
    exec(&c, None, &json!({"system_id": "ghost", "module": "Display_1", "method": "power", "args": {"state": true}}))
        .await
        .assert_error("not_found", 404);
    // A registered driver that no instance implements does not answer: unavailable.
    let meta = json!({"functions": {"ping": {}}});
    cmd(
        &c,
        "engine.cmd.register-driver",
        json!({"driver_id": "remote-only", "metadata": meta}),
    )
    .await;
    cmd(
        &c,
        "engine.cmd.add-module",
        json!({"module_id": "ro", "driver_id": "remote-only", "name": "Remote"}),
    )
    .await;
    cmd(
        &c,
        "engine.cmd.set-system",
        json!({"system_id": "sys-ro", "modules": ["ro"]}),
    )
    .await;
    exec(
        &c,
        None,
        &json!({"system_id": "sys-ro", "module": "Remote_1", "method": "ping"}),
    )
    .await
    .assert_error("unavailable", 503);

    // `Display` alone is Display_1; a display takes a Bool.
    assert_eq!(exec(&c, None, &json!({"system_id": sys, "module": "Display", "method": "power", "args": {"state": false}})).await.ok()["result"], json!(false));
    exec(&c, None, &json!({"system_id": sys, "module": "Display_1", "method": "power", "args": {"state": "on"}}))
        .await
        .assert_error("invalid_request", 400);
}

#[tokio::test]
async fn bad_input_on_every_subject() {
    fast_membership();
    let env = TestEnv::new().await.unwrap();
    let _svc = env.services(&["engine"]).await.unwrap();
    let c = env.client().await.unwrap();
    given_system(&c, "s").await;
    let before = c.stream_len("ENGINE").await.unwrap();
    let long = "x".repeat(257);
    let cases: Vec<(&str, Value)> = vec![
        ("engine.cmd.register-driver", json!({"driver_id": "d"})),
        (
            "engine.cmd.register-driver",
            json!({"driver_id": "d", "metadata": {"functions": {"f": {"a": ["Integer"]}}}}),
        ),
        (
            "engine.cmd.register-driver",
            json!({"driver_id": "d", "metadata": {"functions": {"f": {"a": ["Int32", "x"]}}}}),
        ),
        (
            "engine.cmd.register-driver",
            json!({"driver_id": "d", "metadata": {"functions": {}, "extra": 1}}),
        ),
        (
            "engine.cmd.register-driver",
            json!({"driver_id": "", "metadata": {"functions": {}}}),
        ),
        (
            "engine.cmd.add-module",
            json!({"module_id": "m", "driver_id": "display"}),
        ),
        (
            "engine.cmd.add-module",
            json!({"module_id": "m", "driver_id": "display", "name": "Bad Name"}),
        ),
        (
            "engine.cmd.add-module",
            json!({"module_id": long, "driver_id": "display", "name": "Display"}),
        ),
        (
            "engine.cmd.add-module",
            json!({"module_id": 5, "driver_id": "display", "name": "Display"}),
        ),
        (
            "engine.cmd.set-system",
            json!({"system_id": "s", "modules": "s/calc"}),
        ),
        (
            "engine.cmd.set-system",
            json!({"system_id": "s", "modules": ["s/calc", "s/calc"]}),
        ),
        (
            "engine.cmd.set-system",
            json!({"system_id": "s", "modules": [], "x": 1}),
        ),
        (
            "engine.cmd.update-status",
            json!({"module_id": "s/calc", "name": "p"}),
        ),
        (
            "engine.cmd.update-status",
            json!({"module_id": "s/calc", "name": "", "value": 1}),
        ),
        (
            "engine.query.lookup",
            json!({"system_id": "s", "module": "Display", "index": 0}),
        ),
        (
            "engine.query.lookup",
            json!({"system_id": "s", "module": "Display", "index": "1"}),
        ),
        ("engine.query.lookup", json!({"system_id": "s"})),
        ("engine.query.status", json!({"module_id": "s/calc"})),
        (
            "engine.query.module",
            json!({"module_id": "s/calc", "min_seq": -1}),
        ),
        ("engine.query.system", json!({"id": "s"})),
        ("engine.query.driver", json!({"driver_id": ["display"]})),
        (
            "engine.exec",
            json!({"system_id": "s", "module": "Calculator_1", "method": "add", "args": [1, 2]}),
        ),
        (
            "engine.exec",
            json!({"system_id": "s", "module": "Calculator_1"}),
        ),
        (
            "engine.exec",
            json!({"system_id": "s", "module": "Calculator_1", "method": "add", "args": {"a": 1, "b": 2}, "x": 1}),
        ),
    ];
    for (subject, body) in &cases {
        let r = c.request(subject, body).await.unwrap();
        r.assert_error("invalid_request", 400);
    }
    for subject in [
        "engine.cmd.register-driver",
        "engine.cmd.add-module",
        "engine.cmd.set-system",
        "engine.cmd.update-status",
        "engine.query.lookup",
        "engine.query.status",
        "engine.query.module",
        "engine.query.system",
        "engine.query.driver",
        "engine.query.instances",
        "engine.exec",
    ] {
        for raw in [
            &b"not json"[..],
            b"[1,2]",
            b"\"x\"",
            b"{\"a\":",
            b"\xff\xfe",
        ] {
            c.request_raw(subject, None, Bytes::from_static(raw))
                .await
                .unwrap()
                .assert_error("invalid_request", 400);
        }
    }
    // Too large.
    let big = json!({"module_id": "s/calc", "name": "p", "value": "x".repeat(2 * 1024 * 1024)});
    c.request("engine.cmd.update-status", &big)
        .await
        .unwrap()
        .assert_error("payload_too_large", 413);
    assert_eq!(
        c.stream_len("ENGINE").await.unwrap(),
        before,
        "a rejected command appends nothing"
    );
    // Still answering.
    let r = exec(&c, None, &json!({"system_id": "s", "module": "Calculator_1", "method": "add", "args": {"a": 1, "b": 2}})).await.ok();
    assert_eq!(r, json!({"result": 3}));
}

async fn instances(c: &Client) -> Vec<(String, Vec<String>)> {
    // A request sent in the instant an instance crashes can be routed to it before the server has
    // seen the connection close; like any client of a crashed responder, time out and ask again.
    let mut tries = 0;
    let r = loop {
        match tokio::time::timeout(
            Duration::from_secs(2),
            c.request("engine.query.instances", &json!({})),
        )
        .await
        {
            Ok(r) => break r.unwrap().ok(),
            Err(_) => {
                tries += 1;
                assert!(
                    tries < 5,
                    "engine.query.instances did not answer 5 times in a row"
                );
            }
        }
    };
    r["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let mods = i["modules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_string())
                .collect();
            (i["instance_id"].as_str().unwrap().to_string(), mods)
        })
        .collect()
}

#[tokio::test]
async fn three_instances_share_modules_and_survive_a_crash() {
    fast_membership();
    let env = TestEnv::new().await.unwrap();
    let mut svcs = vec![
        env.services(&["engine"]).await.unwrap(),
        env.services(&["engine"]).await.unwrap(),
        env.services(&["engine"]).await.unwrap(),
    ];
    let c = env.client().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        let m = format!("calc-{i}");
        cmd(
            &c,
            "engine.cmd.add-module",
            json!({"module_id": m, "driver_id": "calculator", "name": "Calculator"}),
        )
        .await;
        ids.push(m);
    }
    cmd(
        &c,
        "engine.cmd.set-system",
        json!({"system_id": "big", "modules": ids}),
    )
    .await;

    // Every instance sees the three, and the modules spread over them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let owners = loop {
        let o = instances(&c).await;
        if o.len() == 3 && o.iter().all(|(_, m)| !m.is_empty()) {
            break o;
        }
        assert!(
            Instant::now() < deadline,
            "instances never showed three owners: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for i in 1..=30 {
        let r = exec(&c, None, &json!({"system_id": "big", "module": format!("Calculator_{i}"), "method": "add", "args": {"a": i, "b": 1}})).await;
        assert_eq!(r.ok(), json!({"result": i + 1}));
    }

    // Let the start-up announcements pass: wait for a quiet second on engine.system.
    let mut ready = c.nats.subscribe("engine.system").await.unwrap();
    c.nats.flush().await.unwrap();
    for _ in 0..20 {
        if tokio::time::timeout(Duration::from_secs(1), ready.next())
            .await
            .is_err()
        {
            break;
        }
    }

    // Which runtime is which instance? Kill one, see which id disappears.
    svcs[1].kill();
    let killed_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let o = instances(&c).await;
        if o.len() == 2 {
            break o;
        }
        assert!(
            Instant::now() < deadline,
            "the crashed instance never left: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let dead: Vec<&(String, Vec<String>)> = owners
        .iter()
        .filter(|(id, _)| !after.iter().any(|(a, _)| a == id))
        .collect();
    assert_eq!(dead.len(), 1);
    let (dead_id, dead_modules) = dead[0];
    // Only the dead instance's modules moved.
    for (id, mods) in &owners {
        if id != dead_id {
            let now = &after.iter().find(|(a, _)| a == id).unwrap().1;
            assert!(
                mods.iter().all(|m| now.contains(m)),
                "{id} lost modules although it stayed"
            );
        }
    }
    // Exec on a module of the dead instance works again within the heartbeat window.
    let moved = &dead_modules[0];
    let index = ids.iter().position(|m| m == moved).unwrap() + 1;
    let body = json!({"system_id": "big", "module": format!("Calculator_{index}"), "method": "add", "args": {"a": 40, "b": 2}});
    let r = exec(&c, None, &body).await;
    assert_eq!(r.ok(), json!({"result": 42}));
    assert!(
        killed_at.elapsed() < Duration::from_secs(8),
        "fail-over took {:?}",
        killed_at.elapsed()
    );
    for i in 1..=30 {
        let r = exec(&c, None, &json!({"system_id": "big", "module": format!("Calculator_{i}"), "method": "add", "args": {"a": i, "b": 1}})).await;
        assert_eq!(r.ok(), json!({"result": i + 1}));
    }
    // The leader announces ready again once the survivors have started their new modules.
    let m = tokio::time::timeout(Duration::from_secs(10), ready.next())
        .await
        .expect("no ready after the crash")
        .unwrap();
    assert_eq!(&m.payload[..], b"ready");
    drop(svcs);
}

#[tokio::test]
async fn a_joining_instance_takes_only_its_share() {
    fast_membership();
    let env = TestEnv::new().await.unwrap();
    let _a = env.services(&["engine"]).await.unwrap();
    let _b = env.services(&["engine"]).await.unwrap();
    let c = env.client().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        let m = format!("j-{i}");
        cmd(
            &c,
            "engine.cmd.add-module",
            json!({"module_id": m, "driver_id": "calculator", "name": "Calculator"}),
        )
        .await;
        ids.push(m);
    }
    cmd(
        &c,
        "engine.cmd.set-system",
        json!({"system_id": "join", "modules": ids}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let o = instances(&c).await;
        if o.len() == 2 && o.iter().map(|(_, m)| m.len()).sum::<usize>() == 30 {
            break o;
        }
        assert!(
            Instant::now() < deadline,
            "two instances never owned the 30 modules: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _c = env.services(&["engine"]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let o = instances(&c).await;
        if o.len() == 3 {
            break o;
        }
        assert!(
            Instant::now() < deadline,
            "the third instance never joined: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let newcomer = after
        .iter()
        .find(|(id, _)| !before.iter().any(|(b, _)| b == id))
        .unwrap();
    assert!(!newcomer.1.is_empty(), "the newcomer owns nothing");
    for (id, mods) in &before {
        let now = &after.iter().find(|(a, _)| a == id).unwrap().1;
        for m in mods {
            assert!(
                now.contains(m) || newcomer.1.contains(m),
                "{m} moved between old instances"
            );
        }
    }
    for i in 1..=30 {
        let r = exec(&c, None, &json!({"system_id": "join", "module": format!("Calculator_{i}"), "method": "add", "args": {"a": i, "b": 0}})).await;
        assert_eq!(r.ok(), json!({"result": i}));
    }
}
