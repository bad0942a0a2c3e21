//! End-to-end tests of contract section 6 (cluster): a manager, its workers and nodes, the tree and its
//! live deltas, against a real nats-server and PostgreSQL, talking NATS as a client would.

use e2e::{Client, Reply, Services, TestEnv};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

async fn setup() -> (TestEnv, Services, Client) {
    let env = TestEnv::new().await.expect("test environment");
    let services = env.services(&["cluster"]).await.expect("cluster starts");
    let client = env.client().await.expect("client");
    (env, services, client)
}

async fn cmd(c: &Client, verb: &str, body: Value) -> Reply {
    c.request(&format!("cluster.cmd.{verb}"), &body)
        .await
        .expect("a reply")
}

async fn ok(c: &Client, verb: &str, body: Value) -> Value {
    let r = cmd(c, verb, body.clone()).await;
    assert!(
        r.status.is_none(),
        "cluster.cmd.{verb} {body} failed: {}",
        r.body
    );
    r.body
}

async fn tree(c: &Client, m: &str, min_seq: u64) -> Value {
    c.request(
        "cluster.query.tree",
        &json!({"manager_id": m, "min_seq": min_seq}),
    )
    .await
    .expect("reply")
    .ok()
}

fn worker(id: &str) -> Value {
    json!({"id": id, "name": format!("worker {id}"), "ip": "10.0.0.2", "port": 7000})
}

fn node(id: &str, port: u16, data_type: &str) -> Value {
    json!({"id": id, "name": format!("node {id}"), "port": port, "data_type": data_type, "dashboard_component": null, "capabilities": ["start", "stop"]})
}

/// Six nodes on three workers: two sources per worker 1, processors on 2, a sink on 3.
fn graph(m: &str) -> Value {
    json!({
        "manager_id": m,
        "nodes": [node("cam", 1, "Video"), node("mic", 2, "Audio"), node("eeg", 3, "Series"),
                  node("pose", 1, "Video"), node("asr", 2, "Audio"), node("sink", 1, "Series")],
        "edges": [["cam", "pose"], ["mic", "asr"], ["pose", "sink"], ["asr", "sink"], ["eeg", "sink"]],
        "mapping": {"cam": "w1", "mic": "w1", "eeg": "w1", "pose": "w2", "asr": "w2", "sink": "w3"}
    })
}

/// Applies a delta the way a dashboard following the contract would (written apart from the
/// service's own code on purpose).
fn apply(tree: &mut Value, d: &Value) {
    let path = d["path"].as_str().expect("path");
    let op = d["op"].as_str().expect("op");
    if path.is_empty() {
        assert_eq!(op, "upsert");
        *tree = d["value"].clone();
    } else {
        let keys: Vec<String> = path
            .split('/')
            .map(|k| k.replace("~1", "/").replace("~0", "~"))
            .collect();
        let (last, parents) = keys.split_last().expect("keys");
        let mut at = &mut *tree;
        for k in parents {
            at = if at.is_array() {
                at.as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|e| e["id"] == k.as_str())
                    .unwrap_or_else(|| panic!("no element {k} for {path}"))
            } else {
                at.get_mut(k)
                    .unwrap_or_else(|| panic!("no key {k} for {path}"))
            };
        }
        if let Some(list) = at.as_array_mut() {
            let pos = list.iter().position(|e| e["id"] == last.as_str());
            match (op, pos) {
                ("upsert", Some(i)) => list[i] = d["value"].clone(),
                ("upsert", None) => list.push(d["value"].clone()),
                ("remove", Some(i)) => {
                    list.remove(i);
                }
                _ => panic!("cannot {op} {path}"),
            }
        } else {
            let obj = at.as_object_mut().expect("an object");
            if op == "upsert" {
                obj.insert(last.clone(), d["value"].clone());
            } else {
                assert!(obj.remove(last).is_some(), "remove of a missing {path}");
            }
        }
    }
    tree["version"] = d["version"].clone();
}

fn find<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .expect("list")
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {list}"))
}

/// Starts `m` with three workers and the six-node graph; returns the last reply.
async fn ready_manager(c: &Client, m: &str) -> Value {
    ok(
        c,
        "start-manager",
        json!({"manager_id": m, "ip": "10.0.0.1", "port": 9000}),
    )
    .await;
    for w in ["w1", "w2", "w3"] {
        ok(
            c,
            "connect-worker",
            json!({"manager_id": m, "worker": worker(w)}),
        )
        .await;
    }
    ok(c, "commit-graph", graph(m)).await
}

