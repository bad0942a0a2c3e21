//! The engine's pure domain: drivers, modules and systems as aggregates (`decide` and `apply`),
//! driver metadata with its parameter types, argument checking for `exec`, role checks, places
//! (`Display_2`) and rendezvous hashing. No I/O here: adapters call these functions.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Everything a command or an exec can be refused for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Bad input: types, missing or unknown fields, out of range.
    #[error("{0}")]
    Invalid(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Not allowed in the current state.
    #[error("{0}")]
    Conflict(String),
    /// A protected function without a valid token.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token without the role.
    #[error("{0}")]
    Forbidden(String),
}

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

// ---------------------------------------------------------------------------------------------
// Ids and names

/// Checks a contract id (1..=256 bytes).
///
/// # Errors
/// [`Error::Invalid`] naming the field.
pub fn check_id(field: &str, id: &str) -> Result<(), Error> {
    schemas::check_id(field, id).map_err(Error::Invalid)
}

/// Checks a module name: 1..=64 ASCII letters, digits, `_` or `-`, starting with a letter.
///
/// # Errors
/// [`Error::Invalid`] saying the rule.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "`name` {name:?} must be 1 to 64 ASCII letters, digits, '_' or '-', starting with a letter (like \"Display\")"
        )))
    }
}

/// Checks a status name (1..=256 bytes of UTF-8).
///
/// # Errors
/// [`Error::Invalid`].
pub fn check_status_name(name: &str) -> Result<(), Error> {
    check_id("name", name)
}

/// A place of a system: a module name and its 1-based index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    pub name: String,
    pub index: u32,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.name, self.index)
    }
}

impl Place {
    /// Reads `{module, index?}` as a lookup or exec names it: with an index, `module` is the name;
    /// without, `Display_3` is name `Display` index 3 and `Display` alone is index 1.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty module or an index below 1.
    pub fn parse(module: &str, index: Option<i64>) -> Result<Self, Error> {
        if module.is_empty() {
            return Err(Error::Invalid(
                "`module` must not be empty (like \"Display_1\")".into(),
            ));
        }
        if module.len() > 256 {
            return Err(Error::Invalid("`module` is longer than 256 bytes".into()));
        }
        if let Some(i) = index {
            let index = u32::try_from(i)
                .ok()
                .filter(|i| *i >= 1)
                .ok_or_else(|| Error::Invalid(format!("`index` is {i}; indexes start at 1")))?;
            return Ok(Self {
                name: module.to_string(),
                index,
            });
        }
        if let Some((name, idx)) = module.rsplit_once('_') {
            if !name.is_empty() && !idx.is_empty() && idx.chars().all(|c| c.is_ascii_digit()) {
                let index: u32 = idx.parse().ok().filter(|i| *i >= 1).ok_or_else(|| {
                    Error::Invalid(format!("`module` {module:?}: indexes start at 1"))
                })?;
                return Ok(Self {
                    name: name.to_string(),
                    index,
                });
            }
        }
        Ok(Self {
            name: module.to_string(),
            index: 1,
        })
    }
}

/// The places of a system's modules in order: each name's modules are counted from 1.
/// `name_of` gives a module's name (modules without one are skipped).
pub fn places<'a>(
    modules: &'a [String],
    name_of: impl Fn(&str) -> Option<&'a str>,
) -> Vec<(Place, String)> {
    let mut counts: HashMap<&str, u32> = HashMap::new();
    let mut out = Vec::with_capacity(modules.len());
    for m in modules {
        if let Some(name) = name_of(m) {
            let c = counts.entry(name).or_insert(0);
            *c += 1;
            out.push((
                Place {
                    name: name.to_string(),
                    index: *c,
                },
                m.clone(),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Driver metadata

/// One type of the metadata's type language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseType {
    String,
    Int32,
    Int64,
    Float64,
    Bool,
    Json,
}

impl BaseType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "String" => Self::String,
            "Int32" => Self::Int32,
            "Int64" => Self::Int64,
            "Float64" => Self::Float64,
            "Bool" => Self::Bool,
            "JSON" => Self::Json,
            _ => return None,
        })
    }

    /// Whether a JSON value has this type.
    #[must_use]
    pub fn accepts(self, v: &Value) -> bool {
        match self {
            Self::String => v.is_string(),
            Self::Int32 => v.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            Self::Int64 => v.is_i64() || v.as_u64().is_some_and(|u| i64::try_from(u).is_ok()),
            Self::Float64 => v.is_number(),
            Self::Bool => v.is_boolean(),
            Self::Json => true,
        }
    }
}

