//! `decide`: the one event a command appends, or why it is refused.

use super::*;
use std::collections::{HashMap, HashSet, VecDeque};

pub(super) fn check_text(field: &str, value: &str) -> Result<(), DomainError> {
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

pub(super) fn check_id(field: &str, id: &str) -> Result<(), DomainError> {
    schemas::check_id(field, id).map_err(DomainError::Invalid)
}

pub(super) fn unreachable_start() -> Result<Event, DomainError> {
    Err(DomainError::Conflict(
        "start-manager was handled above".into(),
    ))
}

impl Manager {
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

    pub(super) fn check_graph(
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
}
