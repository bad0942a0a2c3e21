//! A hostile client's storm: every command and query subject of the catalogue (plus the dfs
//! coordinator and chunk protocol and `engine.exec`) gets a seeded corpus of malformed bodies, one
//! at a time and then 2,000 of them at 200 in flight. Every reply is an error with a contract code
//! (never `internal`) whose status header matches (the chunk protocol answers in its original
//! `{"status": "error"}` form), a query given a valid but odd id may answer, no stream moves,
//! every service still answers `$SRV.PING`, and no file appears outside the dfs data directory.

use bytes::Bytes;
use e2e::{Client, Reply, TestEnv};
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use schemas::catalogue::Kind;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const STREAMS: [&str; 5] = ["SHOP", "DISPATCH", "ENGINE", "CLUSTER", "DFS"];
/// Field names the contract's bodies use, to aim wrong types and bad ids at.
const FIELDS: [&str; 14] = [
    "customer_id",
    "item_id",
    "cart_id",
    "ssd_id",
    "module_id",
    "system_id",
    "driver_id",
    "manager_id",
    "file_id",
    "chunk_id",
    "request_type",
    "item_count",
    "offered_price",
    "min_seq",
];

/// One malformed request: body, and whether it is sent as postcard.
#[derive(Clone)]
struct Bad {
    body: Vec<u8>,
    postcard: bool,
}

fn json_body(v: &Value) -> Bad {
    Bad {
        body: serde_json::to_vec(v).unwrap(),
        postcard: false,
    }
}

/// The corpus for one subject (seeded: the same every run).
fn corpus(rng: &mut impl Rng, subject: &str, big: bool) -> Vec<Bad> {
    let raw = |b: &[u8]| Bad {
        body: b.to_vec(),
        postcard: false,
    };
    let mut out = vec![
        // Not JSON.
        raw(b"{not json"),
        raw(b"\xff\xfe\x00garbage"),
        raw(b"{\"a\": }"),
        raw(b"{\"a\": 1"),
        // Not objects.
        raw(b"[]"),
        raw(b"[1, 2, 3]"),
        raw(b"42"),
        raw(b"\"a string\""),
        raw(b"null"),
        raw(b"true"),
        // Deep nesting.
        Bad {
            body: format!("{}1{}", "{\"a\":".repeat(5000), "}".repeat(5000)).into_bytes(),
            postcard: false,
        },
        Bad {
            body: format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            postcard: false,
        },
        // Unknown fields only.
        json_body(&json!({"zzz_unknown": 1, "another": [1, 2]})),
    ];
    let request_type = subject == "dfs.coordinator" || subject.starts_with("dfs.chunk.");
    for field in FIELDS {
        // Huge numbers and wrong types, with nothing else (so no command can be complete).
        for v in [
            json!(1e300),
            json!(u64::MAX),
            json!(-1),
            json!(1.5),
            json!([]),
            json!({"x": 1}),
            json!(true),
            json!(null),
        ] {
            out.push(json_body(&json!({ field: v })));
        }
        out.push(Bad {
            body: format!("{{\"{field}\": 123456789012345678901234567890123456789}}").into_bytes(),
            postcard: false,
        });
        // Bad ids: empty, 257 bytes, 300 bytes of NUL-bearing text, invalid UTF-8.
        for id in [String::new(), "x".repeat(257), "\0".repeat(300)] {
            out.push(json_body(&json!({ field: id })));
        }
        let mut invalid = format!("{{\"{field}\": \"").into_bytes();
        invalid.extend_from_slice(b"ok\xff\xc0\x80bad\"}");
        out.push(Bad {
            body: invalid,
            postcard: false,
        });
        // An id with NUL but a body that is incomplete (so a command still refuses it).
        out.push(json_body(&json!({ field: "nul\0id", "zzz_unknown": true })));
    }
    if request_type {
        for rt in [
            "UPLOAD_CHUNK",
            "DOWNLOAD_CHUNK",
            "COMMIT_FILE",
            "GET_FILE",
            "NOPE",
            "",
        ] {
            out.push(json_body(
                &json!({"request_type": rt, "chunk_id": "../../etc/passwd"}),
            ));
            out.push(json_body(
                &json!({"request_type": rt, "chunk_id": "a/b", "chunk_size": 3, "file_id": "\0"}),
            ));
            out.push(Bad {
                body: format!("{{\"request_type\": \"{rt}\", \"chunk_id\": \"..\", \"chunk_size\": 99}}\n\nabc").into_bytes(),
                postcard: false,
            });
        }
    }
    // Random postcard bytes.
    for _ in 0..12 {
        let n = rng.random_range(0..64);
        let mut b = vec![0u8; n];
        rng.fill_bytes(&mut b);
        out.push(Bad {
            body: b,
            postcard: true,
        });
    }
    // Random bytes as JSON.
    for _ in 0..4 {
        let n = rng.random_range(1..256);
        let mut b = vec![0u8; n];
        rng.fill_bytes(&mut b);
        out.push(raw(&b));
    }
    if big {
        // 2 MB bodies: beyond every subject's limit.
        let mut b = b"{\"customer_id\": \"".to_vec();
        b.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
        b.extend_from_slice(b"\"}");
        out.push(raw(&b));
        out.push(Bad {
            body: vec![0u8; 2 * 1024 * 1024],
            postcard: true,
        });
    }
    out
}

