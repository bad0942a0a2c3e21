//! `sys.query.health`: readiness of every service of the deployment.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Reply of `sys.query.health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    pub ready: bool,
    pub services: BTreeMap<String, ServiceHealth>,
}

/// One service's readiness and its projections' lag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceHealth {
    pub ready: bool,
    pub projections: BTreeMap<String, ProjectionHealth>,
}

/// Lag: events in the stream the projection has not yet committed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectionHealth {
    pub lag: i64,
    /// Events parked in the dead-letter table.
    #[serde(default)]
    pub parked: i64,
}
