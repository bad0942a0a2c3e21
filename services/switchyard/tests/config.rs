//! Settings a user can get wrong stop `switchyard run` at start with a message naming them.

use std::process::Command;

#[test]
fn replicas_other_than_1_or_3_are_refused_at_start() {
    for bad in ["2", "0", "three"] {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "shop"])
            .env("SWITCHYARD_REPLICAS", bad)
            .env("NATS_URL", "nats://127.0.0.1:1")
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
            .output()
            .expect("switchyard runs");
        assert!(
            !out.status.success(),
            "SWITCHYARD_REPLICAS={bad} was accepted"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("SWITCHYARD_REPLICAS") && err.contains("1") && err.contains("3"),
            "SWITCHYARD_REPLICAS={bad}: {err}"
        );
    }
}

#[test]
fn a_nats_url_entry_that_does_not_parse_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["status"])
        .env("NATS_URL", "nats://127.0.0.1:4222,nats://b:notaport")
        .output()
        .expect("switchyard runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nats://b:notaport"), "{err}");
}
