//! The manager's state: its states 0..5, its workers and graph, folded from its events.

use super::*;
use serde::{Deserialize, Serialize};

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

impl Manager {
    /// Whether the manager has been started.
    #[must_use]
    pub fn exists(&self) -> bool {
        self.state.is_some()
    }

    pub(super) fn worker(&self, id: &str) -> Option<&Worker> {
        self.workers.iter().find(|w| w.info.id == id)
    }

    pub(super) fn hosts_nodes(&self, worker_id: &str) -> bool {
        self.mapping.values().any(|w| w == worker_id)
    }

    pub(super) fn conflict(&self, what: &str, needs: &str) -> DomainError {
        let state = self
            .state
            .map_or_else(|| "not started".to_string(), |s| s.to_string());
        DomainError::Conflict(format!(
            "manager {:?} is {state}: {what} needs {needs}",
            self.manager_id
        ))
    }
}