#[tokio::test]
async fn full_life_of_a_manager() {
    let (_env, _s, c) = setup().await;
    let m = "lab.1 */>";
    let r = ok(
        &c,
        "start-manager",
        json!({"manager_id": m, "ip": "10.0.0.1", "port": 9000}),
    )
    .await;
    assert_eq!(
        (
            r["state"].clone(),
            r["state_name"].clone(),
            r["version"].clone()
        ),
        (json!(0), json!("STARTED"), json!(1))
    );
    assert!(r["seq"].as_u64().unwrap() > 0);
    let t = tree(&c, m, r["seq"].as_u64().unwrap()).await;
    assert_eq!(
        t,
        json!({"state": 0, "state_name": "STARTED", "ip": "10.0.0.1", "port": 9000, "workers": [], "graph": {"nodes": [], "edges": []}, "worker_graph_map": {}, "version": 1})
    );

    let r = ok(
        &c,
        "connect-worker",
        json!({"manager_id": m, "worker": worker("w1")}),
    )
    .await;
    assert_eq!(
        (r["state_name"].as_str(), r["version"].as_u64()),
        (Some("WORKERS_CONNECTED"), Some(2))
    );
    ok(
        &c,
        "connect-worker",
        json!({"manager_id": m, "worker": worker("w2")}),
    )
    .await;
    ok(
        &c,
        "connect-worker",
        json!({"manager_id": m, "worker": worker("w3")}),
    )
    .await;
    let r = ok(&c, "commit-graph", graph(m)).await;
    assert_eq!(
        (
            r["state"].as_u64(),
            r["state_name"].as_str(),
            r["version"].as_u64()
        ),
        (Some(2), Some("NODES_READY"), Some(5))
    );
    for n in ["cam", "mic", "eeg", "pose", "asr", "sink"] {
        ok(
            &c,
            "node-report",
            json!({"manager_id": m, "node_id": n, "running": true}),
        )
        .await;
    }
    let r = ok(&c, "execute", json!({"manager_id": m})).await;
    assert_eq!(
        (r["state"].as_u64(), r["state_name"].as_str()),
        (Some(3), Some("EXECUTING"))
    );

    let t = tree(&c, m, r["seq"].as_u64().unwrap()).await;
    assert_eq!(t["version"], 12);
    assert_eq!(t["workers"].as_array().unwrap().len(), 3);
    let w1 = find(&t["workers"], "w1");
    assert_eq!(
        (w1["ip"].as_str(), w1["name"].as_str(), w1["port"].as_u64()),
        (Some("10.0.0.2"), Some("worker w1"), Some(7000))
    );
    assert_eq!(w1["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(
        find(&w1["nodes"], "cam"),
        &json!({"name": "node cam", "id": "cam", "port": 1, "running": true, "data_type": "Video", "dashboard_component": null, "capabilities": ["start", "stop"]})
    );
    assert_eq!(t["graph"]["nodes"].as_array().unwrap().len(), 6);
    assert_eq!(t["graph"]["edges"].as_array().unwrap().len(), 5);
    assert_eq!(t["worker_graph_map"]["sink"], "w3");

    // A worker leaving while executing: its nodes are marked not running, the others keep running.
    let r = ok(
        &c,
        "disconnect-worker",
        json!({"manager_id": m, "worker_id": "w2"}),
    )
    .await;
    assert_eq!(r["state_name"], "EXECUTING");
    let t = tree(&c, m, r["seq"].as_u64().unwrap()).await;
    let w2 = find(&t["workers"], "w2");
    assert_eq!(w2["connected"], false);
    assert!(
        w2["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["running"] == false),
        "{w2}"
    );
    assert_eq!(
        find(&find(&t["workers"], "w1")["nodes"], "cam")["running"],
        true
    );
    // It cannot run nodes until it is back.
    cmd(
        &c,
        "node-report",
        json!({"manager_id": m, "node_id": "pose", "running": true}),
    )
    .await
    .assert_error("conflict", 409);
    ok(
        &c,
        "connect-worker",
        json!({"manager_id": m, "worker": worker("w2")}),
    )
    .await;
    ok(
        &c,
        "node-report",
        json!({"manager_id": m, "node_id": "pose", "running": true}),
    )
    .await;

    let r = ok(&c, "stop", json!({"manager_id": m})).await;
    assert_eq!(
        (r["state"].as_u64(), r["state_name"].as_str()),
        (Some(4), Some("STOPPED"))
    );
    let t = tree(&c, m, r["seq"].as_u64().unwrap()).await;
    assert!(t["workers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["nodes"].as_array().unwrap())
        .all(|n| n["running"] == false));
    let r = ok(&c, "finalize", json!({"manager_id": m})).await;
    assert_eq!(
        (
            r["state"].as_u64(),
            r["state_name"].as_str(),
            r["version"].as_u64()
        ),
        (Some(5), Some("FINALIZING"), Some(17))
    );
    assert_eq!(
        c.stream_len("CLUSTER").await.unwrap(),
        17,
        "one event per command"
    );

    let managers = c
        .request("cluster.query.managers", &json!({"min_seq": r["seq"]}))
        .await
        .unwrap()
        .ok();
    assert_eq!(
        managers,
        json!({"managers": [{"manager_id": m, "state": 5, "state_name": "FINALIZING"}]})
    );

    // The micro service answers discovery under its contract name.
    let info = c
        .nats
        .request("$SRV.INFO.cluster", "".into())
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["name"], "cluster");
}

#[tokio::test]
async fn every_out_of_order_transition_is_a_conflict_naming_the_state() {
    let (_env, _s, c) = setup().await;
    let m = "m1";
    let expect = |verbs: &'static [&'static str], state: &'static str| (verbs, state);
    let check = |c: Client, verbs: &'static [&'static str], state: &'static str| async move {
        let before = c.stream_len("CLUSTER").await.unwrap();
        for verb in verbs {
            let body = match *verb {
                "start-manager" => json!({"manager_id": m, "ip": "10.0.0.1", "port": 1}),
                "commit-graph" => graph(m),
                "connect-worker" => json!({"manager_id": m, "worker": worker("w9")}),
                "node-report" => json!({"manager_id": m, "node_id": "cam", "running": true}),
                _ => json!({"manager_id": m}),
            };
            let r = cmd(&c, verb, body).await;
            r.assert_error("conflict", 409);
            let msg = r.body["error"]["message"].as_str().unwrap();
            assert!(msg.contains(state), "{verb} in {state}: {msg}");
        }
        assert_eq!(
            c.stream_len("CLUSTER").await.unwrap(),
            before,
            "a refused command appends nothing"
        );
    };
    ok(
        &c,
        "start-manager",
        json!({"manager_id": m, "ip": "10.0.0.1", "port": 9000}),
    )
    .await;
    let (v, s) = expect(
        &[
            "start-manager",
            "commit-graph",
            "node-report",
            "execute",
            "stop",
            "finalize",
        ],
        "STARTED",
    );
    check(c.clone(), v, s).await;
    for w in ["w1", "w2", "w3"] {
        ok(
            &c,
            "connect-worker",
            json!({"manager_id": m, "worker": worker(w)}),
        )
        .await;
    }
    let (v, s) = expect(
        &[
            "start-manager",
            "node-report",
            "execute",
            "stop",
            "finalize",
        ],
        "WORKERS_CONNECTED",
    );
    check(c.clone(), v, s).await;
    ok(&c, "commit-graph", graph(m)).await;
    let (v, s) = expect(&["start-manager", "stop", "finalize"], "NODES_READY");
    check(c.clone(), v, s).await;
    ok(&c, "execute", json!({"manager_id": m})).await;
    let (v, s) = expect(
        &["start-manager", "commit-graph", "execute", "finalize"],
        "EXECUTING",
    );
    check(c.clone(), v, s).await;
    ok(&c, "stop", json!({"manager_id": m})).await;
    let (v, s) = expect(&["start-manager", "stop", "node-report"], "STOPPED");
    check(c.clone(), v, s).await;
    ok(&c, "finalize", json!({"manager_id": m})).await;
    let (v, s) = expect(
        &[
            "start-manager",
            "commit-graph",
            "connect-worker",
            "node-report",
            "execute",
            "stop",
            "finalize",
        ],
        "FINALIZING",
    );
    check(c.clone(), v, s).await;

    // Unknown manager, worker, node: not_found.
    cmd(&c, "execute", json!({"manager_id": "nobody"}))
        .await
        .assert_error("not_found", 404);
    c.request("cluster.query.tree", &json!({"manager_id": "nobody"}))
        .await
        .unwrap()
        .assert_error("not_found", 404);
    let m2 = "m2";
    ready_manager(&c, m2).await;
    cmd(
        &c,
        "disconnect-worker",
        json!({"manager_id": m2, "worker_id": "w9"}),
    )
    .await
    .assert_error("not_found", 404);
    cmd(
        &c,
        "node-report",
        json!({"manager_id": m2, "node_id": "nope", "running": true}),
    )
    .await
    .assert_error("not_found", 404);
}