/// A parameter's type: one base type or a union (`String|Int32`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamType {
    pub text: String,
    pub alternatives: Vec<BaseType>,
}

impl ParamType {
    /// Parses `String`, `Int32|String`, ...
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the unknown type.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut alternatives = Vec::new();
        for part in text.split('|') {
            let t = BaseType::parse(part).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown parameter type {part:?} in {text:?}; types are String, Int32, Int64, Float64, Bool, JSON and unions like String|Int32"
                ))
            })?;
            alternatives.push(t);
        }
        Ok(Self {
            text: text.to_string(),
            alternatives,
        })
    }

    /// Whether a JSON value has one of the alternatives.
    #[must_use]
    pub fn accepts(&self, v: &Value) -> bool {
        self.alternatives.iter().any(|t| t.accepts(v))
    }
}

/// One parameter: its type and optional default.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub ty: ParamType,
    pub default: Option<Value>,
}

/// Checked driver metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// Function -> parameter -> spec.
    pub functions: BTreeMap<String, BTreeMap<String, Param>>,
    pub support: BTreeSet<String>,
    pub administrator: BTreeSet<String>,
    /// The wire form, as registered.
    pub raw: schemas::engine::DriverMetadata,
}

impl Metadata {
    /// Checks wire metadata: every type known, every spec `[type]` or `[type, default]` with a
    /// default of that type, every protected function a function of the driver.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the function and parameter at fault.
    pub fn parse(raw: schemas::engine::DriverMetadata) -> Result<Self, Error> {
        let mut functions = BTreeMap::new();
        for (f, params) in &raw.functions {
            if f.is_empty() {
                return Err(Error::Invalid("a function name must not be empty".into()));
            }
            let mut ps = BTreeMap::new();
            for (p, spec) in params {
                let at = format!("metadata.functions.{f}.{p}");
                let ty = match spec.first() {
                    Some(Value::String(t)) => ParamType::parse(t).map_err(|e| Error::Invalid(format!("{at}: {e}")))?,
                    _ => {
                        return Err(Error::Invalid(format!(
                            "{at} must be [type] or [type, default] with the type a string like \"Int32\""
                        )))
                    }
                };
                if spec.len() > 2 {
                    return Err(Error::Invalid(format!(
                        "{at} has {} elements; it is [type] or [type, default]",
                        spec.len()
                    )));
                }
                let default = spec.get(1).cloned();
                if let Some(d) = &default {
                    if !ty.accepts(d) {
                        return Err(Error::Invalid(format!(
                            "{at}: the default {d} is not a {}",
                            ty.text
                        )));
                    }
                }
                ps.insert(p.clone(), Param { ty, default });
            }
            functions.insert(f.clone(), ps);
        }
        for (level, list) in [
            ("support", &raw.security.support),
            ("administrator", &raw.security.administrator),
        ] {
            for f in list {
                if !functions.contains_key(f) {
                    return Err(Error::Invalid(format!(
                        "metadata.security.{level} names {f:?}, which is not one of the driver's functions"
                    )));
                }
            }
        }
        Ok(Self {
            functions,
            support: raw.security.support.iter().cloned().collect(),
            administrator: raw.security.administrator.iter().cloned().collect(),
            raw,
        })
    }

    /// Parses metadata from its stored JSON.
    ///
    /// # Errors
    /// As [`Metadata::parse`], or JSON of the wrong shape.
    pub fn from_value(v: &Value) -> Result<Self, Error> {
        let raw: schemas::engine::DriverMetadata = serde_json::from_value(v.clone())
            .map_err(|e| Error::Invalid(format!("metadata: {e}")))?;
        Self::parse(raw)
    }

    /// The role a function needs, if any.
    #[must_use]
    pub fn required_role(&self, function: &str) -> Option<Role> {
        if self.administrator.contains(function) {
            Some(Role::Administrator)
        } else if self.support.contains(function) {
            Some(Role::Support)
        } else {
            None
        }
    }

