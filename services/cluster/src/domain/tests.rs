//! The manager's rules, given / when / then (`runtime::testing`).

use super::*;
use runtime::testing::{given, given_state};
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

/// The manager folded from `events`.
fn folded(events: &[Event]) -> Manager {
    given::<Manager>(events.to_vec()).state().clone()
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
    committed_by(commit_cmd())
}

/// The event a valid `CommitGraph` command appends.
fn committed_by(cmd: Command) -> Event {
    let Command::CommitGraph {
        nodes,
        edges,
        mapping,
        ..
    } = cmd
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

/// The refusal of a command out of order: `manager "m.1" is <state>: <what> needs <needs>`.
fn conflict(state: ManagerState, what: &str, needs: &str) -> DomainError {
    DomainError::Conflict(format!("manager \"m.1\" is {state}: {what} needs {needs}"))
}

fn invalid(m: &str) -> DomainError {
    DomainError::Invalid(m.into())
}

fn start(manager_id: &str, ip: &str, port: u16) -> Command {
    Command::StartManager {
        manager_id: manager_id.into(),
        ip: ip.into(),
        port,
    }
}

fn connect(w: WorkerInfo) -> Command {
    Command::ConnectWorker {
        manager_id: M.into(),
        worker: w,
    }
}

fn disconnect(id: &str) -> Command {
    Command::DisconnectWorker {
        manager_id: M.into(),
        worker_id: id.into(),
    }
}

fn node_report(node: &str, running: bool) -> Command {
    Command::NodeReport {
        manager_id: M.into(),
        node_id: node.into(),
        running,
    }
}

fn finalizing() -> Vec<Event> {
    let mut events = executing();
    events.push(Event::ExecutionStopped {
        manager_id: M.into(),
        stopped_nodes: vec![],
    });
    events.push(Event::FinalizationStarted {
        manager_id: M.into(),
    });
    events
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
    let m = given::<Manager>([])
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
    given::<Manager>([started(), connected("w1")])
        .when(|m| m.decide(&start(M, "x", 1)))
        .then_err(conflict(
            ManagerState::WorkersConnected,
            "start-manager",
            "a manager id that is not in use",
        ));
}

#[test]
fn start_manager_after_finalizing_is_a_conflict() {
    given::<Manager>(finalizing())
        .when(|m| m.decide(&start(M, "10.9.9.9", 1)))
        .then_err(conflict(
            ManagerState::Finalizing,
            "start-manager",
            "a manager id that is not in use",
        ));
}

#[test]
fn bad_ids_are_invalid() {
    given::<Manager>([])
        .when(|m| m.decide(&start("", "x", 1)))
        .then_err(invalid("`manager_id` must not be empty"));
    given::<Manager>([])
        .when(|m| m.decide(&start(&"x".repeat(257), "x", 1)))
        .then_err(invalid(
            "`manager_id` is 257 bytes; ids are at most 256 bytes",
        ));
    given::<Manager>([])
        .when(|m| m.decide(&start(M, "", 1)))
        .then_err(invalid("`ip` must not be empty"));
    let mut w = worker("");
    given::<Manager>([started()])
        .when(|m| m.decide(&connect(w.clone())))
        .then_err(invalid("`worker.id` must not be empty"));
    w.id = "w".into();
    w.name = String::new();
    given::<Manager>([started()])
        .when(|m| m.decide(&connect(w)))
        .then_err(invalid("`worker.name` must not be empty"));
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
        given::<Manager>([])
            .when(|m| m.decide(&c))
            .then_err(DomainError::NotFound(
                "manager \"m.1\" does not exist; start it first".into(),
            ));
    }
}

#[test]
fn connecting_the_first_worker_moves_to_workers_connected() {
    let m = given::<Manager>([started()])
        .when(|m| m.decide(&connect(worker("w1"))))
        .then(connected("w1"));
    assert_eq!(m.state, Some(ManagerState::WorkersConnected));
    assert_eq!(m.workers.len(), 1);
}

#[test]
fn connecting_a_connected_worker_is_a_conflict() {
    given::<Manager>([started(), connected("w1")])
        .when(|m| m.decide(&connect(worker("w1"))))
        .then_err(DomainError::Conflict(
            "worker \"w1\" is already connected to manager \"m.1\" (state WORKERS_CONNECTED (1)); disconnect it first"
                .into(),
        ));
}

#[test]
fn connecting_while_finalizing_is_a_conflict() {
    given::<Manager>(finalizing())
        .when(|m| m.decide(&connect(worker("w9"))))
        .then_err(conflict(
            ManagerState::Finalizing,
            "connect-worker",
            "a manager that is not FINALIZING",
        ));
}

