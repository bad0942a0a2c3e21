//! The manager aggregate, pure: commands, events, state, `decide`, `evolve`, the network tree and the
//! one delta each event makes to it. No I/O here; the handlers, the projection and the live publisher
//! all fold events through [`Manager::evolve`], so the tree they serve and the deltas they publish
//! agree by construction.
//!
//! Version: every event is one change, so a manager's `version` is the number of its events, and
//! [`delta`] turns one event into exactly one [`Delta`] whose path is the smallest part of the tree
//! that changed (the whole tree, path `""`, when the state changes, since `state` and `state_name`
//! both sit at the root).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Most nodes one graph may hold (keeps the tree, and a whole-tree delta, well under 1 MiB).
pub const MAX_NODES: usize = 2_000;
/// Longest name, ip or dashboard component, in bytes.
pub const MAX_TEXT: usize = 256;

/// Manager states 0..5 of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagerState {
    Started,
    WorkersConnected,
    NodesReady,
    Executing,
    Stopped,
    Finalizing,
}

impl ManagerState {
    /// The number on the wire (0..=5).
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Started => 0,
            Self::WorkersConnected => 1,
            Self::NodesReady => 2,
            Self::Executing => 3,
            Self::Stopped => 4,
            Self::Finalizing => 5,
        }
    }

    /// The name on the wire.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Started => "STARTED",
            Self::WorkersConnected => "WORKERS_CONNECTED",
            Self::NodesReady => "NODES_READY",
            Self::Executing => "EXECUTING",
            Self::Stopped => "STOPPED",
            Self::Finalizing => "FINALIZING",
        }
    }
}

impl std::fmt::Display for ManagerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// Kind of data a node handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataType {
    Video,
    Series,
    Audio,
}

/// What a node can be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Callibrate,
    Start,
    Stop,
}

/// A worker's identity and address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    pub name: String,
    pub ip: String,
    pub port: u16,
}

/// A node of a graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub id: String,
    pub name: String,
    pub port: u16,
    pub data_type: DataType,
    pub dashboard_component: Option<String>,
    pub capabilities: Vec<Capability>,
}

/// What a client asks of a manager.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    StartManager {
        manager_id: String,
        ip: String,
        port: u16,
    },
    ConnectWorker {
        manager_id: String,
        worker: WorkerInfo,
    },
    DisconnectWorker {
        manager_id: String,
        worker_id: String,
    },
    CommitGraph {
        manager_id: String,
        nodes: Vec<NodeSpec>,
        edges: Vec<(String, String)>,
        mapping: BTreeMap<String, String>,
    },
    NodeReport {
        manager_id: String,
        node_id: String,
        running: bool,
    },
    Execute {
        manager_id: String,
    },
    Stop {
        manager_id: String,
    },
    Finalize {
        manager_id: String,
    },
}

impl Command {
    /// The manager the command is for.
    #[must_use]
    pub fn manager_id(&self) -> &str {
        match self {
            Self::StartManager { manager_id, .. }
            | Self::ConnectWorker { manager_id, .. }
            | Self::DisconnectWorker { manager_id, .. }
            | Self::CommitGraph { manager_id, .. }
            | Self::NodeReport { manager_id, .. }
            | Self::Execute { manager_id }
            | Self::Stop { manager_id }
            | Self::Finalize { manager_id } => manager_id,
        }
    }
}

/// What happened to a manager: the stored facts (`{"type", "data"}` in the envelope).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    ManagerStarted {
        manager_id: String,
        ip: String,
        port: u16,
    },
    WorkerConnected {
        manager_id: String,
        worker: WorkerInfo,
    },
    /// `stopped_nodes`: the worker's nodes that were running and are now marked not running.
    WorkerDisconnected {
        manager_id: String,
        worker_id: String,
        stopped_nodes: Vec<String>,
    },
    GraphCommitted {
        manager_id: String,
        nodes: Vec<NodeSpec>,
        edges: Vec<(String, String)>,
        mapping: BTreeMap<String, String>,
    },
    NodeReported {
        manager_id: String,
        node_id: String,
        running: bool,
    },
    ExecutionStarted {
        manager_id: String,
    },
    /// `stopped_nodes`: nodes that were running and are now marked not running.
    ExecutionStopped {
        manager_id: String,
        stopped_nodes: Vec<String>,
    },
    FinalizationStarted {
        manager_id: String,
    },
}