async fn send(c: &Client, subject: &str, bad: &Bad) -> anyhow::Result<Reply> {
    let mut h = async_nats::HeaderMap::new();
    if bad.postcard {
        h.insert("Content-Type", "application/postcard");
    }
    c.request_raw(subject, Some(h), Bytes::from(bad.body.clone()))
        .await
}

/// The contract's error codes and their statuses.
fn status_of(code: &str) -> Option<u16> {
    Some(match code {
        "invalid_request" => 400,
        "unauthorized" => 401,
        "forbidden" => 403,
        "not_found" => 404,
        "conflict" => 409,
        "payload_too_large" => 413,
        "unavailable" => 503,
        "driver_error" => 502,
        _ => return None,
    })
}

/// Checks one reply; returns its code (`ok` for a success a query may give).
fn check(subject: &str, kind: Kind, bad: &Bad, r: &Reply) -> String {
    let what = || {
        format!(
            "{subject} <- {:?}: {}",
            String::from_utf8_lossy(&bad.body[..bad.body.len().min(120)]),
            String::from_utf8_lossy(&r.raw[..r.raw.len().min(300)])
        )
    };
    if subject.starts_with("dfs.chunk.") || subject.starts_with("dfs.put.") {
        // The original chunk protocol: `{"status": "error", "message"}` (JSON, maybe framed).
        let head = r.raw.split(|b| *b == b'\n').next().unwrap_or_default();
        let v: Value = serde_json::from_slice(head).unwrap_or(Value::Null);
        if v["status"] == "error" {
            assert!(
                v["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{}",
                what()
            );
            return "chunk_error".into();
        }
    }
    match r.code() {
        Some(code) => {
            assert_ne!(code, "internal", "{}", what());
            let status =
                status_of(code).unwrap_or_else(|| panic!("not a contract code: {}", what()));
            assert_eq!(r.status, Some(status), "status header: {}", what());
            assert!(
                r.error_header.as_deref().is_some_and(|m| !m.is_empty()),
                "{}",
                what()
            );
            code.to_string()
        }
        None if bad.postcard && r.status.is_some() => {
            // A postcard error reply: its header carries the status.
            let s = r.status.unwrap();
            assert!(s != 500, "internal: {}", what());
            format!("postcard_{s}")
        }
        None => {
            assert!(
                kind == Kind::Query,
                "a malformed command succeeded: {}",
                what()
            );
            assert!(r.status.is_none(), "{}", what());
            "ok".into()
        }
    }
}

async fn last_seqs(c: &Client) -> BTreeMap<&'static str, u64> {
    let js = async_nats::jetstream::new(c.nats.clone());
    let mut out = BTreeMap::new();
    for s in STREAMS {
        let mut stream = js.get_stream(s).await.unwrap();
        out.insert(s, stream.info().await.unwrap().state.last_sequence);
    }
    out
}

/// Names of the micro services answering `$SRV.PING` (each once per process).
async fn ping(c: &Client) -> BTreeSet<String> {
    let inbox = c.nats.new_inbox();
    let mut sub = c.nats.subscribe(inbox.clone()).await.unwrap();
    c.nats
        .publish_with_reply("$SRV.PING", inbox, Bytes::new())
        .await
        .unwrap();
    let mut names = BTreeSet::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(1500), sub.next()).await {
        let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        if let Some(n) = v["name"].as_str() {
            names.insert(n.to_string());
        }
    }
    names
}

