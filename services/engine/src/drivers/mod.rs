//! Drivers: what runs a module's functions on the instance that owns it.
//!
//! A driver is one file: a type implementing [`Driver`] with its id, its metadata (registered under
//! that id at start) and its `call`. Add it to [`builtin`] and it runs.

use futures::future::BoxFuture;
use serde_json::{Map, Value};

pub mod calculator;
pub mod display;

/// How a driver reports a status (appends `StatusUpdated` and feeds the watch subjects).
pub trait StatusSink: Send + Sync {
    /// Records `value` as the module's status `name`.
    fn report<'a>(&'a self, name: &'a str, value: Value) -> BoxFuture<'a, Result<(), String>>;
}

/// One call of a driver function, with checked arguments (defaults filled in).
pub struct Call<'a> {
    pub module_id: &'a str,
    pub method: &'a str,
    pub args: &'a Map<String, Value>,
    pub status: &'a dyn StatusSink,
}

impl Call<'_> {
    /// A checked argument (the metadata guarantees presence and type).
    ///
    /// # Errors
    /// The argument is missing (a driver whose code and metadata disagree).
    pub fn arg(&self, name: &str) -> Result<&Value, String> {
        self.args
            .get(name)
            .ok_or_else(|| format!("argument {name} missing"))
    }
}

/// A driver implementation.
pub trait Driver: Send + Sync + 'static {
    /// The driver id it is registered under.
    fn id(&self) -> &'static str;
    /// Its metadata (functions, implements, requirements, security).
    fn metadata(&self) -> schemas::engine::DriverMetadata;
    /// Runs a function; `Err` is the driver's own failure (`driver_error`).
    fn call<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Value, String>>;
}

/// The drivers this build ships.
#[must_use]
pub fn builtin() -> Vec<std::sync::Arc<dyn Driver>> {
    vec![
        std::sync::Arc::new(display::Display),
        std::sync::Arc::new(calculator::Calculator),
    ]
}

/// Metadata from JSON written in a driver file.
///
/// # Panics
/// Never for the literals in this crate (a unit test parses each).
#[must_use]
pub fn metadata_from(v: Value) -> schemas::engine::DriverMetadata {
    serde_json::from_value(v)
        .unwrap_or_else(|e| panic!("driver metadata literal does not parse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records reports instead of appending them.
    #[derive(Default)]
    pub struct Recorder(pub Mutex<Vec<(String, Value)>>);

    impl StatusSink for Recorder {
        fn report<'a>(&'a self, name: &'a str, value: Value) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                self.0
                    .lock()
                    .map_err(|e| e.to_string())?
                    .push((name.to_string(), value));
                Ok(())
            })
        }
    }

    #[test]
    fn builtin_metadata_is_valid() {
        for d in builtin() {
            crate::domain::Metadata::parse(d.metadata())
                .unwrap_or_else(|e| panic!("{}: {e}", d.id()));
        }
    }

    pub async fn run(
        d: &dyn Driver,
        method: &str,
        args: Value,
    ) -> (Result<Value, String>, Vec<(String, Value)>) {
        let rec = Recorder::default();
        let meta = crate::domain::Metadata::parse(d.metadata()).unwrap();
        let args = meta.check_args(method, args.as_object().unwrap()).unwrap();
        let r = d
            .call(Call {
                module_id: "m",
                method,
                args: &args,
                status: &rec,
            })
            .await;
        let reports = rec.0.lock().unwrap().clone();
        (r, reports)
    }
}