impl Event {
    /// The manager the event belongs to.
    #[must_use]
    pub fn manager_id(&self) -> &str {
        match self {
            Self::ManagerStarted { manager_id, .. }
            | Self::WorkerConnected { manager_id, .. }
            | Self::WorkerDisconnected { manager_id, .. }
            | Self::GraphCommitted { manager_id, .. }
            | Self::NodeReported { manager_id, .. }
            | Self::ExecutionStarted { manager_id }
            | Self::ExecutionStopped { manager_id, .. }
            | Self::FinalizationStarted { manager_id } => manager_id,
        }
    }
}

/// Why a command was refused (`Invalid`, `NotFound`, `Conflict`). Nothing is appended.
pub use runtime::DomainError;

/// A worker as the manager knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub info: WorkerInfo,
    /// False for a worker that left while hosting nodes of the committed graph.
    pub connected: bool,
}

/// The state of one manager, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manager {
    pub manager_id: String,
    /// `None` until `ManagerStarted`.
    pub state: Option<ManagerState>,
    pub ip: String,
    pub port: u16,
    /// In connection order.
    pub workers: Vec<Worker>,
    pub nodes: Vec<NodeSpec>,
    pub edges: Vec<(String, String)>,
    /// `node_id -> worker_id` of the committed graph.
    pub mapping: BTreeMap<String, String>,
    /// `node_id -> running` for every node of the committed graph.
    pub running: BTreeMap<String, bool>,
    /// Number of events so far.
    pub version: u64,
}

fn check_text(field: &str, value: &str) -> Result<(), DomainError> {
    if value.is_empty() {
        return Err(DomainError::Invalid(format!("`{field}` must not be empty")));
    }
    if value.len() > MAX_TEXT {
        return Err(DomainError::Invalid(format!(
            "`{field}` is {} bytes; at most {MAX_TEXT}",
            value.len()
        )));
    }
    Ok(())
}

fn check_id(field: &str, id: &str) -> Result<(), DomainError> {
    schemas::check_id(field, id).map_err(DomainError::Invalid)
}

impl Manager {
    /// Whether the manager has been started.
    #[must_use]
    pub fn exists(&self) -> bool {
        self.state.is_some()
    }

    fn worker(&self, id: &str) -> Option<&Worker> {
        self.workers.iter().find(|w| w.info.id == id)
    }

    fn hosts_nodes(&self, worker_id: &str) -> bool {
        self.mapping.values().any(|w| w == worker_id)
    }

    fn conflict(&self, what: &str, needs: &str) -> DomainError {
        let state = self
            .state
            .map_or_else(|| "not started".to_string(), |s| s.to_string());
        DomainError::Conflict(format!(
            "manager {:?} is {state}: {what} needs {needs}",
            self.manager_id
        ))
    }

