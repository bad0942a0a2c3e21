//! Contract section 6: a pipeline manager, its workers and their nodes, as a live network tree.
//!
//! Manager states: 0 `STARTED`, 1 `WORKERS_CONNECTED`, 2 `NODES_READY`, 3 `EXECUTING`, 4 `STOPPED`,
//! 5 `FINALIZING`.
//!
//! Live deltas on `cluster.tree.{manager_id}` address the tree of `cluster.query.tree` by a path of
//! `/`-separated keys from the root, where list elements (`workers`, `workers/<id>/nodes`,
//! `graph/nodes`) are named by their `id`. Inside one key, `~` is written `~0` and `/` is written `~1`
//! (as in JSON Pointer, RFC 6901), so ids holding `/` stay one key. The empty path `""` is the whole
//! tree. `upsert` replaces the value at the path (appending to the list when no element has that id);
//! `remove` deletes it. Applying a delta also sets the tree's `version` to the delta's `version`.
//! Each change of a manager (one event) is one delta, `version` rising by exactly 1: a dashboard that
//! sees a version other than its own plus one has missed a delta and fetches the tree again.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `cluster.cmd.start-manager`: a new manager; an id already in use is `conflict`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartManager {
    pub manager_id: String,
    pub ip: String,
    pub port: u16,
}

/// A worker as it connects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerInfo {
    pub id: String,
    pub name: String,
    pub ip: String,
    pub port: u16,
}

/// `cluster.cmd.connect-worker`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectWorker {
    pub manager_id: String,
    pub worker: WorkerInfo,
}

/// `cluster.cmd.disconnect-worker`. Unknown (or already disconnected) worker: `not_found`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DisconnectWorker {
    pub manager_id: String,
    pub worker_id: String,
}

/// Kind of data a node produces or consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DataType {
    Video,
    Series,
    Audio,
}

/// What a node can be asked to do (spelling as the original design).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Callibrate,
    Start,
    Stop,
}

/// A node of a committed graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub id: String,
    pub name: String,
    pub port: u16,
    pub data_type: DataType,
    #[serde(default)]
    pub dashboard_component: Option<String>,
    pub capabilities: Vec<Capability>,
}

/// `cluster.cmd.commit-graph`: a DAG whose every node is mapped to a connected worker, node ids
/// unique, ports unique per worker, at most 2,000 nodes. Otherwise `invalid_request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitGraph {
    pub manager_id: String,
    pub nodes: Vec<NodeSpec>,
    /// `[from, to]` node ids.
    pub edges: Vec<(String, String)>,
    /// `node_id -> worker_id`, one entry per node.
    pub mapping: BTreeMap<String, String>,
}

/// `cluster.cmd.node-report`: a node says whether it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeReport {
    pub manager_id: String,
    pub node_id: String,
    pub running: bool,
}

/// `cluster.cmd.execute`, `cluster.cmd.stop`, `cluster.cmd.finalize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManagerCommand {
    pub manager_id: String,
}

/// Reply of every `cluster.cmd.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandReply {
    pub manager_id: String,
    pub state: u8,
    pub state_name: String,
    /// The tree's version after this command (the `version` of its delta).
    pub version: u64,
    /// Stream sequence of the appended event.
    pub seq: u64,
}

/// `cluster.query.tree`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TreeQuery {
    pub manager_id: String,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// A node placed on a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Node {
    pub name: String,
    pub id: String,
    pub port: u16,
    pub running: bool,
    pub data_type: DataType,
    pub dashboard_component: Option<String>,
    pub capabilities: Vec<Capability>,
}

/// A worker of the tree. `connected` is false for a worker that left while it still hosts nodes of
/// the committed graph (its nodes are then not running); a worker hosting none leaves the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Worker {
    pub ip: String,
    pub name: String,
    pub id: String,
    pub port: u16,
    pub connected: bool,
    pub nodes: Vec<Node>,
}

