//! The binary runs with mimalloc keeping freed memory (`runtime::allocator`), unless the user chose.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `MIMALLOC_PURGE_DELAY` as the running process sees it, waited for up to 10 s.
fn purge_delay_of(given: Option<&str>) -> Option<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    // Nothing listens on port 1: the process keeps retrying, long enough to be looked at.
    cmd.args(["run", "shop"])
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env_remove(runtime::allocator::PURGE_DELAY_VAR)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(v) = given {
        cmd.env(runtime::allocator::PURGE_DELAY_VAR, v);
    }
    let mut child = cmd.spawn().expect("switchyard starts");
    let environ = format!("/proc/{}/environ", child.id());
    let prefix = format!("{}=", runtime::allocator::PURGE_DELAY_VAR);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = None;
    while Instant::now() < deadline && seen.is_none() {
        seen = std::fs::read(&environ).ok().and_then(|env| {
            env.split(|b| *b == 0)
                .filter_map(|kv| std::str::from_utf8(kv).ok())
                .find_map(|kv| kv.strip_prefix(&prefix).map(str::to_string))
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

#[test]
fn freed_memory_is_kept_for_reuse_unless_the_user_set_the_purge_delay() {
    assert_eq!(purge_delay_of(None).as_deref(), Some("-1"));
    assert_eq!(purge_delay_of(Some("1000")).as_deref(), Some("1000"));
}
