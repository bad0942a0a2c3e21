//! The manager's rules.

use super::*;
use runtime::testing;
use serde_json::json;

const M: &str = "m.1";

fn worker(id: &str) -> WorkerInfo {
    WorkerInfo {
        id: id.into(),
        name: format!("worker {id}"),
        ip: "10.0.0.2".into(),
        port: 9000,
    }
}

fn node(id: &str, port: u16) -> NodeSpec {
    NodeSpec {
        id: id.into(),
        name: format!("node {id}"),
        port,
        data_type: DataType::Video,
        dashboard_component: None,
        capabilities: vec![Capability::Start, Capability::Stop],
    }
}

fn given(events: &[Event]) -> Manager {
    let mut m = Manager::default();
    for e in events {
        m.evolve(e);
    }
    m
}

fn started() -> Event {
    Event::ManagerStarted {
        manager_id: M.into(),
        ip: "10.0.0.1".into(),
        port: 8000,
    }
}

fn connected(id: &str) -> Event {
    Event::WorkerConnected {
        manager_id: M.into(),
        worker: worker(id),
    }
}

fn commit_cmd() -> Command {
    Command::CommitGraph {
        manager_id: M.into(),
        nodes: vec![node("a", 1), node("b", 2), node("c/x", 1)],
        edges: vec![("a".into(), "b".into()), ("b".into(), "c/x".into())],
        mapping: [("a", "w1"), ("b", "w1"), ("c/x", "w/2")]
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect(),
    }
}

fn committed() -> Event {
    let Command::CommitGraph {
        nodes,
        edges,
        mapping,
        ..
    } = commit_cmd()
    else {
        unreachable!()
    };
    Event::GraphCommitted {
        manager_id: M.into(),
        nodes,
        edges,
        mapping,
    }
}

fn ready() -> Vec<Event> {
    vec![started(), connected("w1"), connected("w/2"), committed()]
}

fn executing() -> Vec<Event> {
    let mut e = ready();
    e.push(Event::ExecutionStarted {
        manager_id: M.into(),
    });
    e
}

fn report(node: &str, running: bool) -> Event {
    Event::NodeReported {
        manager_id: M.into(),
        node_id: node.into(),
        running,
    }
}

fn cmd(c: &str) -> Command {
    match c {
        "execute" => Command::Execute {
            manager_id: M.into(),
        },
        "stop" => Command::Stop {
            manager_id: M.into(),
        },
        _ => Command::Finalize {
            manager_id: M.into(),
        },
    }
}

fn is_conflict_naming(r: Result<Event, DomainError>, state: &str) {
    match r {
        Err(DomainError::Conflict(m)) => assert!(m.contains(state), "{m} should name {state}"),
        other => panic!("expected a conflict naming {state}, got {other:?}"),
    }
}

fn is_invalid(r: Result<Event, DomainError>, needle: &str) {
    match r {
        Err(DomainError::Invalid(m)) => assert!(m.contains(needle), "{m} should say {needle}"),
        other => panic!("expected invalid ({needle}), got {other:?}"),
    }
}

#[test]
fn states_have_their_numbers_and_names() {
    let all = [
        ManagerState::Started,
        ManagerState::WorkersConnected,
        ManagerState::NodesReady,
        ManagerState::Executing,
        ManagerState::Stopped,
        ManagerState::Finalizing,
    ];
    let names: Vec<(u8, &str)> = all.iter().map(|s| (s.code(), s.name())).collect();
    assert_eq!(
        names,
        [
            (0, "STARTED"),
            (1, "WORKERS_CONNECTED"),
            (2, "NODES_READY"),
            (3, "EXECUTING"),
            (4, "STOPPED"),
            (5, "FINALIZING")
        ]
    );
}

#[test]
fn start_manager_starts_a_new_manager() {
    let m = testing::given::<Manager>([])
        .when(|m| {
            m.decide(&Command::StartManager {
                manager_id: M.into(),
                ip: "10.0.0.1".into(),
                port: 8000,
            })
        })
        .then(started());
    assert_eq!((m.state, m.version), (Some(ManagerState::Started), 1));
}