#[tokio::test]
async fn invalid_graphs_and_bodies_are_invalid_request_with_nothing_appended() {
    let (_env, _s, c) = setup().await;
    let m = "m";
    ok(
        &c,
        "start-manager",
        json!({"manager_id": m, "ip": "10.0.0.1", "port": 9000}),
    )
    .await;
    for w in ["w1", "w2", "w3", "w4"] {
        ok(
            &c,
            "connect-worker",
            json!({"manager_id": m, "worker": worker(w)}),
        )
        .await;
    }
    ok(
        &c,
        "disconnect-worker",
        json!({"manager_id": m, "worker_id": "w4"}),
    )
    .await;
    let before = c.stream_len("CLUSTER").await.unwrap();
    let variant = |f: &dyn Fn(&mut Value)| {
        let mut g = graph(m);
        f(&mut g);
        g
    };
    let bad_graphs = vec![
        (
            "cycle",
            variant(&|g| {
                g["edges"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!(["sink", "cam"]))
            }),
        ),
        (
            "self-loop",
            variant(&|g| {
                g["edges"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!(["cam", "cam"]))
            }),
        ),
        (
            "unknown edge node",
            variant(&|g| {
                g["edges"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!(["cam", "ghost"]))
            }),
        ),
        (
            "unknown worker",
            variant(&|g| g["mapping"]["cam"] = json!("w9")),
        ),
        (
            "disconnected worker",
            variant(&|g| g["mapping"]["cam"] = json!("w4")),
        ),
        (
            "unmapped node",
            variant(&|g| drop(g["mapping"].as_object_mut().unwrap().remove("cam"))),
        ),
        (
            "duplicate node id",
            variant(&|g| {
                g["nodes"]
                    .as_array_mut()
                    .unwrap()
                    .push(node("cam", 99, "Video"))
            }),
        ),
        (
            "duplicate port on a worker",
            variant(&|g| g["nodes"][1]["port"] = json!(1)),
        ),
        (
            "empty graph",
            json!({"manager_id": m, "nodes": [], "edges": [], "mapping": {}}),
        ),
        (
            "bad data_type",
            variant(&|g| g["nodes"][0]["data_type"] = json!("Smell")),
        ),
        (
            "bad capability",
            variant(&|g| g["nodes"][0]["capabilities"] = json!(["fly"])),
        ),
        (
            "port out of range",
            variant(&|g| g["nodes"][0]["port"] = json!(70000)),
        ),
        ("unknown field", variant(&|g| g["extra"] = json!(1))),
        (
            "missing field",
            variant(&|g| drop(g.as_object_mut().unwrap().remove("edges"))),
        ),
    ];
    for (what, g) in bad_graphs {
        let r = cmd(&c, "commit-graph", g).await;
        r.assert_error("invalid_request", 400);
        assert!(!what.is_empty());
    }
    let raw = |s: &'static str| bytes::Bytes::from_static(s.as_bytes());
    for (verb, body) in [
        ("start-manager", raw("not json")),
        (
            "start-manager",
            raw(r#"{"manager_id": "x", "ip": "1", "port": "80"}"#),
        ),
        (
            "start-manager",
            raw(r#"{"manager_id": "", "ip": "1", "port": 80}"#),
        ),
        (
            "start-manager",
            raw(r#"{"manager_id": "x", "ip": "1", "port": -1}"#),
        ),
        (
            "connect-worker",
            raw(r#"{"manager_id": "m", "worker": {"id": "w5"}}"#),
        ),
        (
            "node-report",
            raw(r#"{"manager_id": "m", "node_id": "cam", "running": "yes"}"#),
        ),
        ("execute", raw(r#"[1, 2]"#)),
        ("stop", raw(r#"{"manager_id": "m", "force": true}"#)),
    ] {
        let r = c
            .request_raw(&format!("cluster.cmd.{verb}"), None, body)
            .await
            .unwrap();
        r.assert_error("invalid_request", 400);
    }
    let long = "x".repeat(257);
    cmd(
        &c,
        "start-manager",
        json!({"manager_id": long, "ip": "1", "port": 1}),
    )
    .await
    .assert_error("invalid_request", 400);
    assert_eq!(
        c.stream_len("CLUSTER").await.unwrap(),
        before,
        "nothing appended"
    );
    // The service still answers, and the valid graph commits.
    let r = ok(&c, "commit-graph", graph(m)).await;
    assert_eq!(r["state_name"], "NODES_READY");
}

#[tokio::test]
async fn a_subscriber_applying_1000_deltas_from_concurrent_commands_equals_a_fresh_fetch() {
    let (_env, _s, c) = setup().await;
    let m = "dash/board.1";
    ready_manager(&c, m).await;
    let r = ok(&c, "execute", json!({"manager_id": m})).await;
    let mut sub = c
        .nats
        .subscribe(format!("cluster.tree.{}", schemas::encode_token(m)))
        .await
        .unwrap();
    c.nats.flush().await.unwrap();
    let mut local = tree(&c, m, r["seq"].as_u64().unwrap()).await;

    let nodes = ["cam", "mic", "eeg", "pose", "asr", "sink"];
    let mut tasks = Vec::new();
    for t in 0..8usize {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = (0u64, 0u64);
            for i in 0..125usize {
                let k = t * 125 + i;
                let body = json!({"manager_id": m, "node_id": nodes[k % 6], "running": (k / 6 + t) % 2 == 0});
                let r = ok(&c, "node-report", body).await;
                let v = (r["version"].as_u64().unwrap(), r["seq"].as_u64().unwrap());
                last = last.max(v);
            }
            last
        }));
    }
    let mut last = (0, 0);
    for t in tasks {
        last = last.max(t.await.unwrap());
    }
    let (final_version, final_seq) = last;
    assert_eq!(
        final_version,
        local["version"].as_u64().unwrap() + 1000,
        "1,000 changes, one version each"
    );

    let mut applied = 0;
    while local["version"].as_u64().unwrap() < final_version {
        let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("a delta within 10 s")
            .expect("subscription open");
        let d: Value = serde_json::from_slice(&msg.payload).unwrap();
        let v = d["version"].as_u64().unwrap();
        let have = local["version"].as_u64().unwrap();
        if v <= have {
            continue; // published before our fetch
        }
        assert_eq!(v, have + 1, "gap-free deltas");
        apply(&mut local, &d);
        applied += 1;
    }
    assert_eq!(applied, 1000);
    assert_eq!(
        local,
        tree(&c, m, final_seq).await,
        "deltas applied to the fetched tree equal a fresh fetch"
    );
}

#[tokio::test]
async fn deltas_cover_every_kind_of_change_and_a_missed_delta_shows_as_a_version_gap() {
    let (_env, _s, c) = setup().await;
    let m = "w~/m";
    let mut sub = c
        .nats
        .subscribe(format!("cluster.tree.{}", schemas::encode_token(m)))
        .await
        .unwrap();
    c.nats.flush().await.unwrap();
    // A dashboard that starts before the manager exists builds the tree from deltas alone.
    ready_manager(&c, m).await;
    ok(
        &c,
        "connect-worker",
        json!({"manager_id": m, "worker": worker("w/4")}),
    )
    .await;
    ok(
        &c,
        "disconnect-worker",
        json!({"manager_id": m, "worker_id": "w/4"}),
    )
    .await;
    ok(&c, "execute", json!({"manager_id": m})).await;
    ok(
        &c,
        "node-report",
        json!({"manager_id": m, "node_id": "asr", "running": true}),
    )
    .await;
    ok(
        &c,
        "disconnect-worker",
        json!({"manager_id": m, "worker_id": "w2"}),
    )
    .await;
    let r = ok(
        &c,
        "connect-worker",
        json!({"manager_id": m, "worker": worker("w2")}),
    )
    .await;
    let last = r["version"].as_u64().unwrap();
    let mut local = json!({});
    let mut paths = Vec::new();
    for expected in 1..=last {
        let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("delta")
            .expect("open");
        let d: Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(d["version"].as_u64(), Some(expected));
        paths.push(format!(
            "{} {}",
            d["op"].as_str().unwrap(),
            d["path"].as_str().unwrap()
        ));
        apply(&mut local, &d);
    }
    assert!(
        paths.contains(&"upsert workers/w~14".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"remove workers/w~14".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"upsert workers/w2/nodes/asr/running".to_string()),
        "{paths:?}"
    );
    assert_eq!(local, tree(&c, m, r["seq"].as_u64().unwrap()).await);

    // Miss some deltas (the dashboard was busy): the next version shows the gap, a fetch repairs it.
    let have = local["version"].as_u64().unwrap();
    for _ in 0..3 {
        ok(
            &c,
            "node-report",
            json!({"manager_id": m, "node_id": "cam", "running": true}),
        )
        .await;
    }
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("delta")
            .expect("open"); // dropped
    }
    let r = ok(
        &c,
        "node-report",
        json!({"manager_id": m, "node_id": "mic", "running": true}),
    )
    .await;
    let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("delta")
        .expect("open");
    let d: Value = serde_json::from_slice(&msg.payload).unwrap();
    let v = d["version"].as_u64().unwrap();
    assert!(v > have + 1, "the gap is visible: had {have}, got {v}");
    let fresh = tree(&c, m, r["seq"].as_u64().unwrap()).await;
    assert_eq!(fresh["version"].as_u64(), Some(v));
    assert_eq!(
        find(&find(&fresh["workers"], "w1")["nodes"], "mic")["running"],
        true
    );
}

#[tokio::test]
async fn commands_are_idempotent_by_msg_id_and_queries_wait_for_min_seq() {
    let (_env, _s, c) = setup().await;
    let m = "idem";
    ok(
        &c,
        "start-manager",
        json!({"manager_id": m, "ip": "10.0.0.1", "port": 9000}),
    )
    .await;
    let body = json!({"manager_id": m, "worker": worker("w1")});
    let a = c
        .request_with_id("cluster.cmd.connect-worker", "once-1", &body)
        .await
        .unwrap()
        .ok();
    let b = c
        .request_with_id("cluster.cmd.connect-worker", "once-1", &body)
        .await
        .unwrap()
        .ok();
    assert_eq!(a, b);
    assert_eq!(c.stream_len("CLUSTER").await.unwrap(), 2);
    // Read your own write right after the command.
    let t = tree(&c, m, a["seq"].as_u64().unwrap()).await;
    assert_eq!(t["workers"][0]["id"], "w1");
    let r = c
        .request(
            "cluster.query.tree",
            &json!({"manager_id": m, "min_seq": 1_000_000}),
        )
        .await
        .unwrap();
    r.assert_error("unavailable", 503);
}

#[tokio::test]
async fn deltas_appended_while_the_service_is_down_are_published_after_a_restart() {
    let env = TestEnv::new().await.unwrap();
    let c = env.client().await.unwrap();
    let mut s = env.services(&["cluster"]).await.unwrap();
    let m = "restart";
    let r = ready_manager(&c, m).await;
    let v = r["version"].as_u64().unwrap();
    // Let the live publisher record how far it got, then crash.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.kill();
    // An event appended by some other writer while no publisher runs.
    let js = async_nats::jetstream::new(c.nats.clone());
    let event = json!({"id": uuid::Uuid::now_v7(), "type": "ExecutionStarted", "occurred_at": chrono::Utc::now(), "data": {"manager_id": m}});
    js.publish(
        format!("cluster.events.manager.{}", schemas::encode_token(m)),
        serde_json::to_vec(&event).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mut sub = c
        .nats
        .subscribe(format!("cluster.tree.{}", schemas::encode_token(m)))
        .await
        .unwrap();
    c.nats.flush().await.unwrap();
    let _s = env.services(&["cluster"]).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("the missed delta is published")
        .unwrap();
    let d: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(d["version"].as_u64(), Some(v + 1));
    assert_eq!(d["value"]["state_name"], "EXECUTING");
    // The restarted read model continues from what it had projected.
    let r = ok(
        &c,
        "node-report",
        json!({"manager_id": m, "node_id": "sink", "running": true}),
    )
    .await;
    assert_eq!(r["version"].as_u64(), Some(v + 2));
    let t = tree(&c, m, r["seq"].as_u64().unwrap()).await;
    assert_eq!(
        (t["state_name"].as_str(), t["version"].as_u64()),
        (Some("EXECUTING"), Some(v + 2))
    );
    assert_eq!(
        find(&find(&t["workers"], "w3")["nodes"], "sink")["running"],
        true
    );
}

#[tokio::test]
async fn sim_pipeline_drives_whole_lives_and_recovers_a_half_done_manager() {
    let (_env, _s, c) = setup().await;
    // A manager left half-way by an earlier simulator run.
    ok(
        &c,
        "start-manager",
        json!({"manager_id": "pipeline-sim-1", "ip": "10.0.1.10", "port": 9000}),
    )
    .await;
    ok(
        &c,
        "connect-worker",
        json!({"manager_id": "pipeline-sim-1", "worker": worker("w1")}),
    )
    .await;
    let sim = tools::cluster_sim::Sim::new(c.nats.clone(), "pipeline-sim", Duration::ZERO);
    sim.run(2).await.expect("two lives");
    let len = c.stream_len("CLUSTER").await.unwrap();
    let managers = c
        .request("cluster.query.managers", &json!({"min_seq": len}))
        .await
        .unwrap()
        .ok();
    let states: Vec<(String, String)> = managers["managers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["manager_id"].as_str().unwrap().to_string(),
                m["state_name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let fin = |id: &str| (id.to_string(), "FINALIZING".to_string());
    assert_eq!(
        states,
        vec![
            fin("pipeline-sim-1"),
            fin("pipeline-sim-2"),
            fin("pipeline-sim-3")
        ]
    );
    let t = tree(&c, "pipeline-sim-3", len).await;
    assert_eq!(t["workers"].as_array().unwrap().len(), 3);
    assert_eq!(t["graph"]["nodes"].as_array().unwrap().len(), 6);
    assert_eq!(t["graph"]["edges"].as_array().unwrap().len(), 5);
    assert_eq!(
        t["version"].as_u64(),
        Some(20),
        "a whole life is 20 changes"
    );
}

#[tokio::test]
async fn with_two_processes_each_delta_is_published_once_and_survives_the_publisher_dying() {
    let env = TestEnv::new().await.unwrap();
    let c = env.client().await.unwrap();
    let mut first = env.services(&["cluster"]).await.unwrap();
    let _second = env.services(&["cluster"]).await.unwrap();
    let m = "two";
    let mut sub = c
        .nats
        .subscribe(format!("cluster.tree.{}", schemas::encode_token(m)))
        .await
        .unwrap();
    c.nats.flush().await.unwrap();
    let r = ready_manager(&c, m).await;
    let last = r["version"].as_u64().unwrap();
    let mut versions = Vec::new();
    while versions.last() != Some(&last) {
        let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("delta")
            .unwrap();
        versions.push(
            serde_json::from_slice::<Value>(&msg.payload).unwrap()["version"]
                .as_u64()
                .unwrap(),
        );
    }
    // Anything repeated would arrive right behind the original.
    let extra = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
    assert!(
        extra.is_err(),
        "a delta was published twice: {:?}",
        extra.ok().flatten().map(|m| m.payload)
    );
    assert_eq!(versions, (1..=last).collect::<Vec<_>>());

    // The process holding the publisher lease (the first to start) dies; the other takes over.
    first.kill();
    // A request sent before nats-server has noticed the dead connection can still be routed to it
    // and is lost: a client retries, with the same Nats-Msg-Id so the command happens once.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "execute-after-kill");
    let body = serde_json::to_vec(&json!({"manager_id": m})).unwrap();
    let mut reply = None;
    for _ in 0..5 {
        let request = async_nats::Request::new()
            .headers(headers.clone())
            .payload(body.clone().into())
            .timeout(Some(Duration::from_secs(2)));
        if let Ok(msg) = c.nats.send_request("cluster.cmd.execute", request).await {
            reply = Some(msg);
            break;
        }
    }
    let reply = reply.expect("the surviving process answers");
    let r: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(r["version"].as_u64(), Some(last + 1));
    let msg = tokio::time::timeout(Duration::from_secs(15), sub.next())
        .await
        .expect("the other process publishes")
        .unwrap();
    let d: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(d["version"].as_u64(), Some(last + 1));
}