    /// Decides the one event a command appends, or why it is refused.
    ///
    /// # Errors
    /// `Invalid` for bad input, `NotFound` for an unknown manager, worker or node, `Conflict` for a
    /// command out of order (the message names the current state).
    pub fn decide(&self, command: &Command) -> Result<Event, DomainError> {
        check_id("manager_id", command.manager_id())?;
        if let Command::StartManager {
            manager_id,
            ip,
            port,
        } = command
        {
            check_text("ip", ip)?;
            return match self.state {
                None => Ok(Event::ManagerStarted {
                    manager_id: manager_id.clone(),
                    ip: ip.clone(),
                    port: *port,
                }),
                Some(_) => Err(self.conflict("start-manager", "a manager id that is not in use")),
            };
        }
        let Some(state) = self.state else {
            return Err(DomainError::NotFound(format!(
                "manager {:?} does not exist; start it first",
                command.manager_id()
            )));
        };
        let manager_id = self.manager_id.clone();
        use ManagerState::*;
        match command {
            Command::StartManager { .. } => unreachable_start(),
            Command::ConnectWorker { worker, .. } => {
                check_id("worker.id", &worker.id)?;
                check_text("worker.name", &worker.name)?;
                check_text("worker.ip", &worker.ip)?;
                if state == Finalizing {
                    return Err(self.conflict("connect-worker", "a manager that is not FINALIZING"));
                }
                if self.worker(&worker.id).is_some_and(|w| w.connected) {
                    return Err(DomainError::Conflict(format!(
                        "worker {:?} is already connected to manager {manager_id:?} (state {state}); disconnect it first",
                        worker.id
                    )));
                }
                Ok(Event::WorkerConnected {
                    manager_id,
                    worker: worker.clone(),
                })
            }
            Command::DisconnectWorker { worker_id, .. } => {
                check_id("worker_id", worker_id)?;
                match self.worker(worker_id) {
                    Some(w) if w.connected => {}
                    _ => {
                        return Err(DomainError::NotFound(format!(
                            "worker {worker_id:?} is not connected to manager {manager_id:?}"
                        )))
                    }
                }
                let stopped_nodes = self
                    .mapping
                    .iter()
                    .filter(|(n, w)| {
                        *w == worker_id && self.running.get(*n).copied().unwrap_or(false)
                    })
                    .map(|(n, _)| n.clone())
                    .collect();
                Ok(Event::WorkerDisconnected {
                    manager_id,
                    worker_id: worker_id.clone(),
                    stopped_nodes,
                })
            }
            Command::CommitGraph {
                nodes,
                edges,
                mapping,
                ..
            } => {
                if !matches!(state, WorkersConnected | NodesReady | Stopped) {
                    return Err(
                        self.conflict("commit-graph", "WORKERS_CONNECTED, NODES_READY or STOPPED")
                    );
                }
                self.check_graph(nodes, edges, mapping)?;
                Ok(Event::GraphCommitted {
                    manager_id,
                    nodes: nodes.clone(),
                    edges: edges.clone(),
                    mapping: mapping.clone(),
                })
            }
            Command::NodeReport {
                node_id, running, ..
            } => {
                check_id("node_id", node_id)?;
                if matches!(state, Started | WorkersConnected) {
                    return Err(
                        self.conflict("node-report", "a committed graph (NODES_READY or later)")
                    );
                }
                let Some(worker_id) = self.mapping.get(node_id) else {
                    return Err(DomainError::NotFound(format!(
                        "node {node_id:?} is not in manager {manager_id:?}'s graph"
                    )));
                };
                if *running {
                    if !matches!(state, NodesReady | Executing) {
                        return Err(
                            self.conflict("a node reporting running", "NODES_READY or EXECUTING")
                        );
                    }
                    if !self.worker(worker_id).is_some_and(|w| w.connected) {
                        return Err(DomainError::Conflict(format!(
                            "node {node_id:?} cannot run: its worker {worker_id:?} is disconnected (manager {manager_id:?} is {state})"
                        )));
                    }
                }
                Ok(Event::NodeReported {
                    manager_id,
                    node_id: node_id.clone(),
                    running: *running,
                })
            }
            Command::Execute { .. } => {
                if !matches!(state, NodesReady | Stopped) {
                    return Err(self.conflict("execute", "NODES_READY or STOPPED"));
                }
                let missing: Vec<&str> = self
                    .mapping
                    .values()
                    .filter(|w| !self.worker(w).is_some_and(|w| w.connected))
                    .map(String::as_str)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if !missing.is_empty() {
                    return Err(DomainError::Conflict(format!(
                        "manager {manager_id:?} is {state} but cannot execute: workers {missing:?} host nodes and are disconnected; reconnect them or commit a new graph"
                    )));
                }
                Ok(Event::ExecutionStarted { manager_id })
            }
            Command::Stop { .. } => {
                if state != Executing {
                    return Err(self.conflict("stop", "EXECUTING"));
                }
                let stopped_nodes = self
                    .running
                    .iter()
                    .filter(|(_, r)| **r)
                    .map(|(n, _)| n.clone())
                    .collect();
                Ok(Event::ExecutionStopped {
                    manager_id,
                    stopped_nodes,
                })
            }
            Command::Finalize { .. } => {
                if state != Stopped {
                    return Err(self.conflict("finalize", "STOPPED"));
                }
                Ok(Event::FinalizationStarted { manager_id })
            }
        }
    }

