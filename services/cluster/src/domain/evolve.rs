//! `evolve`: folding one event into the manager (total: a stored event is a fact).

use super::*;
use std::collections::HashSet;

impl Manager {
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
}