fn files_under(root: &Path, skip: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.starts_with(skip) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_on_every_subject_get_contract_errors_and_change_nothing(
) -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let root = tempfile::tempdir()?;
    // Deep inside the watched directory, so that a path escaping it by a few `..` lands in view.
    let dfs_dir = root.path().join("a/b/c/d/dfs");
    let mut config = switchyard::Configuration::with_runtime(env.config())?;
    config.dfs.dir = dfs_dir.to_string_lossy().to_string();
    let _svc = e2e::Services::start_configured(config, &[]).await?;
    let c = env.client().await?;
    let servers = c
        .request(
            "dfs.coordinator",
            &json!({"request_type": "GET_CHUNK_SERVERS"}),
        )
        .await?
        .ok();
    let server = servers["chunk_servers"][0]["chnk_srv_id"]
        .as_str()
        .expect("a chunk server")
        .to_string();

    let mut subjects: Vec<(String, Kind)> = schemas::catalogue::all()
        .into_iter()
        .filter(|d| matches!(d.kind, Kind::Command | Kind::Query))
        .filter(|d| !d.subject.starts_with("engine.instance."))
        .map(|d| {
            let s = d
                .subject
                .replace("{server_id}[.{server_id}...]", &server)
                .replace("{server_id}", &server);
            (s, d.kind)
        })
        .collect();
    for s in ["dfs.coordinator", "engine.exec"] {
        if !subjects.iter().any(|(x, _)| x == s) {
            subjects.push((s.to_string(), Kind::Command));
        }
    }
    assert!(subjects.len() >= 40, "subjects: {}", subjects.len());
    assert!(
        subjects.iter().all(|(s, _)| !s.contains('{')),
        "{subjects:?}"
    );

    let files_before = files_under(root.path(), &dfs_dir);
    let seqs_before = last_seqs(&c).await;
    let services_before = ping(&c).await;
    assert!(services_before.len() >= 5, "{services_before:?}");

    // One at a time: every subject, every body.
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut all = Vec::new();
    for (subject, kind) in &subjects {
        for bad in corpus(&mut rng, subject, true) {
            let r = send(&c, subject, &bad).await?;
            *codes.entry(check(subject, *kind, &bad, &r)).or_default() += 1;
            all.push((subject.clone(), *kind, bad));
        }
    }
    let sent_serially = all.len();

    // 2,000 of them (no 2 MB bodies) at 200 in flight.
    let small: Vec<_> = all
        .iter()
        .filter(|(_, _, b)| b.body.len() < 1_000_000)
        .collect();
    let picks: Vec<_> = (0..2000)
        .map(|_| small[rng.random_range(0..small.len())])
        .collect();
    let results: Vec<_> = futures::stream::iter(picks.into_iter().map(|(s, k, b)| {
        let c = c.clone();
        async move { (s, *k, b, send(&c, s, b).await) }
    }))
    .buffer_unordered(200)
    .collect()
    .await;
    for (s, k, b, r) in results {
        let r = r.unwrap_or_else(|e| panic!("{s}: no reply under load: {e}"));
        let code = check(s, k, b, &r);
        *codes.entry(format!("burst_{code}")).or_default() += 1;
    }
    eprintln!(
        "storm: {sent_serially} serial + 2000 concurrent over {} subjects: {codes:?}",
        subjects.len()
    );

    assert_eq!(last_seqs(&c).await, seqs_before, "no stream moved");
    assert_eq!(
        ping(&c).await,
        services_before,
        "every service still answers $SRV.PING"
    );
    let files_after = files_under(root.path(), &dfs_dir);
    assert_eq!(
        files_after, files_before,
        "no file appeared outside the dfs data directory"
    );
    Ok(())
}

/// A flood beyond a service's in-flight bound is answered `unavailable` ("busy") at once, while
/// the requests within the bound are still running (here: queries waiting for a `min_seq` that never
/// comes, 5 s each), instead of queueing without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_bound_are_answered_unavailable_at_once() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let total = runtime::service::MAX_IN_FLIGHT + 600;
    let body = Bytes::from(serde_json::to_vec(
        &json!({"min_seq": 1_000_000_000_000u64}),
    )?);
    let started = tokio::time::Instant::now();
    let replies: Vec<(Duration, Reply)> = futures::stream::iter((0..total).map(|_| {
        let c = c.clone();
        let body = body.clone();
        async move {
            let r = c
                .request_raw("shop.query.dht-stats", None, body)
                .await
                .unwrap();
            (started.elapsed(), r)
        }
    }))
    .buffer_unordered(total)
    .collect()
    .await;
    let is_busy = |r: &Reply| {
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("busy"))
    };
    type Timed<'a> = Vec<&'a (Duration, Reply)>;
    let (busy, waited): (Timed, Timed) = replies.iter().partition(|(_, r)| is_busy(r));
    assert!(
        busy.len() >= total - runtime::service::MAX_IN_FLIGHT,
        "{} of {total} answered busy",
        busy.len()
    );
    for (_, r) in &busy {
        r.assert_error("unavailable", 503);
    }
    for (_, r) in &waited {
        r.assert_error("unavailable", 503);
    }
    // Every busy reply came before the first request within the bound had finished its wait.
    let first_waited = waited.iter().map(|(t, _)| *t).min().unwrap();
    let last_busy = busy.iter().map(|(t, _)| *t).max().unwrap();
    assert!(
        last_busy < first_waited,
        "busy replies ({last_busy:?}) must not wait behind the running ones ({first_waited:?})"
    );
    Ok(())
}