#[test]
fn start_manager_twice_is_a_conflict_naming_the_state() {
    let m = given(&[started(), connected("w1")]);
    let r = m.decide(&Command::StartManager {
        manager_id: M.into(),
        ip: "x".into(),
        port: 1,
    });
    is_conflict_naming(r, "WORKERS_CONNECTED");
}

#[test]
fn start_manager_after_finalizing_is_a_conflict() {
    let mut events = executing();
    events.push(Event::ExecutionStopped {
        manager_id: M.into(),
        stopped_nodes: vec![],
    });
    events.push(Event::FinalizationStarted {
        manager_id: M.into(),
    });
    let r = given(&events).decide(&Command::StartManager {
        manager_id: M.into(),
        ip: "10.9.9.9".into(),
        port: 1,
    });
    is_conflict_naming(r, "FINALIZING");
}

#[test]
fn bad_ids_are_invalid() {
    let m = given(&[]);
    is_invalid(
        m.decide(&Command::StartManager {
            manager_id: String::new(),
            ip: "x".into(),
            port: 1,
        }),
        "manager_id",
    );
    is_invalid(
        m.decide(&Command::StartManager {
            manager_id: "x".repeat(257),
            ip: "x".into(),
            port: 1,
        }),
        "manager_id",
    );
    is_invalid(
        m.decide(&Command::StartManager {
            manager_id: M.into(),
            ip: String::new(),
            port: 1,
        }),
        "ip",
    );
    let m = given(&[started()]);
    let mut w = worker("");
    is_invalid(
        m.decide(&Command::ConnectWorker {
            manager_id: M.into(),
            worker: w.clone(),
        }),
        "worker.id",
    );
    w.id = "w".into();
    w.name = String::new();
    is_invalid(
        m.decide(&Command::ConnectWorker {
            manager_id: M.into(),
            worker: w,
        }),
        "worker.name",
    );
}

#[test]
fn commands_on_an_unknown_manager_are_not_found() {
    for c in [
        Command::ConnectWorker {
            manager_id: M.into(),
            worker: worker("w1"),
        },
        Command::DisconnectWorker {
            manager_id: M.into(),
            worker_id: "w1".into(),
        },
        commit_cmd(),
        Command::NodeReport {
            manager_id: M.into(),
            node_id: "a".into(),
            running: true,
        },
        cmd("execute"),
        cmd("stop"),
        cmd("finalize"),
    ] {
        testing::given::<Manager>([])
            .when(|m| m.decide(&c))
            .then_err(DomainError::NotFound(
                "manager \"m.1\" does not exist; start it first".into(),
            ));
    }
}

#[test]
fn connecting_the_first_worker_moves_to_workers_connected() {
    let m = given(&[started()]);
    let e = m
        .decide(&Command::ConnectWorker {
            manager_id: M.into(),
            worker: worker("w1"),
        })
        .unwrap();
    assert_eq!(e, connected("w1"));
    let m = given(&[started(), e]);
    assert_eq!(m.state, Some(ManagerState::WorkersConnected));
    assert_eq!(m.workers.len(), 1);
}

#[test]
fn connecting_a_connected_worker_is_a_conflict() {
    let m = given(&[started(), connected("w1")]);
    let r = m.decide(&Command::ConnectWorker {
        manager_id: M.into(),
        worker: worker("w1"),
    });
    is_conflict_naming(r, "WORKERS_CONNECTED");
}

#[test]
fn connecting_while_finalizing_is_a_conflict() {
    let mut events = executing();
    events.push(Event::ExecutionStopped {
        manager_id: M.into(),
        stopped_nodes: vec![],
    });
    events.push(Event::FinalizationStarted {
        manager_id: M.into(),
    });
    let r = given(&events).decide(&Command::ConnectWorker {
        manager_id: M.into(),
        worker: worker("w9"),
    });
    is_conflict_naming(r, "FINALIZING");
}

#[test]
fn disconnecting_a_worker_without_nodes_removes_it() {
    let m = given(&[started(), connected("w1"), connected("w2")]);
    let e = m
        .decide(&Command::DisconnectWorker {
            manager_id: M.into(),
            worker_id: "w2".into(),
        })
        .unwrap();
    assert_eq!(
        e,
        Event::WorkerDisconnected {
            manager_id: M.into(),
            worker_id: "w2".into(),
            stopped_nodes: vec![]
        }
    );
    let m = given(&[started(), connected("w1"), connected("w2"), e]);
    assert_eq!(
        m.workers
            .iter()
            .map(|w| w.info.id.as_str())
            .collect::<Vec<_>>(),
        ["w1"]
    );
}

