//! The engine's rules: decisions on a state given / when / then (`runtime::testing`), parsing
//! and hashing plainly; refusals compared with `==`.

use super::*;
use runtime::testing::{given, given_state};
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

fn invalid(m: &str) -> Error {
    Error::Invalid(m.into())
}

/// `check_args` of `function` with `a`, decided on the driver's metadata.
fn checks(
    function: &str,
    a: Value,
) -> impl FnOnce(&Metadata) -> Result<Map<String, Value>, Error> + '_ {
    move |m| m.check_args(function, &args(a))
}

const INT32: &str = "an Int32 (a whole number from -2147483648 to 2147483647)";

// --- argument checking

#[test]
fn given_add_when_int32_args_then_they_pass() {
    given_state(calculator())
        .when(checks("add", json!({"a": 1, "b": -2})))
        .then_ok(args(json!({"a": 1, "b": -2})));
    given_state(calculator())
        .when(checks("add", json!({"a": 2147483647, "b": -2147483648})))
        .then_ok(args(json!({"a": 2147483647, "b": -2147483648})));
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
        given_state(m.clone())
            .when(checks("add", json!({"a": bad.clone(), "b": 1})))
            .then_err(invalid(&format!(
                "argument `a` of add must be {INT32}; got {bad}"
            )));
    }
}

#[test]
fn given_future_add_when_b_missing_then_default_filled() {
    given_state(calculator())
        .when(checks("future_add", json!({"a": 1})))
        .then_ok(args(json!({"a": 1, "b": 200})));
    given_state(calculator())
        .when(checks("future_add", json!({"a": 1, "b": 5})))
        .then_ok(args(json!({"a": 1, "b": 5})));
}

#[test]
fn given_add_when_argument_missing_or_unknown_then_invalid() {
    let m = given_state(calculator())
        .when(checks("add", json!({"a": 1})))
        .then_err(invalid("argument `b` (Int32) of add is missing"));
    let m = given_state(m)
        .when(checks("add", json!({"a": 1, "b": 2, "c": 3})))
        .then_err(invalid("add has no parameter c; its parameters are: a, b"));
    let m = given_state(m)
        .when(checks("error_task", json!({"x": 1})))
        .then_err(invalid(
            "error_task has no parameter x; its parameters are: ",
        ));
    given_state(m)
        .when(checks("error_task", json!({})))
        .then_ok(Map::new());
}

#[test]
fn given_union_when_string_or_int32_then_pass_else_invalid() {
    let m = calculator();
    for ok in [json!("x"), json!(7)] {
        given_state(m.clone())
            .when(checks("perform_task", json!({"name": ok.clone()})))
            .then_ok(args(json!({"name": ok})));
    }
    for bad in [
        json!(7.5),
        json!(false),
        json!([1]),
        json!({}),
        json!(4_000_000_000_i64),
    ] {
        given_state(m.clone())
            .when(checks("perform_task", json!({"name": bad.clone()})))
            .then_err(invalid(&format!(
                "argument `name` of perform_task must be a String or {INT32}; got {bad}"
            )));
    }
}

#[test]
fn given_each_base_type_when_checked_then_only_its_values_pass() {
    let m = calculator();
    let good = json!({"s": "x", "i": 9_000_000_000_i64, "f": 1.5, "b": false, "j": {"any": [1]}});
    given_state(m.clone())
        .when(checks("all", good.clone()))
        .then_ok(args(good.clone()));
    // Ints are Float64 too.
    let ints = json!({"s": "x", "i": 1, "f": 2, "b": true, "j": null});
    given_state(m.clone())
        .when(checks("all", ints.clone()))
        .then_ok(args(ints));
    for (k, bad, must_be) in [
        ("s", json!(1), "a String"),
        ("i", json!(1.5), "an Int64 (a whole number)"),
        ("i", json!(u64::MAX), "an Int64 (a whole number)"),
        ("f", json!("1"), "a Float64 (a number)"),
        ("b", json!(0), "a Bool"),
    ] {
        let mut a = args(good.clone());
        a.insert(k.into(), bad.clone());
        given_state(m.clone())
            .when(|m| m.check_args("all", &a))
            .then_err(invalid(&format!(
                "argument `{k}` of all must be {must_be}; got {bad}"
            )));
    }
}

