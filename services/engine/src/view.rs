//! The live view: every engine instance folds the whole `ENGINE` stream into memory, in stream order.
//!
//! It answers what `exec` needs on its hot path (place -> module, module -> driver, driver ->
//! metadata) without a database round trip, and it turns each event into the watch messages it
//! causes ([`Effect`]s, returned as data): a status update goes to `engine.status.<module>.<name>`
//! and to `engine.watch.<system>.<place>.<name>` of every place the module holds; a `SystemSet`
//! that changes a place's holder publishes the new holder's current values on that place at once
//! (and `null` for statuses only the old holder had), so a watcher never subscribes again.
//! Which instance actually publishes an effect is decided by ownership, outside this module.

use crate::domain::{places, Event, Metadata, Place};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A message the fold asks to publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// On `engine.status.<module_id>.<name>`; published by the module's owner.
    Status {
        module_id: String,
        name: String,
        value: Value,
    },
    /// On `engine.watch.<system_id>.<place>.<name>`; published by the system's owner.
    Watch {
        system_id: String,
        place: Place,
        name: String,
        value: Value,
    },
}

/// A module as the view knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModuleEntry {
    pub driver_id: String,
    pub name: String,
    pub status: BTreeMap<String, Value>,
}

/// Drivers, modules, systems and statuses up to `seq`.
#[derive(Debug, Default)]
pub struct View {
    pub drivers: HashMap<String, std::sync::Arc<Metadata>>,
    pub modules: HashMap<String, ModuleEntry>,
    /// System -> its places in order.
    pub systems: HashMap<String, Vec<(Place, String)>>,
    /// Module -> systems that hold it.
    pub held_by: HashMap<String, BTreeSet<String>>,
    /// The last stream sequence folded in.
    pub seq: u64,
}

