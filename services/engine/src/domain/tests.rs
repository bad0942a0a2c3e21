//! The engine's rules.

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
    let good = json!({"s": "x", "i": 9_000_000_000_i64, "f": 1.5, "b": false, "j": {"any": [1]}});
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