#[test]
fn given_unknown_function_then_not_found() {
    given_state(calculator())
        .when(checks("nope", json!({})))
        .then_err(Error::NotFound(
            "the driver has no function \"nope\"; it has: add, all, error_task, future_add, perform_task, switch_input"
                .into(),
        ));
}

// --- metadata

#[test]
fn given_bad_metadata_then_invalid() {
    let not_a_type =
        "metadata.functions.f.a must be [type] or [type, default] with the type a string like \"Int32\"";
    let types = "types are String, Int32, Int64, Float64, Bool, JSON and unions like String|Int32";
    let cases = [
        (
            json!({"functions": {"f": {"a": ["Integer"]}}}),
            format!("metadata.functions.f.a: unknown parameter type \"Integer\" in \"Integer\"; {types}"),
        ),
        (json!({"functions": {"f": {"a": []}}}), not_a_type.into()),
        (json!({"functions": {"f": {"a": [5]}}}), not_a_type.into()),
        (
            json!({"functions": {"f": {"a": ["Int32", "x"]}}}),
            "metadata.functions.f.a: the default \"x\" is not a Int32".into(),
        ),
        (
            json!({"functions": {"f": {"a": ["Int32", 1, 2]}}}),
            "metadata.functions.f.a has 3 elements; it is [type] or [type, default]".into(),
        ),
        (
            json!({"functions": {"f": {"a": ["String|Nope"]}}}),
            format!("metadata.functions.f.a: unknown parameter type \"Nope\" in \"String|Nope\"; {types}"),
        ),
        (
            json!({"functions": {"f": {}}, "security": {"support": ["g"]}}),
            "metadata.security.support names \"g\", which is not one of the driver's functions"
                .into(),
        ),
    ];
    for (c, expected) in cases {
        assert_eq!(
            Metadata::parse(raw(c.clone())).err(),
            Some(Error::Invalid(expected)),
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
    for caller in [Caller::Anonymous, Caller::BadToken("x".into())] {
        given_state(calculator())
            .when(|m| authorize(m, "add", &caller))
            .then_ok(());
    }
}

#[test]
fn given_support_function_then_roles_checked() {
    let m = calculator();
    let authorizes = |caller: Caller| move |m: &Metadata| authorize(m, "error_task", &caller);
    let m = given_state(m)
        .when(authorizes(Caller::Anonymous))
        .then_err(Error::Unauthorized(
            "error_task needs role support: send `Authorization: Bearer <token>`".into(),
        ));
    let m = given_state(m)
        .when(authorizes(Caller::BadToken("bad signature".into())))
        .then_err(Error::Unauthorized(
            "error_task needs a valid token: bad signature".into(),
        ));
    let m = given_state(m)
        .when(authorizes(user(&[])))
        .then_err(Error::Forbidden(
            "jane has roles []; error_task needs support or administrator".into(),
        ));
    let m = given_state(m)
        .when(authorizes(user(&["support"])))
        .then_ok(());
    given_state(m)
        .when(authorizes(user(&["administrator"])))
        .then_ok(());
}

#[test]
fn given_administrator_function_then_support_is_forbidden() {
    let authorizes = |caller: Caller| move |m: &Metadata| authorize(m, "perform_task", &caller);
    let m = given_state(calculator())
        .when(authorizes(Caller::Anonymous))
        .then_err(Error::Unauthorized(
            "perform_task needs role administrator: send `Authorization: Bearer <token>`".into(),
        ));
    let m = given_state(m)
        .when(authorizes(user(&["support"])))
        .then_err(Error::Forbidden(
            "jane has roles [support]; perform_task needs administrator".into(),
        ));
    given_state(m)
        .when(authorizes(user(&["support", "administrator"])))
        .then_ok(());
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
    assert_eq!(
        Place::parse("Display_0", None),
        Err(invalid("`module` \"Display_0\": indexes start at 1"))
    );
    assert_eq!(
        Place::parse("Display", Some(0)),
        Err(invalid("`index` is 0; indexes start at 1"))
    );
    assert_eq!(
        Place::parse("", None),
        Err(invalid("`module` must not be empty (like \"Display_1\")"))
    );
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
    let when = given::<DriverState>([]).when(|s| register_driver(s, &reg("calc")));
    assert!(
        matches!(&when.event(), Event::DriverRegistered { driver_id, .. } if driver_id == "calc")
    );
    let registered = when.event();
    let s = when.state_after();
    // Registering again replaces.
    let s = given_state(s)
        .when(|s| register_driver(s, &reg("calc")))
        .then(registered);
    given_state(s)
        .when(|s| register_driver(s, &reg("")))
        .then_err(invalid("`driver_id` must not be empty"));
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
    given::<ModuleState>([])
        .when(|s| add_module(s, &add("m.1", "Display"), true))
        .then(Event::ModuleAdded {
            module_id: "m.1".into(),
            driver_id: "calc".into(),
            name: "Display".into(),
        });
}

#[test]
fn given_existing_module_when_add_then_conflict() {
    let s = ModuleState {
        added: Some(("calc".into(), "Display".into())),
    };
    given_state(s)
        .when(|s| add_module(s, &add("m", "Display"), true))
        .then_err(Error::Conflict(
            "module \"m\" already exists (driver \"calc\", name \"Display\")".into(),
        ));
}

#[test]
fn given_unknown_driver_when_add_then_not_found() {
    given::<ModuleState>([])
        .when(|s| add_module(s, &add("m", "Display"), false))
        .then_err(Error::NotFound("no driver \"calc\" is registered".into()));
}

#[test]
fn given_bad_name_when_add_then_invalid() {
    for bad in ["", "1Display", "Dis play", "Dis.play", &"x".repeat(65)] {
        given::<ModuleState>([])
            .when(|s| add_module(s, &add("m", bad), true))
            .then_err(invalid(&format!(
                "`name` {bad:?} must be 1 to 64 ASCII letters, digits, '_' or '-', starting with a letter (like \"Display\")"
            )));
    }
}

#[test]
fn given_known_modules_when_set_system_then_set() {
    let cmd = schemas::engine::SetSystem {
        system_id: "s".into(),
        modules: vec!["a".into(), "b".into()],
    };
    given::<SystemState>([])
        .when(|s| set_system(s, &cmd, &[]))
        .then(Event::SystemSet {
            system_id: "s".into(),
            modules: vec!["a".into(), "b".into()],
        });
}

#[test]
fn given_unknown_or_duplicate_modules_when_set_system_then_refused() {
    let cmd = schemas::engine::SetSystem {
        system_id: "s".into(),
        modules: vec!["a".into(), "b".into()],
    };
    given::<SystemState>([])
        .when(|s| set_system(s, &cmd, &["b".into()]))
        .then_err(Error::NotFound("unknown modules: b".into()));
    let dup = schemas::engine::SetSystem {
        system_id: "s".into(),
        modules: vec!["a".into(), "a".into()],
    };
    given::<SystemState>([])
        .when(|s| set_system(s, &dup, &[]))
        .then_err(invalid("module \"a\" is listed twice"));
}

#[test]
fn given_module_when_update_status_then_updated_else_not_found() {
    let cmd = schemas::engine::UpdateStatus {
        module_id: "m".into(),
        name: "power".into(),
        value: json!(true),
    };
    given::<ModuleState>([])
        .when(|s| update_status(s, &cmd))
        .then_err(Error::NotFound("no module \"m\"".into()));
    let s = ModuleState {
        added: Some(("calc".into(), "Display".into())),
    };
    let s = given_state(s)
        .when(|s| update_status(s, &cmd))
        .then(Event::StatusUpdated {
            module_id: "m".into(),
            name: "power".into(),
            value: json!(true),
        });
    let empty = schemas::engine::UpdateStatus {
        name: String::new(),
        ..cmd
    };
    given_state(s)
        .when(|s| update_status(s, &empty))
        .then_err(invalid("`name` must not be empty"));
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

/// Domain events and the wire's `EngineEvent` mirror each other: each kind (the audit record
/// aside, which is the wire's own type) round-trips through the wire type unchanged.
#[test]
fn every_domain_event_is_the_wire_event() {
    let events = [
        register_driver(&DriverState::default(), &reg("calc")).unwrap(),
        Event::ModuleAdded {
            module_id: "m".into(),
            driver_id: "calc".into(),
            name: "Calculator".into(),
        },
        Event::SystemSet {
            system_id: "s".into(),
            modules: vec!["m".into()],
        },
        Event::StatusUpdated {
            module_id: "m".into(),
            name: "power".into(),
            value: serde_json::json!({"on": true}),
        },
    ];
    for e in events {
        let v = serde_json::to_value(&e).unwrap();
        let wire: schemas::engine::EngineEvent = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(wire).unwrap(), v, "{e:?}");
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), e);
    }
}