    fn check_graph(
        &self,
        nodes: &[NodeSpec],
        edges: &[(String, String)],
        mapping: &BTreeMap<String, String>,
    ) -> Result<(), DomainError> {
        let invalid = |m: String| Err(DomainError::Invalid(m));
        if nodes.is_empty() {
            return invalid("a graph needs at least one node".into());
        }
        if nodes.len() > MAX_NODES {
            return invalid(format!(
                "a graph holds at most {MAX_NODES} nodes; this one has {}",
                nodes.len()
            ));
        }
        let mut ids: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            check_id(&format!("nodes[{i}].id"), &n.id)?;
            check_text(&format!("nodes[{i}].name"), &n.name)?;
            if let Some(c) = &n.dashboard_component {
                check_text(&format!("nodes[{i}].dashboard_component"), c)?;
            }
            if ids.insert(n.id.as_str(), i).is_some() {
                return invalid(format!("node id {:?} appears more than once", n.id));
            }
        }
        for (node, worker) in mapping {
            if !ids.contains_key(node.as_str()) {
                return invalid(format!(
                    "mapping names node {node:?}, which is not in `nodes`"
                ));
            }
            match self.worker(worker) {
                None => return invalid(format!("node {node:?} is mapped to unknown worker {worker:?}: it is not connected to this manager")),
                Some(w) if !w.connected => return invalid(format!("node {node:?} is mapped to worker {worker:?}, which is disconnected")),
                Some(_) => {}
            }
        }
        let mut ports: HashMap<(&str, u16), &str> = HashMap::new();
        for n in nodes {
            let Some(worker) = mapping.get(&n.id) else {
                return invalid(format!("node {:?} is not mapped to a worker", n.id));
            };
            if let Some(other) = ports.insert((worker.as_str(), n.port), n.id.as_str()) {
                return invalid(format!(
                    "nodes {other:?} and {:?} both use port {} on worker {worker:?}",
                    n.id, n.port
                ));
            }
        }
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut indegree = vec![0usize; nodes.len()];
        for (from, to) in edges {
            let (Some(&a), Some(&b)) = (ids.get(from.as_str()), ids.get(to.as_str())) else {
                let unknown = if ids.contains_key(from.as_str()) {
                    to
                } else {
                    from
                };
                return invalid(format!(
                    "edge [{from:?}, {to:?}] names unknown node {unknown:?}"
                ));
            };
            if a == b {
                return invalid(format!(
                    "edge [{from:?}, {to:?}] is a self-loop; the graph must be a DAG"
                ));
            }
            if !seen.insert((from.as_str(), to.as_str())) {
                return invalid(format!("edge [{from:?}, {to:?}] appears more than once"));
            }
            out[a].push(b);
            indegree[b] += 1;
        }
        // Kahn: whatever is never freed lies on (or behind) a cycle.
        let mut queue: VecDeque<usize> = (0..nodes.len()).filter(|&i| indegree[i] == 0).collect();
        let mut done = 0;
        while let Some(i) = queue.pop_front() {
            done += 1;
            for &j in &out[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    queue.push_back(j);
                }
            }
        }
        if done < nodes.len() {
            let on_cycle: Vec<&str> = (0..nodes.len())
                .filter(|&i| indegree[i] > 0)
                .map(|i| nodes[i].id.as_str())
                .take(10)
                .collect();
            return invalid(format!(
                "the edges form a cycle (through nodes {on_cycle:?}); the graph must be a DAG"
            ));
        }
        Ok(())
    }

    /// Folds one event into the state. Total: a stored event is a fact.
    pub fn evolve(&mut self, event: &Event) {
        self.version += 1;
        match event {
            Event::ManagerStarted {
                manager_id,
                ip,
                port,
            } => {
                let version = self.version;
                *self = Self {
                    manager_id: manager_id.clone(),
                    state: Some(ManagerState::Started),
                    ip: ip.clone(),
                    port: *port,
                    version,
                    ..Self::default()
                };
            }
            Event::WorkerConnected { worker, .. } => {
                if let Some(w) = self.workers.iter_mut().find(|w| w.info.id == worker.id) {
                    w.info = worker.clone();
                    w.connected = true;
                } else {
                    self.workers.push(Worker {
                        info: worker.clone(),
                        connected: true,
                    });
                }
                if self.state == Some(ManagerState::Started) {
                    self.state = Some(ManagerState::WorkersConnected);
                }
            }
            Event::WorkerDisconnected { worker_id, .. } => {
                if self.hosts_nodes(worker_id) {
                    if let Some(w) = self.workers.iter_mut().find(|w| &w.info.id == worker_id) {
                        w.connected = false;
                    }
                    for (node, worker) in &self.mapping {
                        if worker == worker_id {
                            self.running.insert(node.clone(), false);
                        }
                    }
                } else {
                    self.workers.retain(|w| &w.info.id != worker_id);
                }
            }
            Event::GraphCommitted {
                nodes,
                edges,
                mapping,
                ..
            } => {
                self.nodes = nodes.clone();
                self.edges = edges.clone();
                self.mapping = mapping.clone();
                self.running = nodes.iter().map(|n| (n.id.clone(), false)).collect();
                let hosting: HashSet<&String> = self.mapping.values().collect();
                self.workers
                    .retain(|w| w.connected || hosting.contains(&w.info.id));
                self.state = Some(ManagerState::NodesReady);
            }
            Event::NodeReported {
                node_id, running, ..
            } => {
                if let Some(r) = self.running.get_mut(node_id) {
                    *r = *running;
                }
            }
            Event::ExecutionStarted { .. } => self.state = Some(ManagerState::Executing),
            Event::ExecutionStopped { .. } => {
                for r in self.running.values_mut() {
                    *r = false;
                }
                self.state = Some(ManagerState::Stopped);
            }
            Event::FinalizationStarted { .. } => self.state = Some(ManagerState::Finalizing),
        }
    }

    fn node_view<'a>(&'a self, spec: &'a NodeSpec) -> NodeView<'a> {
        NodeView {
            name: &spec.name,
            id: &spec.id,
            port: spec.port,
            running: self.running.get(&spec.id).copied().unwrap_or(false),
            data_type: spec.data_type,
            dashboard_component: spec.dashboard_component.as_deref(),
            capabilities: &spec.capabilities,
        }
    }

    fn worker_view<'a>(&'a self, w: &'a Worker, nodes: Vec<NodeView<'a>>) -> WorkerView<'a> {
        WorkerView {
            ip: &w.info.ip,
            name: &w.info.name,
            id: &w.info.id,
            port: w.info.port,
            connected: w.connected,
            nodes,
        }
    }

    fn worker_view_by_id(&self, worker_id: &str) -> Option<Value> {
        let w = self.worker(worker_id)?;
        let nodes = self
            .nodes
            .iter()
            .filter(|n| self.mapping.get(&n.id).is_some_and(|m| m == worker_id))
            .map(|n| self.node_view(n))
            .collect();
        serde_json::to_value(self.worker_view(w, nodes)).ok()
    }

    /// The network tree as `cluster.query.tree` returns it, borrowed from the state, ready to
    /// serialise.
    #[must_use]
    pub fn tree_view(&self) -> TreeView<'_> {
        let state = self.state.unwrap_or(ManagerState::Started);
        let mut by_worker: HashMap<&str, Vec<NodeView<'_>>> = HashMap::new();
        for n in &self.nodes {
            if let Some(w) = self.mapping.get(&n.id) {
                by_worker
                    .entry(w.as_str())
                    .or_default()
                    .push(self.node_view(n));
            }
        }
        let workers = self
            .workers
            .iter()
            .map(|w| self.worker_view(w, by_worker.remove(w.info.id.as_str()).unwrap_or_default()))
            .collect();
        TreeView {
            state: state.code(),
            state_name: state.name(),
            ip: &self.ip,
            port: self.port,
            workers,
            graph: GraphView {
                nodes: &self.nodes,
                edges: &self.edges,
            },
            worker_graph_map: &self.mapping,
            version: self.version,
        }
    }

    /// The network tree as `cluster.query.tree` returns it.
    #[must_use]
    pub fn tree(&self) -> Value {
        serde_json::to_value(self.tree_view()).unwrap_or(Value::Null)
    }
}

