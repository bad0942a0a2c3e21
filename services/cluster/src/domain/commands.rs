//! What a client asks of a manager, and the types commands carry.

use super::*;
use serde::{Deserialize, Serialize};

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
