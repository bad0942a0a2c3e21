//! Contract section 5: building systems, modules, drivers, status, watch and execute.
//!
//! Ids (`driver_id`, `module_id`, `system_id`) are contract ids (1..=256 bytes of UTF-8). Module
//! names (`Display`) are 1..=64 ASCII letters, digits, `_` or `-`, starting with a letter; a module's
//! place in a system is `<Name>_<index>` (1-based, counted per name in the system's order). Status
//! names are 1..=256 bytes of UTF-8. Where one of them becomes a subject token it is encoded with
//! [`crate::encode_token`] (names and places are already valid tokens and stay as they are).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The protected functions of a driver.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// Functions that need role `support` or `administrator`.
    #[serde(default)]
    pub support: Vec<String>,
    /// Functions that need role `administrator`.
    #[serde(default)]
    pub administrator: Vec<String>,
}

/// A driver's metadata, as the original design: functions with typed parameters, interfaces,
/// requirements and security.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriverMetadata {
    /// Function name -> parameter name -> `[type, default?]`. Types: `String`, `Int32`, `Int64`,
    /// `Float64`, `Bool`, `JSON`, or a union such as `String|Int32`. A default must have the type.
    pub functions: BTreeMap<String, BTreeMap<String, Vec<Value>>>,
    /// Interfaces this driver implements.
    #[serde(default)]
    pub implements: Vec<String>,
    /// Requirements on other modules of the system (informative).
    #[serde(default)]
    pub requirements: BTreeMap<String, Vec<String>>,
    /// Protected functions; every one named must be a function of the driver.
    #[serde(default)]
    pub security: Security,
}

/// `engine.cmd.register-driver`: registers (or replaces) a driver's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDriver {
    pub driver_id: String,
    pub metadata: DriverMetadata,
}

/// Reply of `engine.cmd.register-driver` and of `engine.query.driver` (which has `seq` 0 unless known).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Driver {
    pub driver_id: String,
    pub metadata: DriverMetadata,
    pub seq: u64,
}

/// `engine.cmd.add-module`: a module running driver `driver_id` under the name `name` (like `Display`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddModule {
    pub module_id: String,
    pub driver_id: String,
    pub name: String,
}

/// Reply of `engine.cmd.add-module`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModuleAdded {
    pub module_id: String,
    pub driver_id: String,
    pub name: String,
    pub seq: u64,
}

/// `engine.cmd.set-system`: the system's modules in order (each at most once, each known).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSystem {
    pub system_id: String,
    pub modules: Vec<String>,
}

/// A system: reply of `engine.cmd.set-system` and `engine.query.system`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct System {
    pub system_id: String,
    /// The modules in order.
    pub modules: Vec<String>,
    /// Place (`Display_1`) -> module id.
    pub places: BTreeMap<String, String>,
    pub seq: u64,
}

/// `engine.cmd.update-status`: what a driver reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStatus {
    pub module_id: String,
    pub name: String,
    pub value: Value,
}

/// Reply of `engine.cmd.update-status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusUpdated {
    pub module_id: String,
    pub name: String,
    pub value: Value,
    pub seq: u64,
}

/// `engine.query.lookup`: `{system_id, module: "Display", index: 3}` or `{system_id, module: "Display_3"}`
/// (a module without `_<index>` and without `index` means index 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    pub system_id: String,
    pub module: String,
    /// 1-based.
    #[serde(default)]
    pub index: Option<i64>,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// Reply of `engine.query.lookup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LookupReply {
    pub module_id: String,
}

/// `engine.query.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    pub module_id: String,
    pub name: String,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// Reply of `engine.query.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusReply {
    pub value: Value,
}

/// `engine.query.module`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModuleQuery {
    pub module_id: String,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// Reply of `engine.query.module`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Module {
    pub module_id: String,
    pub driver_id: String,
    pub name: String,
    /// Status name -> last reported value.
    pub status: Map<String, Value>,
}

/// `engine.query.system`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemQuery {
    pub system_id: String,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// `engine.query.driver`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriverQuery {
    pub driver_id: String,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// `engine.query.instances` (body `{}`): the live engine instances and the modules each owns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstancesQuery {}

/// One live engine instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Instance {
    pub instance_id: String,
    /// The instance that announces `ready` after a rebalance (the lowest live id).
    pub leader: bool,
    /// Modules it owns by rendezvous hashing over the live instances.
    pub modules: Vec<String>,
}

/// Reply of `engine.query.instances`, as the answering instance sees membership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Instances {
    pub instances: Vec<Instance>,
}

/// `engine.exec` (header `Authorization: Bearer <HS256 JWT with sub and roles>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    pub system_id: String,
    /// A place such as `Display_1` (`Display` alone means `Display_1`).
    pub module: String,
    pub method: String,
    /// Parameter name -> value; missing parameters with a default are filled in.
    #[serde(default)]
    pub args: Map<String, Value>,
}

/// Reply of `engine.exec`: what the driver's function returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecReply {
    pub result: Value,
}

/// The claims of an `engine.exec` token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Claims {
    pub sub: String,
    /// `support` and/or `administrator`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Expiry (seconds since the epoch); checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Events on `engine.events.driver.<driver_id>` (`DriverRegistered`), `engine.events.module.<module_id>`
/// (`ModuleAdded`), `engine.events.status.<module_id>` (`StatusUpdated`) and
/// `engine.events.system.<system_id>` (`SystemSet`), tagged by the envelope's `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum EngineEvent {
    DriverRegistered {
        driver_id: String,
        metadata: DriverMetadata,
    },
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
    /// One `engine.exec` call, on `engine.events.audit.<system_id>` (an addition).
    ExecAudited(AuditEntry),
}