/// A node as the tree shows it.
#[derive(Debug, Serialize)]
pub struct NodeView<'a> {
    pub name: &'a str,
    pub id: &'a str,
    pub port: u16,
    pub running: bool,
    pub data_type: DataType,
    pub dashboard_component: Option<&'a str>,
    pub capabilities: &'a [Capability],
}

/// A worker as the tree shows it.
#[derive(Debug, Serialize)]
pub struct WorkerView<'a> {
    pub ip: &'a str,
    pub name: &'a str,
    pub id: &'a str,
    pub port: u16,
    pub connected: bool,
    pub nodes: Vec<NodeView<'a>>,
}

/// The committed graph as the tree shows it.
#[derive(Debug, Serialize)]
pub struct GraphView<'a> {
    pub nodes: &'a [NodeSpec],
    pub edges: &'a [(String, String)],
}

/// The whole tree (`cluster.query.tree`).
#[derive(Debug, Serialize)]
pub struct TreeView<'a> {
    pub state: u8,
    pub state_name: &'static str,
    pub ip: &'a str,
    pub port: u16,
    pub workers: Vec<WorkerView<'a>>,
    pub graph: GraphView<'a>,
    pub worker_graph_map: &'a BTreeMap<String, String>,
    pub version: u64,
}

fn unreachable_start() -> Result<Event, DomainError> {
    Err(DomainError::Conflict(
        "start-manager was handled above".into(),
    ))
}

