//! The one event type of the `ENGINE` stream.

use super::*;

/// The one event type of the `ENGINE` stream (JSON `{"type", "data"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// A driver's metadata, in its wire form (already checked).
    DriverRegistered { driver_id: String, metadata: Value },
    ModuleAdded {
        module_id: String,
        driver_id: String,
        name: String,
    },
    SystemSet {
        system_id: String,
        modules: Vec<String>,
    },
    StatusUpdated {
        module_id: String,
        name: String,
        value: Value,
    },
    /// One `engine.exec` call, allowed or refused (the audit trail).
    ExecAudited(schemas::engine::AuditEntry),
}
