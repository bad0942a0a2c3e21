//! Drivers, modules and systems as aggregates: their state, `apply` and `decide`.

use super::*;

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
