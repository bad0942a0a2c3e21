//! The audit trail of `engine.exec`: every call, allowed or refused, becomes an `ExecAudited` event
//! (who, roles, system, module, method, arguments, outcome, duration), queryable per module and per
//! system on `engine.query.audit`.

use bytes::Bytes;
use e2e::{Client, TestEnv};
use serde_json::{json, Value};

const SECRET: &str = "switchyard-dev-secret-change-me";

fn token(sub: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_string()).collect();
    engine::auth::issue(SECRET, sub, &roles, 3600).unwrap()
}

async fn exec(c: &Client, token: Option<&str>, body: &Value) -> e2e::Reply {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exec_allowed_or_refused_is_audited_and_queryable_per_module() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["engine"]).await?;
    let c = env.client().await?;
    for (id, driver, name) in [
        ("hall/calc", "calculator", "Calculator"),
        ("hall/disp", "display", "Display"),
    ] {
        c.request(
            "engine.cmd.add-module",
            &json!({"module_id": id, "driver_id": driver, "name": name}),
        )
        .await?
        .ok();
    }
    let set = c
        .request(
            "engine.cmd.set-system",
            &json!({"system_id": "hall", "modules": ["hall/calc", "hall/disp"]}),
        )
        .await?
        .ok();
    let call = |method: &str, args: Value| json!({"system_id": "hall", "module": "Calculator_1", "method": method, "args": args});
    let jane = token("jane", &["support"]);
    exec(&c, None, &call("add", json!({"a": 2, "b": 3})))
        .await
        .ok();
    exec(&c, None, &call("perform_task", json!({})))
        .await
        .assert_error("unauthorized", 401);
    exec(&c, Some(&jane), &call("perform_task", json!({})))
        .await
        .assert_error("forbidden", 403);
    exec(&c, Some(&jane), &call("add", json!({"a": "x", "b": 1})))
        .await
        .assert_error("invalid_request", 400);
    let off = json!({"system_id": "hall", "module": "Display_1", "method": "power", "args": {"state": false}});
    exec(&c, Some(&jane), &off).await.ok();
    // Each reply is sent after its audit event is appended: the stream holds all five now.
    let min_seq = c.stream_len("ENGINE").await?;
    assert!(min_seq >= set["seq"].as_u64().unwrap() + 5);
    let calc = c
        .request(
            "engine.query.audit",
            &json!({"module_id": "hall/calc", "min_seq": min_seq}),
        )
        .await?
        .ok();
    let entries = calc["entries"].as_array().unwrap();
    let outcomes: Vec<&str> = entries
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["invalid_request", "forbidden", "unauthorized", "ok"],
        "newest first"
    );
    assert_eq!(entries[0]["who"], "jane");
    assert_eq!(entries[0]["roles"], json!(["support"]));
    assert_eq!(entries[0]["args"], json!({"a": "x", "b": 1}));
    assert!(entries[0]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(entries[2]["who"], Value::Null);
    assert_eq!(entries[3]["method"], "add");
    assert_eq!(entries[3]["system_id"], "hall");
    assert_eq!(entries[3]["module"], "Calculator_1");
    assert!(entries[3]["duration_ms"].is_u64());
    // "Who switched this display off?"
    let display = c
        .request(
            "engine.query.audit",
            &json!({"system_id": "hall", "module": "Display_1", "min_seq": min_seq}),
        )
        .await?
        .ok();
    let d = &display["entries"].as_array().unwrap()[0];
    assert_eq!(
        (
            d["who"].as_str(),
            d["method"].as_str(),
            d["outcome"].as_str()
        ),
        (Some("jane"), Some("power"), Some("ok"))
    );
    assert_eq!(d["args"], json!({"state": false}));
    assert_eq!(d["module_id"], "hall/disp");
    let all = c
        .request("engine.query.audit", &json!({"system_id": "hall"}))
        .await?
        .ok();
    assert_eq!(
        all["entries"].as_array().unwrap().len(),
        5,
        "one entry per call"
    );
    let some = c
        .request(
            "engine.query.audit",
            &json!({"system_id": "hall", "limit": 3}),
        )
        .await?
        .ok();
    assert_eq!(some["entries"].as_array().unwrap().len(), 3);
    c.request("engine.query.audit", &json!({}))
        .await?
        .assert_error("invalid_request", 400);
    c.request("engine.query.audit", &json!({"module_id": "x", "limit": 0}))
        .await?
        .assert_error("invalid_request", 400);
    Ok(())
}