/// A watch message: the status value itself (any JSON; `null` when the new holder of a place has
/// no value for that status).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct WatchValue(pub Value);

/// Internal: an `engine.exec` forwarded to the owner instance on `engine.instance.<id>.exec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerExec {
    pub module_id: String,
    pub driver_id: String,
    pub method: String,
    /// Checked arguments with defaults filled in.
    pub args: Map<String, Value>,
    /// The sender's view of the event stream, so that the owner can catch up first.
    pub view_seq: u64,
}

/// Internal: the membership record of one engine instance in the KV bucket `ENGINE_INSTANCES`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceHeartbeat {
    pub instance_id: String,
    /// Hash of the live set this instance has applied.
    pub live_hash: u64,
    /// Whether it has started its modules for that live set.
    pub started: bool,
    /// Counts heartbeats.
    pub beat: u64,
}

/// One `engine.exec` call as the audit trail keeps it (an addition): who asked, for what, and how
/// it ended. Every call whose body decodes is recorded, allowed or refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEntry {
    /// The token's `sub`; `null` without a (valid) token.
    pub who: Option<String>,
    /// The token's roles (empty without a valid token).
    #[serde(default)]
    pub roles: Vec<String>,
    pub system_id: String,
    /// The place asked for (`Display_1`).
    pub module: String,
    /// The module that held the place, when it was found.
    #[serde(default)]
    pub module_id: Option<String>,
    pub method: String,
    /// The arguments as sent.
    #[serde(default)]
    pub args: Map<String, Value>,
    /// `ok`, or the error code of the reply (`unauthorized`, `forbidden`, `driver_error`, ...).
    pub outcome: String,
    /// The error message, when the call was refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How long the call took, in milliseconds.
    pub duration_ms: u64,
    /// When the call was answered.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// `engine.query.audit` (an addition): the audit trail of one module (`module_id`), or of one
/// system (`system_id`, optionally one `module` place), newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    pub module_id: Option<String>,
    #[serde(default)]
    pub system_id: Option<String>,
    /// A place of `system_id` (`Display_1`).
    #[serde(default)]
    pub module: Option<String>,
    /// At most this many entries (1 to 1000, default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// One audit entry with its stream sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditRecord {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// Reply of `engine.query.audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditReply {
    pub entries: Vec<AuditRecord>,
}

/// Subjects of this context for the catalogue.
pub fn subjects() -> Vec<crate::catalogue::SubjectDoc> {
    use crate::catalogue::Kind::*;
    use crate::doc;
    vec![
        doc!("engine.cmd.register-driver", Command, "Register or replace a driver's metadata (types checked, defaults typed, security names functions).", RegisterDriver => Driver),
        doc!("engine.cmd.add-module", Command, "Add a module running a known driver under a name like Display; an existing module is conflict, an unknown driver not_found.", AddModule => ModuleAdded),
        doc!("engine.cmd.set-system", Command, "Set (or re-order) a system's modules; the order gives each name its 1-based index; unknown modules not_found.", SetSystem => System),
        doc!("engine.cmd.update-status", Command, "A driver's status report (any JSON); unknown module not_found.", UpdateStatus => StatusUpdated),
        doc!("engine.query.lookup", Query, "The module at a place of a system (Display_3, or module Display with index 3).", Lookup => LookupReply),
        doc!("engine.query.status", Query, "A module's last value of one status; unknown module or status not_found.", StatusQuery => StatusReply),
        doc!("engine.query.module", Query, "A module with its driver, name and every status.", ModuleQuery => Module),
        doc!("engine.query.system", Query, "A system's modules in order and its places.", SystemQuery => System),
        doc!("engine.query.driver", Query, "A driver's metadata.", DriverQuery => Driver),
        doc!("engine.query.instances", Query, "Live engine instances, the leader, and the modules each owns.", InstancesQuery => Instances),
        doc!("engine.query.audit", Query, "The audit trail of engine.exec (an addition): every call, allowed or refused, with who, roles, system, module, method, arguments, outcome and duration; per module_id, or per system_id (and module place); newest first.", AuditQuery => AuditReply),
        doc!("engine.events.audit.{system_id}", Event, "ExecAudited: one engine.exec call (an addition).", EngineEvent),
        doc!("engine.exec", Command, "Run a driver function on the owner instance; header Authorization: Bearer <HS256 JWT>. Codes: invalid_request (arguments), not_found (system, place or method), unauthorized, forbidden, driver_error (502), unavailable (no answer in 5 s).", Exec => ExecReply),
        doc!("engine.status.{module_id}.{name}", Live, "Each new value of a module's status (JSON).", WatchValue),
        doc!("engine.watch.{system_id}.{place}.{status}", Live, "The status value of whichever module holds the place (Display_1) now; after a re-order it carries the new holder's current value at once.", WatchValue),
        doc!("engine.events.driver.{driver_id}", Event, "DriverRegistered.", EngineEvent),
        doc!("engine.events.module.{module_id}", Event, "ModuleAdded.", EngineEvent),
        doc!("engine.events.status.{module_id}", Event, "StatusUpdated: the module's status reports (history of every change).", EngineEvent),
        doc!("engine.events.system.{system_id}", Event, "SystemSet.", EngineEvent),
        doc!("engine.system", Live, "Plain text `ready`: every service has started; again after an engine rebalance once the new owners have started their modules.", String),
        doc!("engine.instance.{instance_id}.exec", Command, "Internal: exec forwarded to the owner instance.", OwnerExec => ExecReply),
        doc!("$KV.ENGINE_INSTANCES.{instance_id}", Live, "Internal: engine membership heartbeats, one key per instance.", InstanceHeartbeat),
    ]
}
