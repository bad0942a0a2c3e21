//! What happened to a manager: the stored facts (`{"type", "data"}` in the envelope).

use super::*;
use serde::{Deserialize, Serialize};

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