/// The committed graph (empty before the first commit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Graph {
    pub nodes: Vec<NodeSpec>,
    pub edges: Vec<(String, String)>,
}

/// Reply of `cluster.query.tree`: the network tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tree {
    pub state: u8,
    pub state_name: String,
    pub ip: String,
    pub port: u16,
    pub workers: Vec<Worker>,
    pub graph: Graph,
    /// `node_id -> worker_id` of the committed graph.
    pub worker_graph_map: BTreeMap<String, String>,
    /// This manager's changes so far (1 after start-manager, +1 per change). No `seq` here, so that
    /// a fetched tree plus the deltas after it equals a fresh fetch exactly; pass a command reply's
    /// `seq` as `min_seq` to read your own writes.
    pub version: u64,
}

/// `cluster.query.managers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManagersQuery {
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// One manager in `cluster.query.managers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ManagerSummary {
    pub manager_id: String,
    pub state: u8,
    pub state_name: String,
}

/// Reply of `cluster.query.managers`, ordered by `manager_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Managers {
    pub managers: Vec<ManagerSummary>,
}

/// `upsert` or `remove`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeltaOp {
    Upsert,
    Remove,
}

/// One change of a manager's tree on `cluster.tree.{manager_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TreeDelta {
    /// The tree's version after this change: exactly the previous delta's plus one.
    pub version: u64,
    pub op: DeltaOp,
    /// `/`-separated keys from the root; list elements by `id`; `~0` = `~`, `~1` = `/` in a key;
    /// `""` is the whole tree.
    pub path: String,
    /// The new value (`null` for `remove`).
    pub value: serde_json::Value,
}

/// Event data on `cluster.events.manager.{manager_id}`, tagged by the envelope's `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum ClusterEvent {
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

/// Subjects of this context for the catalogue.
pub fn subjects() -> Vec<crate::catalogue::SubjectDoc> {
    use crate::catalogue::Kind::*;
    vec![
        crate::doc!("cluster.cmd.start-manager", Command, "Start a manager (state 0 STARTED); an id already in use is conflict.", StartManager => CommandReply),
        crate::doc!("cluster.cmd.connect-worker", Command, "A worker connects (STARTED -> WORKERS_CONNECTED); conflict when FINALIZING or already connected.", ConnectWorker => CommandReply),
        crate::doc!("cluster.cmd.disconnect-worker", Command, "A worker leaves; its nodes are marked not running; unknown worker is not_found.", DisconnectWorker => CommandReply),
        crate::doc!("cluster.cmd.commit-graph", Command, "Commit a DAG of nodes mapped to connected workers (-> NODES_READY); from WORKERS_CONNECTED, NODES_READY or STOPPED.", CommitGraph => CommandReply),
        crate::doc!("cluster.cmd.node-report", Command, "A node reports running or not (after a graph is committed); unknown node is not_found.", NodeReport => CommandReply),
        crate::doc!("cluster.cmd.execute", Command, "NODES_READY or STOPPED -> EXECUTING; every worker hosting nodes must be connected.", ManagerCommand => CommandReply),
        crate::doc!("cluster.cmd.stop", Command, "EXECUTING -> STOPPED; every node is marked not running.", ManagerCommand => CommandReply),
        crate::doc!("cluster.cmd.finalize", Command, "STOPPED -> FINALIZING.", ManagerCommand => CommandReply),
        crate::doc!("cluster.query.tree", Query, "The manager's network tree with its version; unknown manager is not_found.", TreeQuery => Tree),
        crate::doc!("cluster.query.managers", Query, "Every manager with its state.", ManagersQuery => Managers),
        crate::doc!("cluster.tree.{manager_id}", Live, "One delta per change of the manager's tree, version gap-free.", TreeDelta),
        crate::doc!("cluster.events.manager.{manager_id}", Event, "Manager events: ManagerStarted, WorkerConnected, WorkerDisconnected, GraphCommitted, NodeReported, ExecutionStarted, ExecutionStopped, FinalizationStarted (envelope data).", ClusterEvent),
    ]
}