/// `upsert` or `remove`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Upsert,
    Remove,
}

/// One change of the tree, as published on `cluster.tree.<manager_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub version: u64,
    pub op: Op,
    pub path: String,
    pub value: Value,
}

/// Escapes one path key: `~` as `~0`, `/` as `~1`.
#[must_use]
pub fn escape_key(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Reverses [`escape_key`].
#[must_use]
pub fn unescape_key(key: &str) -> String {
    key.replace("~1", "/").replace("~0", "~")
}

fn path(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| escape_key(k))
        .collect::<Vec<_>>()
        .join("/")
}

/// The one delta `event` makes to the tree of `before` (whose version it raises by one).
#[must_use]
pub fn delta(before: &Manager, event: &Event) -> Delta {
    let version = before.version + 1;
    let root = |before: &Manager| {
        let mut after = before.clone();
        after.evolve(event);
        Delta {
            version,
            op: Op::Upsert,
            path: String::new(),
            value: after.tree(),
        }
    };
    match event {
        Event::NodeReported {
            node_id, running, ..
        } => match before.mapping.get(node_id) {
            Some(w) if before.running.contains_key(node_id) && before.worker(w).is_some() => {
                Delta {
                    version,
                    op: Op::Upsert,
                    path: path(&["workers", w, "nodes", node_id, "running"]),
                    value: Value::Bool(*running),
                }
            }
            _ => root(before),
        },
        Event::WorkerConnected { worker, .. } if before.state != Some(ManagerState::Started) => {
            let mut after = before.clone();
            after.evolve(event);
            match after.worker_view_by_id(&worker.id) {
                Some(value) => Delta {
                    version,
                    op: Op::Upsert,
                    path: path(&["workers", &worker.id]),
                    value,
                },
                None => Delta {
                    version,
                    op: Op::Upsert,
                    path: String::new(),
                    value: after.tree(),
                },
            }
        }
        Event::WorkerDisconnected { worker_id, .. } if before.worker(worker_id).is_some() => {
            let mut after = before.clone();
            after.evolve(event);
            match after.worker_view_by_id(worker_id) {
                Some(value) => Delta {
                    version,
                    op: Op::Upsert,
                    path: path(&["workers", worker_id]),
                    value,
                },
                None => Delta {
                    version,
                    op: Op::Remove,
                    path: path(&["workers", worker_id]),
                    value: Value::Null,
                },
            }
        }
        _ => root(before),
    }
}

/// Applies a delta to a tree (what a dashboard does), also setting the tree's `version`.
///
/// # Errors
/// The path does not lead into the tree.
pub fn apply_delta(tree: &mut Value, delta: &Delta) -> Result<(), String> {
    if delta.path.is_empty() {
        match delta.op {
            Op::Upsert => *tree = delta.value.clone(),
            Op::Remove => *tree = Value::Object(Map::new()),
        }
    } else {
        let keys: Vec<String> = delta.path.split('/').map(unescape_key).collect();
        let (last, parents) = keys.split_last().ok_or("empty path")?;
        let mut at = &mut *tree;
        for k in parents {
            at = match at {
                Value::Object(m) => m
                    .get_mut(k)
                    .ok_or_else(|| format!("no key {k:?} on {:?}", delta.path))?,
                Value::Array(a) => a
                    .iter_mut()
                    .find(|e| e.get("id").and_then(Value::as_str) == Some(k))
                    .ok_or_else(|| format!("no element {k:?} on {:?}", delta.path))?,
                _ => return Err(format!("{:?} goes through a scalar at {k:?}", delta.path)),
            };
        }
        match (at, delta.op) {
            (Value::Object(m), Op::Upsert) => {
                m.insert(last.clone(), delta.value.clone());
            }
            (Value::Object(m), Op::Remove) => {
                m.remove(last);
            }
            (Value::Array(a), op) => {
                let pos = a
                    .iter()
                    .position(|e| e.get("id").and_then(Value::as_str) == Some(last.as_str()));
                match (op, pos) {
                    (Op::Upsert, Some(i)) => a[i] = delta.value.clone(),
                    (Op::Upsert, None) => a.push(delta.value.clone()),
                    (Op::Remove, Some(i)) => {
                        a.remove(i);
                    }
                    (Op::Remove, None) => {}
                }
            }
            _ => return Err(format!("{:?} ends below a scalar", delta.path)),
        }
    }
    if let Value::Object(m) = tree {
        m.insert("version".into(), json!(delta.version));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::testing;

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
}