#[test]
fn disconnecting_a_worker_without_nodes_removes_it() {
    let m = given::<Manager>([started(), connected("w1"), connected("w2")])
        .when(|m| m.decide(&disconnect("w2")))
        .then(Event::WorkerDisconnected {
            manager_id: M.into(),
            worker_id: "w2".into(),
            stopped_nodes: vec![],
        });
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
    given::<Manager>([started(), connected("w1")])
        .when(|m| m.decide(&disconnect("w9")))
        .then_err(DomainError::NotFound(
            "worker \"w9\" is not connected to manager \"m.1\"".into(),
        ));
}

#[test]
fn a_worker_leaving_while_executing_marks_its_nodes_not_running_and_is_recorded() {
    let mut events = executing();
    events.push(report("a", true));
    events.push(report("c/x", true));
    let m = given::<Manager>(events)
        .when(|m| m.decide(&disconnect("w1")))
        .then(Event::WorkerDisconnected {
            manager_id: M.into(),
            worker_id: "w1".into(),
            stopped_nodes: vec!["a".into()],
        });
    assert_eq!(m.state, Some(ManagerState::Executing));
    assert_eq!(m.running.get("a"), Some(&false));
    assert_eq!(m.running.get("c/x"), Some(&true));
    let w1 = m.workers.iter().find(|w| w.info.id == "w1").unwrap();
    assert!(
        !w1.connected,
        "a worker hosting nodes stays in the tree, disconnected"
    );
    // Its node cannot run again until it reconnects.
    let m = given_state(m)
        .when(|m| m.decide(&node_report("a", true)))
        .then_err(DomainError::Conflict(
            "node \"a\" cannot run: its worker \"w1\" is disconnected (manager \"m.1\" is EXECUTING (3))"
                .into(),
        ));
    // Reconnecting brings it back.
    let m = given_state(m)
        .when(|m| m.decide(&connect(worker("w1"))))
        .then(connected("w1"));
    assert!(m.workers.iter().all(|w| w.connected));
    given_state(m)
        .when(|m| m.decide(&node_report("a", true)))
        .then(report("a", true));
}

#[test]
fn commit_graph_moves_to_nodes_ready() {
    let m = given::<Manager>([started(), connected("w1"), connected("w/2")])
        .when(|m| m.decide(&commit_cmd()))
        .then(committed());
    assert_eq!(m.state, Some(ManagerState::NodesReady));
    assert_eq!(m.running.len(), 3);
}

#[test]
fn commit_graph_out_of_order_is_a_conflict() {
    let needs = "WORKERS_CONNECTED, NODES_READY or STOPPED";
    given::<Manager>([started()])
        .when(|m| m.decide(&commit_cmd()))
        .then_err(conflict(ManagerState::Started, "commit-graph", needs));
    given::<Manager>(executing())
        .when(|m| m.decide(&commit_cmd()))
        .then_err(conflict(ManagerState::Executing, "commit-graph", needs));
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
    // w1 and w/2 connected; w3 connected, then gone.
    let m = folded(&[
        started(),
        connected("w1"),
        connected("w/2"),
        connected("w3"),
        Event::WorkerDisconnected {
            manager_id: M.into(),
            worker_id: "w3".into(),
            stopped_nodes: vec![],
        },
    ]);
    let refused = |cmd: Command, expected: &str| {
        given_state(m.clone())
            .when(|m| m.decide(&cmd))
            .then_err(invalid(expected));
    };
    refused(
        with_graph(|_, e, _| e.push(("c/x".into(), "a".into()))),
        "the edges form a cycle (through nodes [\"a\", \"b\", \"c/x\"]); the graph must be a DAG",
    );
    refused(
        with_graph(|_, e, _| e.push(("a".into(), "a".into()))),
        "edge [\"a\", \"a\"] is a self-loop; the graph must be a DAG",
    );
    refused(
        with_graph(|_, e, _| e.push(("a".into(), "b".into()))),
        "edge [\"a\", \"b\"] appears more than once",
    );
    refused(
        with_graph(|_, e, _| e.push(("a".into(), "zz".into()))),
        "edge [\"a\", \"zz\"] names unknown node \"zz\"",
    );
    refused(
        with_graph(|_, _, map| drop(map.insert("a".into(), "w9".into()))),
        "node \"a\" is mapped to unknown worker \"w9\": it is not connected to this manager",
    );
    refused(
        with_graph(|_, _, map| drop(map.insert("a".into(), "w3".into()))),
        "node \"a\" is mapped to unknown worker \"w3\": it is not connected to this manager",
    );
    let mut events = ready();
    events.push(Event::WorkerDisconnected {
        manager_id: M.into(),
        worker_id: "w/2".into(),
        stopped_nodes: vec![],
    });
    given::<Manager>(events)
        .when(|m| m.decide(&commit_cmd()))
        .then_err(invalid(
            "node \"c/x\" is mapped to worker \"w/2\", which is disconnected",
        ));
    refused(
        with_graph(|_, _, map| drop(map.remove("b"))),
        "node \"b\" is not mapped to a worker",
    );
    refused(
        with_graph(|_, _, map| drop(map.insert("q".into(), "w1".into()))),
        "mapping names node \"q\", which is not in `nodes`",
    );
    refused(
        with_graph(|n, _, _| n.push(node("a", 9))),
        "node id \"a\" appears more than once",
    );
    refused(
        with_graph(|n, _, _| n[1].port = 1),
        "nodes \"a\" and \"b\" both use port 1 on worker \"w1\"",
    );
    refused(
        with_graph(|n, e, map| {
            n.clear();
            e.clear();
            map.clear();
        }),
        "a graph needs at least one node",
    );
    // Same port on different workers is fine.
    let same_port = with_graph(|n, _, _| n[2].port = 2);
    given_state(m)
        .when(|m| m.decide(&same_port))
        .then(committed_by(same_port.clone()));
}