#[test]
fn disconnecting_an_unknown_worker_is_not_found() {
    let m = given(&[started(), connected("w1")]);
    let r = m.decide(&Command::DisconnectWorker {
        manager_id: M.into(),
        worker_id: "w9".into(),
    });
    assert!(matches!(r, Err(DomainError::NotFound(_))));
}

#[test]
fn a_worker_leaving_while_executing_marks_its_nodes_not_running_and_is_recorded() {
    let mut events = executing();
    events.push(report("a", true));
    events.push(report("c/x", true));
    let m = given(&events);
    let e = m
        .decide(&Command::DisconnectWorker {
            manager_id: M.into(),
            worker_id: "w1".into(),
        })
        .unwrap();
    assert_eq!(
        e,
        Event::WorkerDisconnected {
            manager_id: M.into(),
            worker_id: "w1".into(),
            stopped_nodes: vec!["a".into()]
        }
    );
    events.push(e);
    let m = given(&events);
    assert_eq!(m.state, Some(ManagerState::Executing));
    assert_eq!(m.running.get("a"), Some(&false));
    assert_eq!(m.running.get("c/x"), Some(&true));
    let w1 = m.workers.iter().find(|w| w.info.id == "w1").unwrap();
    assert!(
        !w1.connected,
        "a worker hosting nodes stays in the tree, disconnected"
    );
    // Its node cannot run again until it reconnects.
    let r = m.decide(&Command::NodeReport {
        manager_id: M.into(),
        node_id: "a".into(),
        running: true,
    });
    is_conflict_naming(r, "EXECUTING");
    // Reconnecting brings it back.
    events.push(connected("w1"));
    let m = given(&events);
    assert!(m.workers.iter().all(|w| w.connected));
    assert!(m
        .decide(&Command::NodeReport {
            manager_id: M.into(),
            node_id: "a".into(),
            running: true
        })
        .is_ok());
}

#[test]
fn commit_graph_moves_to_nodes_ready() {
    let m = given(&[started(), connected("w1"), connected("w/2")]);
    let e = m.decide(&commit_cmd()).unwrap();
    assert_eq!(e, committed());
    let m = given(&ready());
    assert_eq!(m.state, Some(ManagerState::NodesReady));
    assert_eq!(m.running.len(), 3);
}

#[test]
fn commit_graph_out_of_order_is_a_conflict() {
    is_conflict_naming(given(&[started()]).decide(&commit_cmd()), "STARTED");
    is_conflict_naming(given(&executing()).decide(&commit_cmd()), "EXECUTING");
}

fn with_graph(
    f: impl FnOnce(&mut Vec<NodeSpec>, &mut Vec<(String, String)>, &mut BTreeMap<String, String>),
) -> Command {
    let Command::CommitGraph {
        manager_id,
        mut nodes,
        mut edges,
        mut mapping,
    } = commit_cmd()
    else {
        unreachable!()
    };
    f(&mut nodes, &mut edges, &mut mapping);
    Command::CommitGraph {
        manager_id,
        nodes,
        edges,
        mapping,
    }
}

