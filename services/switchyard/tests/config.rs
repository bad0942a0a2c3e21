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

#[test]
fn every_wrong_setting_of_every_section_is_named_at_once_before_connecting() {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run"])
        .env("SWITCHYARD_SHOP_SHARDS", "0")
        .env("SWITCHYARD_DFS_REPLICAS", "99")
        .env("SWITCHYARD_ENGINE_HEARTBEAT_MS", "soon")
        .env("SWITCHYARD_DISPATCH_FACILITY", "/nonexistent/facility.json")
        .env("SWITCHYARD_PROJECTION_BATCH", "0")
        // Nothing listens here: a start that tried to connect would retry for 30 s.
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .output()
        .expect("switchyard runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for named in [
        "[runtime] SWITCHYARD_PROJECTION_BATCH",
        "[shop] SWITCHYARD_SHOP_SHARDS=0",
        "[dfs] SWITCHYARD_DFS_REPLICAS=99",
        "[engine] SWITCHYARD_ENGINE_HEARTBEAT_MS",
        "[dispatch] reading SWITCHYARD_DISPATCH_FACILITY=/nonexistent/facility.json",
    ] {
        assert!(err.contains(named), "{named} not in: {err}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}: it tried to connect first",
        started.elapsed()
    );
}