#[test]
fn node_reports_set_running() {
    let m = given::<Manager>(ready())
        .when(|m| m.decide(&node_report("b", true)))
        .then(report("b", true));
    assert_eq!(m.running.get("b"), Some(&true));
}

#[test]
fn node_reports_before_a_graph_or_for_unknown_nodes_are_refused() {
    given::<Manager>([started(), connected("w1")])
        .when(|m| m.decide(&node_report("a", true)))
        .then_err(conflict(
            ManagerState::WorkersConnected,
            "node-report",
            "a committed graph (NODES_READY or later)",
        ));
    given::<Manager>(ready())
        .when(|m| m.decide(&node_report("zz", true)))
        .then_err(DomainError::NotFound(
            "node \"zz\" is not in manager \"m.1\"'s graph".into(),
        ));
}

#[test]
fn execute_stop_finalize_walk_the_states() {
    let stopped = || Event::ExecutionStopped {
        manager_id: M.into(),
        stopped_nodes: vec![],
    };
    let started_exec = || Event::ExecutionStarted {
        manager_id: M.into(),
    };
    let mut m = folded(&ready());
    for (c, event, state) in [
        ("execute", started_exec(), ManagerState::Executing),
        ("stop", stopped(), ManagerState::Stopped),
        ("execute", started_exec(), ManagerState::Executing),
        ("stop", stopped(), ManagerState::Stopped),
        (
            "finalize",
            Event::FinalizationStarted {
                manager_id: M.into(),
            },
            ManagerState::Finalizing,
        ),
    ] {
        m = given_state(m).when(|m| m.decide(&cmd(c))).then(event);
        assert_eq!(m.state, Some(state), "after {c}");
    }
}

#[test]
fn stop_marks_every_node_not_running_and_records_them() {
    let mut events = executing();
    events.push(report("a", true));
    let m = given::<Manager>(events)
        .when(|m| m.decide(&cmd("stop")))
        .then(Event::ExecutionStopped {
            manager_id: M.into(),
            stopped_nodes: vec!["a".into()],
        });
    assert!(m.running.values().all(|r| !r));
}

#[test]
fn every_out_of_order_transition_is_a_conflict_naming_the_state() {
    let mut stopped = executing();
    stopped.push(Event::ExecutionStopped {
        manager_id: M.into(),
        stopped_nodes: vec![],
    });
    use ManagerState::*;
    let cases: Vec<(Vec<Event>, ManagerState, Vec<&str>)> = vec![
        (
            vec![started()],
            Started,
            vec!["execute", "stop", "finalize"],
        ),
        (
            vec![started(), connected("w1")],
            WorkersConnected,
            vec!["execute", "stop", "finalize"],
        ),
        (ready(), NodesReady, vec!["stop", "finalize"]),
        (executing(), Executing, vec!["execute", "finalize"]),
        (stopped, Stopped, vec!["stop"]),
        (
            finalizing(),
            Finalizing,
            vec!["execute", "stop", "finalize"],
        ),
    ];
    for (events, state, cmds) in cases {
        for c in cmds {
            let needs = match c {
                "execute" => "NODES_READY or STOPPED",
                "stop" => "EXECUTING",
                _ => "STOPPED",
            };
            given::<Manager>(events.clone())
                .when(|m| m.decide(&cmd(c)))
                .then_err(conflict(state, c, needs));
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
    given::<Manager>(events)
        .when(|m| m.decide(&cmd("execute")))
        .then_err(DomainError::Conflict(
            "manager \"m.1\" is NODES_READY (2) but cannot execute: workers [\"w/2\"] host nodes and are disconnected; reconnect them or commit a new graph"
                .into(),
        ));
}

#[test]
fn tree_has_the_original_shapes() {
    let mut events = ready();
    events.push(report("c/x", true));
    let t = folded(&events).tree();
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
    let small = delta(&folded(&events[..8]), &events[8]);
    assert_eq!(small.path, "workers/w~12/nodes/c~1x/running");
    assert_eq!(small.value, json!(true));
    let leave = delta(&folded(&events[..4]), &events[4]);
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