#[test]
fn invalid_graphs_are_refused() {
    let m = given(&[
        started(),
        connected("w1"),
        connected("w/2"),
        connected("w3"),
    ]);
    let m = {
        let mut m = m;
        m.evolve(&Event::WorkerDisconnected {
            manager_id: M.into(),
            worker_id: "w3".into(),
            stopped_nodes: vec![],
        });
        m
    };
    is_invalid(
        m.decide(&with_graph(|_, e, _| e.push(("c/x".into(), "a".into())))),
        "cycle",
    );
    is_invalid(
        m.decide(&with_graph(|_, e, _| e.push(("a".into(), "a".into())))),
        "self-loop",
    );
    is_invalid(
        m.decide(&with_graph(|_, e, _| e.push(("a".into(), "b".into())))),
        "more than once",
    );
    is_invalid(
        m.decide(&with_graph(|_, e, _| e.push(("a".into(), "zz".into())))),
        "unknown node",
    );
    is_invalid(
        m.decide(&with_graph(|_, _, map| {
            drop(map.insert("a".into(), "w9".into()))
        })),
        "unknown worker",
    );
    is_invalid(
        m.decide(&with_graph(|_, _, map| {
            drop(map.insert("a".into(), "w3".into()))
        })),
        "not connected",
    );
    let mut events = ready();
    events.push(Event::WorkerDisconnected {
        manager_id: M.into(),
        worker_id: "w/2".into(),
        stopped_nodes: vec![],
    });
    is_invalid(given(&events).decide(&commit_cmd()), "disconnected");
    is_invalid(
        m.decide(&with_graph(|_, _, map| drop(map.remove("b")))),
        "not mapped",
    );
    is_invalid(
        m.decide(&with_graph(|_, _, map| {
            drop(map.insert("q".into(), "w1".into()))
        })),
        "not in `nodes`",
    );
    is_invalid(
        m.decide(&with_graph(|n, _, _| n.push(node("a", 9)))),
        "more than once",
    );
    is_invalid(m.decide(&with_graph(|n, _, _| n[1].port = 1)), "port 1");
    is_invalid(
        m.decide(&with_graph(|n, e, map| {
            n.clear();
            e.clear();
            map.clear();
        })),
        "at least one node",
    );
    // Same port on different workers is fine.
    assert!(m.decide(&with_graph(|n, _, _| n[2].port = 2)).is_ok());
}

#[test]
fn node_reports_set_running() {
    let m = given(&ready());
    let e = m
        .decide(&Command::NodeReport {
            manager_id: M.into(),
            node_id: "b".into(),
            running: true,
        })
        .unwrap();
    assert_eq!(e, report("b", true));
    let mut events = ready();
    events.push(e);
    assert_eq!(given(&events).running.get("b"), Some(&true));
}

#[test]
fn node_reports_before_a_graph_or_for_unknown_nodes_are_refused() {
    let r = given(&[started(), connected("w1")]).decide(&Command::NodeReport {
        manager_id: M.into(),
        node_id: "a".into(),
        running: true,
    });
    is_conflict_naming(r, "WORKERS_CONNECTED");
    let r = given(&ready()).decide(&Command::NodeReport {
        manager_id: M.into(),
        node_id: "zz".into(),
        running: true,
    });
    assert!(matches!(r, Err(DomainError::NotFound(_))));
}

#[test]
fn execute_stop_finalize_walk_the_states() {
    let mut events = ready();
    for (c, state) in [
        ("execute", ManagerState::Executing),
        ("stop", ManagerState::Stopped),
        ("execute", ManagerState::Executing),
        ("stop", ManagerState::Stopped),
        ("finalize", ManagerState::Finalizing),
    ] {
        let e = given(&events).decide(&cmd(c)).unwrap();
        events.push(e);
        assert_eq!(given(&events).state, Some(state), "after {c}");
    }
}

#[test]
fn stop_marks_every_node_not_running_and_records_them() {
    let mut events = executing();
    events.push(report("a", true));
    let e = given(&events).decide(&cmd("stop")).unwrap();
    assert_eq!(
        e,
        Event::ExecutionStopped {
            manager_id: M.into(),
            stopped_nodes: vec!["a".into()]
        }
    );
    events.push(e);
    assert!(given(&events).running.values().all(|r| !r));
}

#[test]
fn every_out_of_order_transition_is_a_conflict_naming_the_state() {
    let mut finalizing = executing();
    finalizing.push(Event::ExecutionStopped {
        manager_id: M.into(),
        stopped_nodes: vec![],
    });
    let stopped = finalizing.clone();
    finalizing.push(Event::FinalizationStarted {
        manager_id: M.into(),
    });
    let cases: Vec<(Vec<Event>, &str, Vec<&str>)> = vec![
        (
            vec![started()],
            "STARTED",
            vec!["execute", "stop", "finalize"],
        ),
        (
            vec![started(), connected("w1")],
            "WORKERS_CONNECTED",
            vec!["execute", "stop", "finalize"],
        ),
        (ready(), "NODES_READY", vec!["stop", "finalize"]),
        (executing(), "EXECUTING", vec!["execute", "finalize"]),
        (stopped, "STOPPED", vec!["stop"]),
        (
            finalizing,
            "FINALIZING",
            vec!["execute", "stop", "finalize"],
        ),
    ];
    for (events, state, cmds) in cases {
        for c in cmds {
            is_conflict_naming(given(&events).decide(&cmd(c)), state);
        }
    }
}

