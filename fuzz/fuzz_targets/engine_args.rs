//! The engine argument type checker against the sample drivers' metadata: any JSON arguments are
//! accepted (every declared parameter present afterwards) or refused with a message.
#![no_main]
use engine::drivers::Driver;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Object(args)) = serde_json::from_slice(data) else {
        return;
    };
    let drivers: [&dyn Driver; 2] = [
        &engine::drivers::calculator::Calculator,
        &engine::drivers::display::Display,
    ];
    for d in drivers {
        let meta = serde_json::to_value(d.metadata()).unwrap();
        let meta = engine::domain::Metadata::from_value(&meta).unwrap();
        for f in ["add", "future_add", "perform_task", "error_task", "power", "switch_input", "nope"] {
            let _ = meta.check_args(f, &args);
        }
    }
    // Metadata itself comes from clients too (register-driver).
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = engine::domain::Metadata::from_value(&v);
    }
});