impl View {
    /// Folds one event (stream sequence `seq`) and returns the messages it causes.
    pub fn apply(&mut self, seq: u64, event: &Event) -> Vec<Effect> {
        self.seq = self.seq.max(seq);
        match event {
            Event::ExecAudited(_) => Vec::new(),
            Event::DriverRegistered {
                driver_id,
                metadata,
            } => {
                if let Ok(m) = Metadata::from_value(metadata) {
                    self.drivers
                        .insert(driver_id.clone(), std::sync::Arc::new(m));
                }
                Vec::new()
            }
            Event::ModuleAdded {
                module_id,
                driver_id,
                name,
            } => {
                let e = self.modules.entry(module_id.clone()).or_default();
                e.driver_id.clone_from(driver_id);
                e.name.clone_from(name);
                Vec::new()
            }
            Event::StatusUpdated {
                module_id,
                name,
                value,
            } => {
                if let Some(m) = self.modules.get_mut(module_id) {
                    m.status.insert(name.clone(), value.clone());
                }
                let mut out = vec![Effect::Status {
                    module_id: module_id.clone(),
                    name: name.clone(),
                    value: value.clone(),
                }];
                for system_id in self.held_by.get(module_id).into_iter().flatten() {
                    for (place, _) in self
                        .systems
                        .get(system_id)
                        .into_iter()
                        .flatten()
                        .filter(|(_, m)| m == module_id)
                    {
                        out.push(Effect::Watch {
                            system_id: system_id.clone(),
                            place: place.clone(),
                            name: name.clone(),
                            value: value.clone(),
                        });
                    }
                }
                out
            }
            Event::SystemSet { system_id, modules } => {
                let new = places(modules, |m| self.modules.get(m).map(|e| e.name.as_str()));
                let old = self
                    .systems
                    .insert(system_id.clone(), new.clone())
                    .unwrap_or_default();
                for (_, m) in &old {
                    if let Some(s) = self.held_by.get_mut(m) {
                        s.remove(system_id);
                    }
                }
                for (_, m) in &new {
                    self.held_by
                        .entry(m.clone())
                        .or_default()
                        .insert(system_id.clone());
                }
                let old_map: HashMap<&Place, &String> = old.iter().map(|(p, m)| (p, m)).collect();
                let new_map: HashMap<&Place, &String> = new.iter().map(|(p, m)| (p, m)).collect();
                let mut out = Vec::new();
                for (place, m) in &new {
                    if old_map.get(place).copied() == Some(m) {
                        continue;
                    }
                    let now: BTreeMap<String, Value> = self
                        .modules
                        .get(m)
                        .map(|e| e.status.clone())
                        .unwrap_or_default();
                    let before: Vec<String> = old_map
                        .get(place)
                        .and_then(|o| self.modules.get(*o))
                        .map(|e| e.status.keys().cloned().collect())
                        .unwrap_or_default();
                    for (name, value) in &now {
                        out.push(Effect::Watch {
                            system_id: system_id.clone(),
                            place: place.clone(),
                            name: name.clone(),
                            value: value.clone(),
                        });
                    }
                    for name in before.into_iter().filter(|n| !now.contains_key(n)) {
                        out.push(Effect::Watch {
                            system_id: system_id.clone(),
                            place: place.clone(),
                            name,
                            value: Value::Null,
                        });
                    }
                }
                for (place, m) in &old {
                    if new_map.contains_key(place) {
                        continue;
                    }
                    for name in self
                        .modules
                        .get(m)
                        .map(|e| e.status.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default()
                    {
                        out.push(Effect::Watch {
                            system_id: system_id.clone(),
                            place: place.clone(),
                            name,
                            value: Value::Null,
                        });
                    }
                }
                out
            }
        }
    }

    /// The module at a place of a system.
    #[must_use]
    pub fn lookup(&self, system_id: &str, place: &Place) -> Option<&str> {
        self.systems
            .get(system_id)?
            .iter()
            .find(|(p, _)| p == place)
            .map(|(_, m)| m.as_str())
    }

    /// Every current watch value of a system (what a new owner publishes after a rebalance).
    #[must_use]
    pub fn system_snapshot(&self, system_id: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        for (place, m) in self.systems.get(system_id).into_iter().flatten() {
            for (name, value) in self.modules.get(m).map(|e| &e.status).into_iter().flatten() {
                out.push(Effect::Watch {
                    system_id: system_id.to_string(),
                    place: place.clone(),
                    name: name.clone(),
                    value: value.clone(),
                });
            }
        }
        out
    }

    /// Every current status of a module.
    #[must_use]
    pub fn module_snapshot(&self, module_id: &str) -> Vec<Effect> {
        self.modules
            .get(module_id)
            .map(|e| {
                e.status
                    .iter()
                    .map(|(name, value)| Effect::Status {
                        module_id: module_id.to_string(),
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn added(id: &str, name: &str) -> Event {
        Event::ModuleAdded {
            module_id: id.into(),
            driver_id: "display".into(),
            name: name.into(),
        }
    }
    fn status(id: &str, name: &str, v: Value) -> Event {
        Event::StatusUpdated {
            module_id: id.into(),
            name: name.into(),
            value: v,
        }
    }
    fn system(id: &str, mods: &[&str]) -> Event {
        Event::SystemSet {
            system_id: id.into(),
            modules: mods.iter().map(|s| (*s).to_string()).collect(),
        }
    }
    fn watch(s: &str, place: &str, name: &str, v: Value) -> Effect {
        let p = Place::parse(place, None).unwrap();
        Effect::Watch {
            system_id: s.into(),
            place: p,
            name: name.into(),
            value: v,
        }
    }

    fn given() -> View {
        let mut v = View::default();
        v.apply(1, &added("a", "Display"));
        v.apply(2, &added("b", "Display"));
        v.apply(3, &status("a", "power", json!(true)));
        v.apply(4, &status("b", "power", json!(false)));
        v.apply(5, &status("b", "input", json!("hdmi")));
        v
    }

    #[test]
    fn given_system_when_status_updated_then_status_and_watch_effects() {
        let mut v = given();
        let e = v.apply(6, &system("s", &["a", "b"]));
        assert!(e.contains(&watch("s", "Display_1", "power", json!(true))));
        assert!(e.contains(&watch("s", "Display_2", "input", json!("hdmi"))));
        let e = v.apply(7, &status("b", "power", json!(true)));
        assert_eq!(
            e,
            vec![
                Effect::Status {
                    module_id: "b".into(),
                    name: "power".into(),
                    value: json!(true)
                },
                watch("s", "Display_2", "power", json!(true)),
            ]
        );
        assert_eq!(
            v.lookup("s", &Place::parse("Display_2", None).unwrap()),
            Some("b")
        );
        assert_eq!(v.seq, 7);
    }

    #[test]
    fn given_system_when_reordered_then_new_holders_values_at_once() {
        let mut v = given();
        v.apply(6, &system("s", &["a", "b"]));
        let e = v.apply(7, &system("s", &["b", "a"]));
        assert!(e.contains(&watch("s", "Display_1", "power", json!(false))));
        assert!(e.contains(&watch("s", "Display_1", "input", json!("hdmi"))));
        assert!(e.contains(&watch("s", "Display_2", "power", json!(true))));
        assert!(
            e.contains(&watch("s", "Display_2", "input", Value::Null)),
            "a has no input: the place says null"
        );
        assert_eq!(e.len(), 4);
        // Unchanged order: nothing to publish.
        assert!(v.apply(8, &system("s", &["b", "a"])).is_empty());
        // A module leaves the system: its place goes null and it no longer feeds the system.
        let e = v.apply(9, &system("s", &["b"]));
        assert_eq!(e, vec![watch("s", "Display_2", "power", Value::Null)]);
        let e = v.apply(10, &status("a", "power", json!(1)));
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn snapshots_carry_current_values() {
        let mut v = given();
        v.apply(6, &system("s", &["a", "b"]));
        assert_eq!(v.system_snapshot("s").len(), 3);
        assert_eq!(v.module_snapshot("b").len(), 2);
        assert!(v.system_snapshot("nope").is_empty());
    }
}
