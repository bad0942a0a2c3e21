//! `sys.query.health`: readiness of every service of the deployment.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Reply of `sys.query.health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    pub ready: bool,
    /// `false` when any projection has parked an event (its read model no longer matches the
    /// stream): the deployment is degraded and needs an operator (an addition).
    #[serde(default = "yes")]
    pub ok: bool,
    /// `"ok"`, `"degraded"` (something parked) or `"starting"` (not ready yet) (an addition).
    #[serde(default)]
    pub status: String,
    pub services: BTreeMap<String, ServiceHealth>,
}

/// One service's readiness and its projections' lag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceHealth {
    pub ready: bool,
    /// `false` when one of its projections has parked an event (an addition).
    #[serde(default = "yes")]
    pub ok: bool,
    pub projections: BTreeMap<String, ProjectionHealth>,
}

/// Lag: events in the stream the projection has not yet committed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectionHealth {
    pub lag: i64,
    /// Events parked in the dead-letter table.
    #[serde(default)]
    pub parked: i64,
    /// `false` when an event is parked: the read model has diverged from the stream (an addition).
    #[serde(default = "yes")]
    pub ok: bool,
    /// Why the last event was parked (stream sequence and cause), when one was (an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_parked: Option<String>,
}

fn yes() -> bool {
    true
}