    /// Checks `args` against a function's parameters and fills in defaults.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown function; [`Error::Invalid`] for an unknown parameter, a
    /// missing one without a default, or a value of the wrong type (Int32 out of range included).
    pub fn check_args(
        &self,
        function: &str,
        args: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Error> {
        let params = self.functions.get(function).ok_or_else(|| {
            Error::NotFound(format!(
                "the driver has no function {function:?}; it has: {}",
                self.functions
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let mut unknown: Vec<&str> = args
            .keys()
            .filter(|k| !params.contains_key(*k))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(Error::Invalid(format!(
                "{function} has no parameter {}; its parameters are: {}",
                unknown.join(", "),
                params.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let mut out = Map::new();
        for (name, p) in params {
            match args.get(name) {
                Some(v) => {
                    if !p.ty.accepts(v) {
                        return Err(Error::Invalid(format!(
                            "argument `{name}` of {function} must be {}; got {v}",
                            describe(&p.ty)
                        )));
                    }
                    out.insert(name.clone(), v.clone());
                }
                None => match &p.default {
                    Some(d) => {
                        out.insert(name.clone(), d.clone());
                    }
                    None => {
                        return Err(Error::Invalid(format!(
                            "argument `{name}` ({}) of {function} is missing",
                            p.ty.text
                        )))
                    }
                },
            }
        }
        Ok(out)
    }
}

fn describe(t: &ParamType) -> String {
    let parts: Vec<&str> = t
        .alternatives
        .iter()
        .map(|b| match b {
            BaseType::String => "a String",
            BaseType::Int32 => "an Int32 (a whole number from -2147483648 to 2147483647)",
            BaseType::Int64 => "an Int64 (a whole number)",
            BaseType::Float64 => "a Float64 (a number)",
            BaseType::Bool => "a Bool",
            BaseType::Json => "any JSON",
        })
        .collect();
    parts.join(" or ")
}

// ---------------------------------------------------------------------------------------------
// Roles

/// Roles a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Support,
    Administrator,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Support => "support",
            Self::Administrator => "administrator",
        }
    }
}

/// Who calls: what a valid token says, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A valid token.
    User { sub: String, roles: Vec<String> },
    /// No `Authorization` header.
    Anonymous,
    /// A header whose token did not verify (the reason).
    BadToken(String),
}

/// Checks that `caller` may run `function`.
///
/// # Errors
/// [`Error::Unauthorized`] when the function is protected and the caller has no valid token;
/// [`Error::Forbidden`] when the token lacks the role.
pub fn authorize(meta: &Metadata, function: &str, caller: &Caller) -> Result<(), Error> {
    let Some(needed) = meta.required_role(function) else {
        return Ok(());
    };
    match caller {
        Caller::Anonymous => Err(Error::Unauthorized(format!(
            "{function} needs role {}: send `Authorization: Bearer <token>`",
            needed.as_str()
        ))),
        Caller::BadToken(why) => Err(Error::Unauthorized(format!(
            "{function} needs a valid token: {why}"
        ))),
        Caller::User { sub, roles } => {
            let has = |r: &str| roles.iter().any(|x| x == r);
            let ok = match needed {
                Role::Support => has("support") || has("administrator"),
                Role::Administrator => has("administrator"),
            };
            if ok {
                Ok(())
            } else {
                Err(Error::Forbidden(format!(
                    "{sub} has roles [{}]; {function} needs {}",
                    roles.join(", "),
                    if needed == Role::Support {
                        "support or administrator"
                    } else {
                        "administrator"
                    }
                )))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Aggregates

/// A driver: its metadata once registered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriverState {
    pub metadata: Option<Value>,
}

impl runtime::store::Aggregate for DriverState {
    type Event = Event;
    fn apply(&mut self, event: &Event) {
        if let Event::DriverRegistered { metadata, .. } = event {
            self.metadata = Some(metadata.clone());
        }
    }
}

/// A module: its driver and name once added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModuleState {
    pub added: Option<(String, String)>,
}

impl runtime::store::Aggregate for ModuleState {
    type Event = Event;
    fn apply(&mut self, event: &Event) {
        if let Event::ModuleAdded {
            driver_id, name, ..
        } = event
        {
            self.added = Some((driver_id.clone(), name.clone()));
        }
    }
}

/// A system: its modules in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemState {
    pub modules: Option<Vec<String>>,
}

impl runtime::store::Aggregate for SystemState {
    type Event = Event;
    fn apply(&mut self, event: &Event) {
        if let Event::SystemSet { modules, .. } = event {
            self.modules = Some(modules.clone());
        }
    }
}

/// `register-driver`: registering again replaces the metadata.
///
/// # Errors
/// [`Error::Invalid`] for a bad id or metadata.
pub fn register_driver(
    _state: &DriverState,
    cmd: &schemas::engine::RegisterDriver,
) -> Result<Event, Error> {
    check_id("driver_id", &cmd.driver_id)?;
    let meta = Metadata::parse(cmd.metadata.clone())?;
    let metadata = serde_json::to_value(&meta.raw).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(Event::DriverRegistered {
        driver_id: cmd.driver_id.clone(),
        metadata,
    })
}

/// `add-module`: `driver_known` says whether the driver is registered.
///
/// # Errors
/// Bad id or name: invalid; unknown driver: not found; module already added: conflict.
pub fn add_module(
    state: &ModuleState,
    cmd: &schemas::engine::AddModule,
    driver_known: bool,
) -> Result<Event, Error> {
    check_id("module_id", &cmd.module_id)?;
    check_id("driver_id", &cmd.driver_id)?;
    check_name(&cmd.name)?;
    if let Some((d, n)) = &state.added {
        return Err(Error::Conflict(format!(
            "module {:?} already exists (driver {d:?}, name {n:?})",
            cmd.module_id
        )));
    }
    if !driver_known {
        return Err(Error::NotFound(format!(
            "no driver {:?} is registered",
            cmd.driver_id
        )));
    }
    Ok(Event::ModuleAdded {
        module_id: cmd.module_id.clone(),
        driver_id: cmd.driver_id.clone(),
        name: cmd.name.clone(),
    })
}

/// Checks a `set-system` body without state: ids and no module twice.
///
/// # Errors
/// [`Error::Invalid`].
pub fn check_set_system(cmd: &schemas::engine::SetSystem) -> Result<(), Error> {
    check_id("system_id", &cmd.system_id)?;
    if cmd.modules.len() > 10_000 {
        return Err(Error::Invalid(
            "a system holds at most 10000 modules".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for m in &cmd.modules {
        check_id("modules[]", m)?;
        if !seen.insert(m.as_str()) {
            return Err(Error::Invalid(format!("module {m:?} is listed twice")));
        }
    }
    Ok(())
}

/// `set-system`: `unknown` are the listed modules that were never added.
///
/// # Errors
/// Invalid body; unknown modules: not found.
pub fn set_system(
    _state: &SystemState,
    cmd: &schemas::engine::SetSystem,
    unknown: &[String],
) -> Result<Event, Error> {
    check_set_system(cmd)?;
    if !unknown.is_empty() {
        return Err(Error::NotFound(format!(
            "unknown modules: {}",
            unknown.join(", ")
        )));
    }
    Ok(Event::SystemSet {
        system_id: cmd.system_id.clone(),
        modules: cmd.modules.clone(),
    })
}

/// `update-status`.
///
/// # Errors
/// Bad ids: invalid; the module was never added: not found.
pub fn update_status(
    state: &ModuleState,
    cmd: &schemas::engine::UpdateStatus,
) -> Result<Event, Error> {
    check_id("module_id", &cmd.module_id)?;
    check_status_name(&cmd.name)?;
    if state.added.is_none() {
        return Err(Error::NotFound(format!("no module {:?}", cmd.module_id)));
    }
    Ok(Event::StatusUpdated {
        module_id: cmd.module_id.clone(),
        name: cmd.name.clone(),
        value: cmd.value.clone(),
    })
}

// ---------------------------------------------------------------------------------------------
// Subjects and ownership

/// `engine.events.driver.<driver_id>`.
#[must_use]
pub fn driver_subject(id: &str) -> String {
    format!("engine.events.driver.{}", schemas::encode_token(id))
}

/// `engine.events.module.<module_id>`.
#[must_use]
pub fn module_subject(id: &str) -> String {
    format!("engine.events.module.{}", schemas::encode_token(id))
}

/// `engine.events.status.<module_id>`: a module's status reports.
#[must_use]
pub fn status_events_subject(module_id: &str) -> String {
    format!("engine.events.status.{}", schemas::encode_token(module_id))
}

/// `engine.events.audit.<system_id>`: the audit trail of the system's `engine.exec` calls.
#[must_use]
pub fn audit_subject(system_id: &str) -> String {
    format!("engine.events.audit.{}", schemas::encode_token(system_id))
}

/// `engine.events.system.<system_id>`.
#[must_use]
pub fn system_subject(id: &str) -> String {
    format!("engine.events.system.{}", schemas::encode_token(id))
}

/// `engine.status.<module_id>.<name>`.
#[must_use]
pub fn status_subject(module_id: &str, name: &str) -> String {
    format!(
        "engine.status.{}.{}",
        schemas::encode_token(module_id),
        schemas::encode_token(name)
    )
}

/// `engine.watch.<system_id>.<Name>_<index>.<status>`.
#[must_use]
pub fn watch_subject(system_id: &str, place: &Place, status: &str) -> String {
    format!(
        "engine.watch.{}.{}.{}",
        schemas::encode_token(system_id),
        schemas::encode_token(&place.to_string()),
        schemas::encode_token(status)
    )
}

/// A stable 64-bit hash (FNV-1a with a final mix), the same in every process and version.
#[must_use]
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finaliser: spreads FNV's weak low bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// What ownership is computed for: modules run drivers; systems publish watch subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned<'a> {
    Module(&'a str),
    System(&'a str),
}

/// The owner of `key` among `live` instances by rendezvous (highest random weight) hashing:
/// when an instance leaves, only its keys move; when one joins, only the keys it wins move.
#[must_use]
pub fn owner<'a>(live: &'a [String], key: Owned<'_>) -> Option<&'a str> {
    let (kind, id): (&[u8], &str) = match key {
        Owned::Module(m) => (b"m", m),
        Owned::System(s) => (b"s", s),
    };
    live.iter()
        .max_by_key(|i| {
            (
                stable_hash(&[i.as_bytes(), kind, id.as_bytes()]),
                i.as_str(),
            )
        })
        .map(String::as_str)
}

/// The leader of a live set: its lowest id.
#[must_use]
pub fn leader(live: &[String]) -> Option<&str> {
    live.iter().min().map(String::as_str)
}

/// A hash naming one live set (order-independent).
#[must_use]
pub fn live_hash(live: &[String]) -> u64 {
    let mut sorted: Vec<&str> = live.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let parts: Vec<&[u8]> = sorted.iter().map(|s| s.as_bytes()).collect();
    stable_hash(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn calculator() -> Metadata {
        let raw: schemas::engine::DriverMetadata = serde_json::from_value(json!({
            "functions": {
                "switch_input": {"input": ["String"]},
                "add": {"a": ["Int32"], "b": ["Int32"]},
                "perform_task": {"name": ["String|Int32"]},
                "error_task": {},
                "future_add": {"a": ["Int32"], "b": ["Int32", 200]},
                "all": {"s": ["String"], "i": ["Int64"], "f": ["Float64"], "b": ["Bool"], "j": ["JSON"]}
            },
            "implements": ["VideoConferenceSpace"],
            "requirements": {"Display_1": ["Powerable"]},
            "security": {"support": ["error_task", "future_add"], "administrator": ["perform_task"]}
        }))
        .unwrap();
        Metadata::parse(raw).unwrap()
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn raw(v: Value) -> schemas::engine::DriverMetadata {
        serde_json::from_value(v).unwrap()
    }

    // --- argument checking

    #[test]
    fn given_add_when_int32_args_then_they_pass() {
        let m = calculator();
        assert_eq!(
            m.check_args("add", &args(json!({"a": 1, "b": -2})))
                .unwrap(),
            args(json!({"a": 1, "b": -2}))
        );
        assert!(m
            .check_args("add", &args(json!({"a": 2147483647, "b": -2147483648})))
            .is_ok());
    }

    #[test]
    fn given_add_when_int32_out_of_range_then_invalid() {
        let m = calculator();
        for bad in [
            json!(2147483648_i64),
            json!(-2147483649_i64),
            json!(1.5),
            json!("1"),
            json!(true),
            json!(null),
        ] {
            let r = m.check_args("add", &args(json!({"a": bad.clone(), "b": 1})));
            assert!(matches!(r, Err(Error::Invalid(_))), "{bad}: {r:?}");
        }
    }

    #[test]
    fn given_future_add_when_b_missing_then_default_filled() {
        let m = calculator();
        assert_eq!(
            m.check_args("future_add", &args(json!({"a": 1}))).unwrap(),
            args(json!({"a": 1, "b": 200}))
        );
        assert_eq!(
            m.check_args("future_add", &args(json!({"a": 1, "b": 5})))
                .unwrap(),
            args(json!({"a": 1, "b": 5}))
        );
    }

    #[test]
    fn given_add_when_argument_missing_or_unknown_then_invalid() {
        let m = calculator();
        assert!(
            matches!(m.check_args("add", &args(json!({"a": 1}))), Err(Error::Invalid(msg)) if msg.contains("`b`"))
        );
        assert!(
            matches!(m.check_args("add", &args(json!({"a": 1, "b": 2, "c": 3}))), Err(Error::Invalid(msg)) if msg.contains('c'))
        );
        assert!(matches!(
            m.check_args("error_task", &args(json!({"x": 1}))),
            Err(Error::Invalid(_))
        ));
        assert!(m.check_args("error_task", &Map::new()).unwrap().is_empty());
    }

    #[test]
    fn given_union_when_string_or_int32_then_pass_else_invalid() {
        let m = calculator();
        assert!(m
            .check_args("perform_task", &args(json!({"name": "x"})))
            .is_ok());
        assert!(m
            .check_args("perform_task", &args(json!({"name": 7})))
            .is_ok());
        for bad in [
            json!(7.5),
            json!(false),
            json!([1]),
            json!({}),
            json!(4_000_000_000_i64),
        ] {
            assert!(matches!(
                m.check_args("perform_task", &args(json!({"name": bad}))),
                Err(Error::Invalid(_))
            ));
        }
    }

    #[test]
    fn given_each_base_type_when_checked_then_only_its_values_pass() {
        let m = calculator();
        let good =
            json!({"s": "x", "i": 9_000_000_000_i64, "f": 1.5, "b": false, "j": {"any": [1]}});
        assert!(m.check_args("all", &args(good.clone())).is_ok());
        assert!(
            m.check_args(
                "all",
                &args(json!({"s": "x", "i": 1, "f": 2, "b": true, "j": null}))
            )
            .is_ok(),
            "ints are Float64 too"
        );
        for (k, bad) in [
            ("s", json!(1)),
            ("i", json!(1.5)),
            ("i", json!(u64::MAX)),
            ("f", json!("1")),
            ("b", json!(0)),
        ] {
            let mut a = args(good.clone());
            a.insert(k.into(), bad.clone());
            assert!(
                matches!(m.check_args("all", &a), Err(Error::Invalid(_))),
                "{k}={bad}"
            );
        }
    }

    #[test]
    fn given_unknown_function_then_not_found() {
        assert!(matches!(
            calculator().check_args("nope", &Map::new()),
            Err(Error::NotFound(_))
        ));
    }

    // --- metadata

    #[test]
    fn given_bad_metadata_then_invalid() {
        let cases = [
            json!({"functions": {"f": {"a": ["Integer"]}}}),
            json!({"functions": {"f": {"a": []}}}),
            json!({"functions": {"f": {"a": [5]}}}),
            json!({"functions": {"f": {"a": ["Int32", "x"]}}}),
            json!({"functions": {"f": {"a": ["Int32", 1, 2]}}}),
            json!({"functions": {"f": {"a": ["String|Nope"]}}}),
            json!({"functions": {"f": {}}, "security": {"support": ["g"]}}),
        ];
        for c in cases {
            assert!(
                matches!(Metadata::parse(raw(c.clone())), Err(Error::Invalid(_))),
                "{c}"
            );
        }
        assert!(Metadata::parse(raw(
            json!({"functions": {"f": {"a": ["Int32|String", "x"]}}})
        ))
        .is_ok());
    }

    #[test]
    fn given_security_then_required_roles() {
        let m = calculator();
        assert_eq!(m.required_role("perform_task"), Some(Role::Administrator));
        assert_eq!(m.required_role("future_add"), Some(Role::Support));
        assert_eq!(m.required_role("add"), None);
    }

    // --- roles

    fn user(roles: &[&str]) -> Caller {
        Caller::User {
            sub: "jane".into(),
            roles: roles.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    #[test]
    fn given_public_function_then_anyone_may_call() {
        let m = calculator();
        assert_eq!(authorize(&m, "add", &Caller::Anonymous), Ok(()));
        assert_eq!(authorize(&m, "add", &Caller::BadToken("x".into())), Ok(()));
    }

    #[test]
    fn given_support_function_then_roles_checked() {
        let m = calculator();
        assert!(matches!(
            authorize(&m, "error_task", &Caller::Anonymous),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            authorize(&m, "error_task", &Caller::BadToken("bad signature".into())),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            authorize(&m, "error_task", &user(&[])),
            Err(Error::Forbidden(_))
        ));
        assert_eq!(authorize(&m, "error_task", &user(&["support"])), Ok(()));
        assert_eq!(
            authorize(&m, "error_task", &user(&["administrator"])),
            Ok(())
        );
    }

    #[test]
    fn given_administrator_function_then_support_is_forbidden() {
        let m = calculator();
        assert!(matches!(
            authorize(&m, "perform_task", &Caller::Anonymous),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            authorize(&m, "perform_task", &user(&["support"])),
            Err(Error::Forbidden(_))
        ));
        assert_eq!(
            authorize(&m, "perform_task", &user(&["support", "administrator"])),
            Ok(())
        );
    }

    // --- places

    #[test]
    fn given_module_names_when_parsed_then_places() {
        assert_eq!(
            Place::parse("Display_3", None).unwrap(),
            Place {
                name: "Display".into(),
                index: 3
            }
        );
        assert_eq!(
            Place::parse("Display", None).unwrap(),
            Place {
                name: "Display".into(),
                index: 1
            }
        );
        assert_eq!(
            Place::parse("Display", Some(2)).unwrap(),
            Place {
                name: "Display".into(),
                index: 2
            }
        );
        assert_eq!(
            Place::parse("Video_Switcher", None).unwrap(),
            Place {
                name: "Video_Switcher".into(),
                index: 1
            }
        );
        assert_eq!(
            Place::parse("Cam_2_4", None).unwrap(),
            Place {
                name: "Cam_2".into(),
                index: 4
            }
        );
        assert!(matches!(
            Place::parse("Display_0", None),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            Place::parse("Display", Some(0)),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(Place::parse("", None), Err(Error::Invalid(_))));
    }

    #[test]
    fn given_system_order_then_indexes_per_name() {
        let names: HashMap<&str, &str> = [("a", "Display"), ("b", "Camera"), ("c", "Display")]
            .into_iter()
            .collect();
        let mods: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let p = places(&mods, |m| names.get(m).copied());
        let shown: Vec<(String, String)> = p.into_iter().map(|(p, m)| (p.to_string(), m)).collect();
        assert_eq!(
            shown,
            vec![
                ("Display_1".into(), "a".into()),
                ("Camera_1".into(), "b".into()),
                ("Display_2".into(), "c".into())
            ]
        );
    }

    // --- commands

    fn reg(id: &str) -> schemas::engine::RegisterDriver {
        schemas::engine::RegisterDriver {
            driver_id: id.into(),
            metadata: calculator().raw,
        }
    }

    #[test]
    fn given_any_driver_when_register_then_registered() {
        let e = register_driver(&DriverState::default(), &reg("calc")).unwrap();
        assert!(matches!(&e, Event::DriverRegistered { driver_id, .. } if driver_id == "calc"));
        let mut s = DriverState::default();
        runtime::store::Aggregate::apply(&mut s, &e);
        assert!(
            register_driver(&s, &reg("calc")).is_ok(),
            "registering again replaces"
        );
        assert!(matches!(
            register_driver(&s, &reg("")),
            Err(Error::Invalid(_))
        ));
    }

    fn add(id: &str, name: &str) -> schemas::engine::AddModule {
        schemas::engine::AddModule {
            module_id: id.into(),
            driver_id: "calc".into(),
            name: name.into(),
        }
    }

    #[test]
    fn given_new_module_when_add_then_added() {
        let e = add_module(&ModuleState::default(), &add("m.1", "Display"), true).unwrap();
        assert_eq!(
            e,
            Event::ModuleAdded {
                module_id: "m.1".into(),
                driver_id: "calc".into(),
                name: "Display".into()
            }
        );
    }

    #[test]
    fn given_existing_module_when_add_then_conflict() {
        let s = ModuleState {
            added: Some(("calc".into(), "Display".into())),
        };
        assert!(matches!(
            add_module(&s, &add("m", "Display"), true),
            Err(Error::Conflict(_))
        ));
    }

    #[test]
    fn given_unknown_driver_when_add_then_not_found() {
        assert!(matches!(
            add_module(&ModuleState::default(), &add("m", "Display"), false),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn given_bad_name_when_add_then_invalid() {
        for bad in ["", "1Display", "Dis play", "Dis.play", &"x".repeat(65)] {
            assert!(
                matches!(
                    add_module(&ModuleState::default(), &add("m", bad), true),
                    Err(Error::Invalid(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn given_known_modules_when_set_system_then_set() {
        let cmd = schemas::engine::SetSystem {
            system_id: "s".into(),
            modules: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            set_system(&SystemState::default(), &cmd, &[]).unwrap(),
            Event::SystemSet {
                system_id: "s".into(),
                modules: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn given_unknown_or_duplicate_modules_when_set_system_then_refused() {
        let cmd = schemas::engine::SetSystem {
            system_id: "s".into(),
            modules: vec!["a".into(), "b".into()],
        };
        assert!(matches!(
            set_system(&SystemState::default(), &cmd, &["b".into()]),
            Err(Error::NotFound(_))
        ));
        let dup = schemas::engine::SetSystem {
            system_id: "s".into(),
            modules: vec!["a".into(), "a".into()],
        };
        assert!(matches!(
            set_system(&SystemState::default(), &dup, &[]),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn given_module_when_update_status_then_updated_else_not_found() {
        let cmd = schemas::engine::UpdateStatus {
            module_id: "m".into(),
            name: "power".into(),
            value: json!(true),
        };
        assert!(matches!(
            update_status(&ModuleState::default(), &cmd),
            Err(Error::NotFound(_))
        ));
        let s = ModuleState {
            added: Some(("calc".into(), "Display".into())),
        };
        assert_eq!(
            update_status(&s, &cmd).unwrap(),
            Event::StatusUpdated {
                module_id: "m".into(),
                name: "power".into(),
                value: json!(true)
            }
        );
        let empty = schemas::engine::UpdateStatus {
            name: String::new(),
            ..cmd
        };
        assert!(matches!(update_status(&s, &empty), Err(Error::Invalid(_))));
    }

    // --- ownership

    #[test]
    fn rendezvous_moves_only_the_dead_instances_modules() {
        let three: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let two: Vec<String> = vec!["a".into(), "c".into()];
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for i in 0..300 {
            let m = format!("module-{i}");
            let before = owner(&three, Owned::Module(&m)).unwrap();
            *counts.entry(before).or_default() += 1;
            let after = owner(&two, Owned::Module(&m)).unwrap();
            if before != "b" {
                assert_eq!(before, after, "{m} moved although its owner stayed");
            } else {
                assert_ne!(after, "b");
            }
        }
        for (i, n) in counts {
            assert!(n > 50, "instance {i} owns only {n} of 300");
        }
        assert_eq!(owner(&[], Owned::Module("x")), None);
    }

    #[test]
    fn leader_is_lowest_and_live_hash_ignores_order() {
        let a: Vec<String> = vec!["b".into(), "a".into()];
        let b: Vec<String> = vec!["a".into(), "b".into()];
        assert_eq!(leader(&a), Some("a"));
        assert_eq!(live_hash(&a), live_hash(&b));
        assert_ne!(live_hash(&a), live_hash(&["a".to_string()]));
    }

    #[test]
    fn subjects_encode_ids() {
        assert_eq!(status_subject("m.1", "power"), "engine.status.m%2E1.power");
        assert_eq!(
            watch_subject(
                "s 1",
                &Place {
                    name: "Display".into(),
                    index: 2
                },
                "power"
            ),
            "engine.watch.s%201.Display_2.power"
        );
        assert_eq!(module_subject("a>b"), "engine.events.module.a%3Eb");
    }
}