#[test]
fn execute_needs_every_hosting_worker_connected() {
    let mut events = ready();
    events.push(Event::WorkerDisconnected {
        manager_id: M.into(),
        worker_id: "w/2".into(),
        stopped_nodes: vec![],
    });
    is_conflict_naming(given(&events).decide(&cmd("execute")), "w/2");
}

#[test]
fn tree_has_the_original_shapes() {
    let mut events = ready();
    events.push(report("c/x", true));
    let t = given(&events).tree();
    assert_eq!(t["state"], 2);
    assert_eq!(t["state_name"], "NODES_READY");
    assert_eq!(t["version"], 5);
    assert_eq!(t["workers"][1]["id"], "w/2");
    assert_eq!(
        t["workers"][1]["nodes"][0],
        json!({"name": "node c/x", "id": "c/x", "port": 1, "running": true, "data_type": "Video", "dashboard_component": null, "capabilities": ["start", "stop"]})
    );
    assert_eq!(t["graph"]["edges"][0], json!(["a", "b"]));
    assert_eq!(t["worker_graph_map"]["a"], "w1");
    let parsed: schemas::cluster::Tree = serde_json::from_value(t).unwrap();
    assert_eq!(parsed.workers[0].nodes.len(), 2);
}

#[test]
fn events_are_the_documented_wire_events() {
    let mut events = executing();
    events.push(report("a", true));
    events.push(Event::WorkerDisconnected {
        manager_id: M.into(),
        worker_id: "w1".into(),
        stopped_nodes: vec!["a".into()],
    });
    for e in events {
        let v = serde_json::to_value(&e).unwrap();
        let wire: schemas::cluster::ClusterEvent = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(wire).unwrap(), v);
    }
}

/// Every delta applied to the tree before its event gives the tree after it, and is small where
/// the change is.
#[test]
fn each_delta_turns_the_previous_tree_into_the_next() {
    let events = vec![
        started(),
        connected("w1"),
        connected("w/2"),
        connected("w~3"),
        Event::WorkerDisconnected {
            manager_id: M.into(),
            worker_id: "w~3".into(),
            stopped_nodes: vec![],
        },
        committed(),
        report("a", true),
        Event::ExecutionStarted {
            manager_id: M.into(),
        },
        report("c/x", true),
        report("b", true),
        report("b", false),
        Event::WorkerDisconnected {
            manager_id: M.into(),
            worker_id: "w/2".into(),
            stopped_nodes: vec!["c/x".into()],
        },
        connected("w/2"),
        report("c/x", true),
        Event::ExecutionStopped {
            manager_id: M.into(),
            stopped_nodes: vec![],
        },
        Event::FinalizationStarted {
            manager_id: M.into(),
        },
        started(),
    ];
    let mut state = Manager::default();
    let mut tree = json!({});
    for e in &events {
        let d = delta(&state, e);
        assert_eq!(d.version, state.version + 1);
        state.evolve(e);
        apply_delta(&mut tree, &d).unwrap();
        assert_eq!(tree, state.tree(), "after {e:?} with {d:?}");
        // Round trip through the wire type.
        let wire: schemas::cluster::TreeDelta =
            serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(wire.version, d.version);
    }
    let small = delta(&given(&events[..8]), &events[8]);
    assert_eq!(small.path, "workers/w~12/nodes/c~1x/running");
    assert_eq!(small.value, json!(true));
    let leave = delta(&given(&events[..4]), &events[4]);
    assert_eq!(
        (leave.op, leave.path.as_str()),
        (Op::Remove, "workers/w~03")
    );
}

#[test]
fn keys_escape_and_unescape() {
    for k in ["a", "a/b", "~", "~1", "x~0/y"] {
        assert_eq!(unescape_key(&escape_key(k)), k);
        assert!(!escape_key(k).contains('/'));
    }
}
