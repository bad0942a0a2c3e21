//! The network tree of a manager and the one delta each event makes to it.

use super::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

impl Manager {
    pub(super) fn node_view<'a>(&'a self, spec: &'a NodeSpec) -> NodeView<'a> {
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

    pub(super) fn worker_view<'a>(
        &'a self,
        w: &'a Worker,
        nodes: Vec<NodeView<'a>>,
    ) -> WorkerView<'a> {
        WorkerView {
            ip: &w.info.ip,
            name: &w.info.name,
            id: &w.info.id,
            port: w.info.port,
            connected: w.connected,
            nodes,
        }
    }

    pub(super) fn worker_view_by_id(&self, worker_id: &str) -> Option<Value> {
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

pub(super) fn path(keys: &[&str]) -> String {
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
