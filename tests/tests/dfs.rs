//! dfs end to end (contract section 7), against a real nats-server, PostgreSQL and real files:
//! the coordinator and the chunk servers are talked to only through NATS (and the gateway through
//! HTTP), as a client would; the client library is the one `switchyard dfs` uses.

use bytes::Bytes;
use dfs::client::{self, PutOptions};
use dfs::domain::{encode_frame, sha256_hex};
use e2e::{eventually, Client, Services, TestEnv};
use rand::RngCore;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Polls `check` every 50 ms until it holds or `timeout` passes.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

struct World {
    env: TestEnv,
    dir: tempfile::TempDir,
    services: Services,
    c: Client,
}

impl World {
    async fn start(servers: u32, with_gateway: bool) -> anyhow::Result<Self> {
        let env = TestEnv::new().await?;
        let dir = tempfile::tempdir()?;
        let mut config = switchyard::Configuration::with_runtime(env.config())?;
        config.dfs.dir = dir.path().join("data").to_string_lossy().to_string();
        config.dfs.servers = servers;
        let names: &[&str] = if with_gateway {
            &["dfs", "gateway"]
        } else {
            &["dfs"]
        };
        let services = Services::start_configured(config, names).await?;
        let c = env.client().await?;
        Ok(Self {
            env,
            dir,
            services,
            c,
        })
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn opts(&self) -> PutOptions {
        PutOptions {
            metadata_dir: self.dir.path().to_path_buf(),
            ..PutOptions::default()
        }
    }

    /// The data directory of the in-process chunk server with this id.
    fn server_dir(&self, id: &str) -> PathBuf {
        for entry in std::fs::read_dir(self.dir.path().join("data"))
            .unwrap()
            .flatten()
        {
            if std::fs::read_to_string(entry.path().join("SERVER_ID"))
                .unwrap_or_default()
                .trim()
                == id
            {
                return entry.path();
            }
        }
        panic!("no directory for server {id}");
    }

    async fn coord(&self, body: Value) -> e2e::Reply {
        self.c.request("dfs.coordinator", &body).await.unwrap()
    }

    async fn locations(&self, file_id: &str) -> serde_json::Map<String, Value> {
        let r = self
            .coord(json!({"request_type": "GET_CHUNK_LOCATIONS", "file_id": file_id}))
            .await
            .ok();
        r["chunk_locations"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    async fn servers(&self) -> Vec<String> {
        let r = self
            .coord(json!({"request_type": "GET_CHUNK_SERVERS"}))
            .await
            .ok();
        r["chunk_servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["chnk_srv_id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Raw request to a chunk server; returns the JSON header and the bytes after `\n\n`.
async fn chunk_request(c: &Client, server: &str, payload: Vec<u8>) -> (Value, Bytes) {
    let msg = c
        .nats
        .request(format!("dfs.chunk.{server}"), payload.into())
        .await
        .unwrap();
    let f = dfs::domain::split_frame(&msg.payload, false).unwrap();
    let body_at = msg.payload.len() - f.body.len();
    (f.header, msg.payload.slice(body_at..))
}

fn upload_header(chunk_id: &str, size: u64, sha: &str) -> Value {
    json!({"request_type": "UPLOAD_CHUNK", "chunk_id": chunk_id, "chunk_index": 0, "chunk_size": size,
           "user_id": "tester", "file_id": "f", "sha256": sha})
}

fn assert_original_error(reply: &Value, contains: &str) {
    assert_eq!(reply["status"], "error", "reply: {reply}");
    let msg = reply["message"].as_str().unwrap_or_default();
    assert!(
        msg.to_lowercase().contains(contains),
        "message {msg:?} should mention {contains:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_get_returns_identical_bytes() -> anyhow::Result<()> {
    let w = World::start(3, false).await?;
    // Discovery under the contract's names.
    for name in ["dfs-coordinator", "dfs-chunk"] {
        let r =
            w.c.nats
                .request(format!("$SRV.PING.{name}"), Bytes::new())
                .await?;
        let v: Value = serde_json::from_slice(&r.payload)?;
        assert_eq!(v["name"], name);
    }
    let servers = w.servers().await;
    assert_eq!(
        servers.len(),
        3,
        "three chunk servers by default: {servers:?}"
    );
    let id = w.coord(json!({"request_type": "GET_CLIENT_ID"})).await.ok();
    assert!(!id["client_id"].as_str().unwrap().is_empty());
    let r = w
        .coord(json!({"request_type": "GET_CHUNK_SERVERS"}))
        .await
        .ok();
    let first = &r["chunk_servers"][0];
    assert_eq!(
        first["chnk_srv_addr"],
        format!("dfs.chunk.{}", first["chnk_srv_id"].as_str().unwrap())
    );
    assert!(first["chnk_srv_port"].is_null());

    let one_chunk = 64 * 1024;
    let cases: Vec<(&str, Vec<u8>, Option<u64>)> = vec![
        ("empty.bin", Vec::new(), None),
        ("one.bin", vec![42], None),
        ("exact.bin", random_bytes(one_chunk), Some(one_chunk as u64)),
        ("big.mp4", random_bytes(50 * 1024 * 1024), None),
    ];
    for (name, bytes, chunk_size) in cases {
        let path = w.file(name, &bytes);
        let opts = PutOptions {
            chunk_size,
            ..w.opts()
        };
        let file_id = client::put(&w.c.nats, &path, &opts).await?;
        let out = w.dir.path().join(format!("{name}.out"));
        let info = client::get(&w.c.nats, &file_id, &out, false).await?;
        let got = std::fs::read(&out)?;
        assert!(
            got == bytes,
            "{name}: the bytes differ ({} vs {})",
            got.len(),
            bytes.len()
        );
        assert_eq!(info.size, bytes.len() as u64);
        assert_eq!(info.sha256, sha256_hex(&bytes));
        // The metadata file lists every chunk, in order.
        let meta: Vec<Value> = serde_json::from_slice(&std::fs::read(
            w.dir.path().join(format!("{file_id}_metadata.json")),
        )?)?;
        assert_eq!(meta.len(), info.chunks.len(), "{name}");
        for (i, m) in meta.iter().enumerate() {
            assert_eq!(m["chunk_index"], i);
            assert_eq!(m["chunk_id"], info.chunks[i].chunk_id);
        }
        if name == "exact.bin" {
            assert_eq!(info.chunks.len(), 1);
        }
        if name == "big.mp4" {
            assert!(info.chunks.len() > 1);
        }
        // Every chunk is on three live servers.
        let locs = w.locations(&file_id).await;
        assert_eq!(locs.len(), info.chunks.len());
        for (chunk, servers) in &locs {
            assert_eq!(servers.as_array().unwrap().len(), 3, "chunk {chunk}");
        }
    }
    let files = w.coord(json!({"request_type": "LIST_FILES"})).await.ok();
    assert_eq!(files["files"].as_array().unwrap().len(), 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_file_and_collects_its_chunks() -> anyhow::Result<()> {
    let w = World::start(3, false).await?;
    let bytes = random_bytes(300_000);
    let path = w.file("doomed.bin", &bytes);
    let file_id = client::put(
        &w.c.nats,
        &path,
        &PutOptions {
            chunk_size: Some(100_000),
            ..w.opts()
        },
    )
    .await?;
    let info = client::file_info(&w.c.nats, &file_id).await?;
    let servers = w.servers().await;
    let on_disk = |w: &World| {
        let mut n = 0;
        for s in &servers {
            for c in &info.chunks {
                n += usize::from(w.server_dir(s).join("chunks").join(&c.chunk_id).exists());
            }
        }
        n
    };
    assert_eq!(on_disk(&w), 9);
    let r = w
        .coord(json!({"request_type": "DELETE_FILE", "file_id": file_id}))
        .await
        .ok();
    assert_eq!(r["deleted"], true);
    assert!(r["seq"].as_u64().unwrap() > 0);
    w.coord(json!({"request_type": "GET_FILE", "file_id": file_id, "min_seq": r["seq"]}))
        .await
        .assert_error("not_found", 404);
    assert!(w.locations(&file_id).await.is_empty());
    w.coord(json!({"request_type": "DELETE_FILE", "file_id": file_id}))
        .await
        .assert_error("not_found", 404);
    let files = w.coord(json!({"request_type": "LIST_FILES"})).await.ok();
    assert!(files["files"].as_array().unwrap().is_empty());
    eventually(
        Duration::from_secs(15),
        "the deleted file's chunks are garbage collected",
        || async { on_disk(&w) == 0 },
    )
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_chunk_server_rereplicates_its_chunks() -> anyhow::Result<()> {
    let w = World::start(0, false).await?;
    let mut servers = Vec::new();
    for n in 0..4 {
        let opts = dfs::ChunkServerOptions {
            dir: w.dir.path().join(format!("ext-{n}")),
            id: Some(format!("ext{n}")),
            settings: dfs::Settings::default(),
        };
        servers.push(dfs::chunk_server::connect(&w.env.nats.url(), opts).await?);
    }
    eventually(Duration::from_secs(10), "four servers are live", || async {
        w.servers().await.len() == 4
    })
    .await;
    let bytes = random_bytes(2 * 1024 * 1024 + 17);
    let path = w.file("video.mp4", &bytes);
    let file_id = client::put(
        &w.c.nats,
        &path,
        &PutOptions {
            chunk_size: Some(256 * 1024),
            replicas: Some(3),
            ..w.opts()
        },
    )
    .await?;
    // Kill a server that holds chunks.
    let locs = w.locations(&file_id).await;
    let victim = locs.values().next().unwrap()[0]["chnk_srv_id"]
        .as_str()
        .unwrap()
        .to_string();
    let pos = servers.iter().position(|s| s.id() == victim).unwrap();
    servers.remove(pos).stop().await;
    // Reads work at once: the dead replica is skipped.
    let out = w.dir.path().join("out1");
    client::get(&w.c.nats, &file_id, &out, false).await?;
    assert!(std::fs::read(&out)? == bytes);
    // Within the heartbeat window (5 s) plus a repair round, every chunk is back at 3 live replicas.
    eventually(
        Duration::from_secs(30),
        "every chunk back at 3 replicas without the dead server",
        || async {
            let locs = w.locations(&file_id).await;
            !locs.is_empty()
                && locs.values().all(|v| {
                    let v = v.as_array().unwrap();
                    v.len() == 3 && v.iter().all(|s| s["chnk_srv_id"] != victim.as_str())
                })
        },
    )
    .await;
    assert!(
        !w.servers().await.contains(&victim),
        "the dead server is not listed"
    );
    let out = w.dir.path().join("out2");
    client::get(&w.c.nats, &file_id, &out, false).await?;
    assert!(std::fs::read(&out)? == bytes);
    // The server comes back with its old replicas: they are reconciled, surplus ones removed, so
    // every chunk ends with exactly 3 copies on disk across the 4 servers.
    let n = victim.trim_start_matches("ext").parse::<usize>()?;
    let opts = dfs::ChunkServerOptions {
        dir: w.dir.path().join(format!("ext-{n}")),
        id: Some(victim.clone()),
        settings: dfs::Settings::default(),
    };
    servers.push(dfs::chunk_server::connect(&w.env.nats.url(), opts).await?);
    let chunk_count = w.locations(&file_id).await.len();
    let files_on_disk = || {
        (0..4)
            .map(|n| {
                std::fs::read_dir(w.dir.path().join(format!("ext-{n}")).join("chunks"))
                    .map(|d| d.count())
                    .unwrap_or(0)
            })
            .sum::<usize>()
    };
    eventually(
        Duration::from_secs(20),
        "the returning server is reconciled: 3 copies of every chunk",
        || async {
            let locs = w.locations(&file_id).await;
            w.servers().await.len() == 4
                && locs.values().all(|v| v.as_array().unwrap().len() == 3)
                && files_on_disk() == 3 * chunk_count
        },
    )
    .await;
    let out = w.dir.path().join("out3");
    client::get(&w.c.nats, &file_id, &out, false).await?;
    assert!(std::fs::read(&out)? == bytes);
    for s in servers {
        s.stop().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_never_served_and_the_replica_is_replaced() -> anyhow::Result<()> {
    let w = World::start(3, false).await?;
    let bytes = random_bytes(500_000);
    let path = w.file("flip.bin", &bytes);
    let file_id = client::put(
        &w.c.nats,
        &path,
        &PutOptions {
            chunk_size: Some(200_000),
            ..w.opts()
        },
    )
    .await?;
    let info = client::file_info(&w.c.nats, &file_id).await?;
    let chunk = info.chunks[1].clone();
    let server = w.servers().await[0].clone();
    let on_disk = w.server_dir(&server).join("chunks").join(&chunk.chunk_id);
    let mut raw = std::fs::read(&on_disk)?;
    let at = raw.len() - 1000;
    raw[at] ^= 0x01;
    std::fs::write(&on_disk, &raw)?;
    // The bad replica is refused, never served.
    let req =
        serde_json::to_vec(&json!({"request_type": "DOWNLOAD_CHUNK", "chunk_id": chunk.chunk_id}))?;
    let (h, body) = chunk_request(&w.c, &server, req.clone()).await;
    assert_original_error(&h, "corrupt");
    assert!(body.is_empty());
    // The file still reads right, from the other replicas.
    let out = w.dir.path().join("flip.out");
    client::get(&w.c.nats, &file_id, &out, false).await?;
    assert!(std::fs::read(&out)? == bytes);
    // The bad replica is replaced: three good replicas again, including a fresh copy on that server.
    eventually(
        Duration::from_secs(20),
        "the corrupt replica is replaced",
        || async {
            let locs = w.locations(&file_id).await;
            let n = locs
                .get(&chunk.chunk_id)
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0);
            if n != 3 {
                return false;
            }
            let (h, body) = chunk_request(&w.c, &server, req.clone()).await;
            h["status"] == "success" && sha256_hex(&body) == chunk.sha256
        },
    )
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_stores_nothing_and_servers_keep_answering() -> anyhow::Result<()> {
    let w = World::start(3, false).await?;
    let server = w.servers().await[0].clone();
    let chunks_dir = w.server_dir(&server).join("chunks");
    let events_before = w.c.stream_len("DFS").await?;
    let good = b"hello, chunk".to_vec();
    let sha = sha256_hex(&good);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dot-dot chunk id",
            encode_frame(&upload_header("../escape", good.len() as u64, &sha), &good),
            "chunk_id",
        ),
        (
            "slash chunk id",
            encode_frame(&upload_header("a/b", good.len() as u64, &sha), &good),
            "chunk_id",
        ),
        (
            "size mismatch",
            encode_frame(&upload_header("c1", good.len() as u64 + 5, &sha), &good),
            "size mismatch",
        ),
        (
            "checksum mismatch",
            encode_frame(
                &upload_header("c2", good.len() as u64, &sha256_hex(b"other")),
                &good,
            ),
            "checksum mismatch",
        ),
        (
            "no delimiter",
            serde_json::to_vec(&upload_header("c3", good.len() as u64, &sha))?,
            "truncated",
        ),
        (
            "truncated header",
            b"{\"request_type\": \"UPLOAD_CH".to_vec(),
            "truncated",
        ),
        (
            "oversized chunk",
            encode_frame(&upload_header("c4", 9_000_000, &sha), &good),
            "largest chunk",
        ),
        ("not json", b"\x00\x01garbage\n\nxx".to_vec(), "json"),
        (
            "unknown request",
            serde_json::to_vec(&json!({"request_type": "FORMAT_DISK"}))?,
            "unknown request_type",
        ),
        (
            "unknown chunk",
            serde_json::to_vec(&json!({"request_type": "DOWNLOAD_CHUNK", "chunk_id": "nope"}))?,
            "no chunk",
        ),
        (
            "download escape",
            serde_json::to_vec(
                &json!({"request_type": "DOWNLOAD_CHUNK", "chunk_id": "../../etc/passwd"}),
            )?,
            "chunk_id",
        ),
    ];
    for (what, payload, mention) in cases {
        let (h, body) = chunk_request(&w.c, &server, payload).await;
        assert_original_error(&h, mention);
        assert!(body.is_empty(), "{what}");
    }
    // A real oversized message, as large as NATS lets through: refused, not stored.
    let big = vec![7u8; 8 * 1024 * 1024 - 1024];
    let (h, _) = chunk_request(
        &w.c,
        &server,
        encode_frame(
            &upload_header("c5", big.len() as u64, &sha256_hex(&big)),
            &big,
        ),
    )
    .await;
    assert_original_error(&h, "largest chunk");
    assert_eq!(std::fs::read_dir(&chunks_dir)?.count(), 0, "nothing stored");
    assert!(!w.dir.path().join("data").join("escape").exists());
    assert_eq!(
        w.c.stream_len("DFS").await?,
        events_before,
        "no event appended"
    );
    // The server still answers, in the original shapes.
    let (h, _) = chunk_request(
        &w.c,
        &server,
        encode_frame(&upload_header("ok_1", good.len() as u64, &sha), &good),
    )
    .await;
    assert_eq!(h, json!({"status": "success"}));
    let (h, body) = chunk_request(
        &w.c,
        &server,
        serde_json::to_vec(&json!({"request_type": "DOWNLOAD_CHUNK", "chunk_id": "ok_1"}))?,
    )
    .await;
    assert_eq!(
        h,
        json!({"status": "success", "chunk_index": 0, "chunk_size": good.len(), "sha256": sha})
    );
    assert_eq!(&body[..], &good[..]);

    // A chunk id names one content: other bytes under the same id are refused, the first kept.
    let before = w.c.stream_len("DFS").await?;
    let other = b"other bytes".to_vec();
    let (h, _) = chunk_request(
        &w.c,
        &server,
        encode_frame(
            &upload_header("ok_1", other.len() as u64, &sha256_hex(&other)),
            &other,
        ),
    )
    .await;
    assert_original_error(&h, "other content");
    let (_, body) = chunk_request(
        &w.c,
        &server,
        serde_json::to_vec(&json!({"request_type": "DOWNLOAD_CHUNK", "chunk_id": "ok_1"}))?,
    )
    .await;
    assert_eq!(&body[..], &good[..]);
    assert_eq!(w.c.stream_len("DFS").await?, before, "no event appended");

    // The coordinator: contract errors, nothing appended, still answering.
    let before = w.c.stream_len("DFS").await?;
    w.coord(json!({"request_type": "GET_FILE", "file_id": "unknown"}))
        .await
        .assert_error("not_found", 404);
    assert_eq!(
        w.coord(json!({"request_type": "GET_CHUNK_LOCATIONS", "file_id": "unknown"}))
            .await
            .ok(),
        json!({"chunk_locations": {}})
    );
    w.coord(json!({"request_type": "DELETE_FILE", "file_id": "unknown"}))
        .await
        .assert_error("not_found", 404);
    w.coord(json!({"request_type": "NO_SUCH_THING"}))
        .await
        .assert_error("invalid_request", 400);
    w.coord(json!({"request_type": "GET_FILE"}))
        .await
        .assert_error("invalid_request", 400);
    w.c.request_raw("dfs.coordinator", None, Bytes::from_static(b"{not json"))
        .await?
        .assert_error("invalid_request", 400);
    let commit = |chunk_sha: &str, size: u64| {
        json!({"request_type": "COMMIT_FILE", "file_id": "f1", "name": "x.bin", "size": size, "sha256": sha,
               "chunks": [{"chunk_id": "ok_1", "chunk_index": 0, "size": size, "sha256": chunk_sha}]})
    };
    w.coord(commit(&sha256_hex(b"nope"), good.len() as u64))
        .await
        .assert_error("conflict", 409);
    w.coord(json!({"request_type": "COMMIT_FILE", "file_id": "f1", "name": "x.bin", "size": 1, "sha256": sha, "chunks": []}))
        .await
        .assert_error("invalid_request", 400);
    assert_eq!(w.c.stream_len("DFS").await?, before, "no event appended");
    let err = client::get(&w.c.nats, "unknown", &w.dir.path().join("x"), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not_found"), "{err}");
    // A valid commit of the chunk stored above still works.
    let r = w.coord(commit(&sha, good.len() as u64)).await.ok();
    assert!(r["seq"].as_u64().unwrap() > before);
    let out = w.dir.path().join("f1.out");
    client::get(&w.c.nats, "f1", &out, false).await?;
    assert_eq!(std::fs::read(&out)?, good);
    Ok(())
}

async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let client = reqwest::Client::new();
    let mut req = client.get(format!("http://{addr}{path}"));
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_range_requests_return_exact_bytes() -> anyhow::Result<()> {
    let w = World::start(3, true).await?;
    let addr = w.services.http_addr.expect("gateway address");
    let len = 1_000_000usize;
    let bytes = random_bytes(len);
    let path = w.file("clip.mp4", &bytes);
    let file_id = client::put(
        &w.c.nats,
        &path,
        &PutOptions {
            chunk_size: Some(100_000),
            ..w.opts()
        },
    )
    .await?;
    let url = format!("/files/{file_id}");

    let (status, h, body) = http_get(addr, &url, None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "video/mp4");
    assert_eq!(header(&h, "accept-ranges"), "bytes");
    assert!(body == bytes, "the whole file");

    let cases: Vec<(&str, usize, usize)> = vec![
        ("bytes=0-99", 0, 99),                   // first
        ("bytes=99990-200010", 99_990, 200_010), // middle, across chunk boundaries
        ("bytes=999000-", 999_000, len - 1),     // last
        ("bytes=-500", len - 500, len - 1),      // suffix
        ("bytes=123456-123456", 123_456, 123_456),
        ("bytes=999990-2000000", 999_990, len - 1),
    ];
    for (range, start, end) in cases {
        let (status, h, body) = http_get(addr, &url, Some(range)).await;
        assert_eq!(status, 206, "{range}");
        assert_eq!(
            header(&h, "content-range"),
            format!("bytes {start}-{end}/{len}"),
            "{range}"
        );
        assert_eq!(
            header(&h, "content-length"),
            (end - start + 1).to_string(),
            "{range}"
        );
        assert!(body == bytes[start..=end], "{range}: exact bytes");
    }
    let (status, h, _) = http_get(addr, &url, Some("bytes=1000000-")).await;
    assert_eq!(status, 416);
    assert_eq!(header(&h, "content-range"), format!("bytes */{len}"));
    let (status, _, _) = http_get(addr, "/files/no-such-file", None).await;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loses_nothing() -> anyhow::Result<()> {
    let mut w = World::start(3, false).await?;
    let bytes = random_bytes(700_000);
    let path = w.file("keep.bin", &bytes);
    let file_id = client::put(
        &w.c.nats,
        &path,
        &PutOptions {
            chunk_size: Some(300_000),
            ..w.opts()
        },
    )
    .await?;
    let servers = w.servers().await;
    w.services.kill();
    let mut config = switchyard::Configuration::with_runtime(w.env.config())?;
    config.dfs.dir = w.dir.path().join("data").to_string_lossy().to_string();
    w.services = Services::start_configured(config, &["dfs"]).await?;
    let mut again = w.servers().await;
    again.sort();
    let mut before = servers.clone();
    before.sort();
    assert_eq!(again, before, "the same servers, by the ids kept on disk");
    let files = w.coord(json!({"request_type": "LIST_FILES"})).await.ok();
    assert_eq!(files["files"][0]["file_id"], file_id.as_str());
    let out = w.dir.path().join("keep.out");
    client::get(&w.c.nats, &file_id, &out, false).await?;
    assert!(std::fs::read(&out)? == bytes);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_puts_gets_lists_and_removes() -> anyhow::Result<()> {
    let w = World::start(3, false).await?;
    let dir = w.dir.path();
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
        let nats = w.c.nats.clone();
        async move { dfs::client::run(Some(&nats), args, dir, false).await }
    };
    let bytes = random_bytes(123_457);
    let path = w.file("cli.bin", &bytes);
    let path = path.to_str().unwrap();
    let id = run(&["put", path, "--replicas", "2", "--chunk-size", "50000"])
        .await?
        .trim()
        .to_string();
    assert!(dir.join(format!("{id}_metadata.json")).exists());
    let info = client::file_info(&w.c.nats, &id).await?;
    assert_eq!((info.chunks.len(), info.replicas), (3, 2));
    for servers in w.locations(&id).await.values() {
        assert_eq!(servers.as_array().unwrap().len(), 2, "--replicas 2");
    }
    assert!(run(&["ls"]).await?.contains(&id));
    let out = dir.join("cli.out");
    run(&["get", &id, "-o", out.to_str().unwrap()]).await?;
    assert!(std::fs::read(&out)? == bytes);
    assert!(run(&["rm", &id]).await?.contains(&id));
    assert!(!run(&["ls"]).await?.contains(&id));
    let too_big = run(&["put", path, "--chunk-size", "9000000"])
        .await
        .unwrap_err();
    assert!(too_big.to_string().contains("max_payload"), "{too_big}");
    assert!(
        run(&["get", &id, "-o", out.to_str().unwrap()])
            .await
            .is_err(),
        "a removed file is gone"
    );
    assert!(run(&["frobnicate"]).await.is_err());
    Ok(())
}

/// The chunk ids held on server `id`, as its `LIST_CHUNKS` says.
async fn held(c: &Client, id: &str) -> Vec<String> {
    let (r, _) = chunk_request(
        c,
        id,
        serde_json::to_vec(&json!({"request_type": "LIST_CHUNKS"})).unwrap(),
    )
    .await;
    r["chunks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            c.as_str()
                .or_else(|| c["chunk_id"].as_str())
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fanned_out_publish_stores_a_chunk_on_every_named_server() -> anyhow::Result<()> {
    let w = World::start(3, false).await?;
    let servers = w.servers().await;
    let ids: Vec<&str> = servers.iter().map(String::as_str).collect();
    let bytes = random_bytes(100_000);
    let header = upload_header("fanned_0", bytes.len() as u64, &sha256_hex(&bytes));
    let fanout = dfs::fanout::Fanout::new(&w.c.nats)
        .await
        .map_err(anyhow::Error::msg)?;
    let outcome = fanout
        .upload(
            &ids,
            encode_frame(&header, &bytes).into(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(outcome.len(), 3, "every named server answers: {outcome:?}");
    assert!(outcome.values().all(Result::is_ok), "{outcome:?}");
    for id in &ids {
        assert!(
            held(&w.c, id).await.contains(&"fanned_0".to_string()),
            "{id} holds the chunk"
        );
        let (r, got) = chunk_request(
            &w.c,
            id,
            serde_json::to_vec(&json!({"request_type": "DOWNLOAD_CHUNK", "chunk_id": "fanned_0"}))?,
        )
        .await;
        assert_eq!(r["status"], "success");
        assert!(got == bytes);
    }

    // Only the named servers take it.
    let bytes2 = random_bytes(1000);
    let header2 = upload_header("fanned_1", bytes2.len() as u64, &sha256_hex(&bytes2));
    let outcome = fanout
        .upload(
            &ids[..1],
            encode_frame(&header2, &bytes2).into(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(outcome.keys().collect::<Vec<_>>(), vec![&servers[0]]);
    assert!(held(&w.c, ids[0]).await.contains(&"fanned_1".to_string()));
    for id in &ids[1..] {
        assert!(
            !held(&w.c, id).await.contains(&"fanned_1".to_string()),
            "{id} was not named"
        );
    }

    // Bad input on the fanned-out subject: each named server refuses it, stores nothing, answers on.
    let bad = upload_header("fanned_2", 5, &sha256_hex(b"other"));
    let outcome = fanout
        .upload(
            &ids,
            encode_frame(&bad, b"12345").into(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(outcome.len(), 3);
    for r in outcome.values() {
        let e = r.as_ref().expect_err("a checksum mismatch is refused");
        assert!(e.contains("sha256") || e.contains("checksum"), "{e}");
    }
    let list = serde_json::to_vec(&json!({"request_type": "LIST_CHUNKS"}))?;
    let outcome = fanout
        .upload(&ids, list.into(), Duration::from_secs(10))
        .await;
    assert_eq!(outcome.len(), 3);
    assert!(outcome
        .values()
        .all(|r| r.as_ref().is_err_and(|e| e.contains("UPLOAD_CHUNK only"))));
    for id in &ids {
        assert!(!held(&w.c, id).await.contains(&"fanned_2".to_string()));
    }

    // A named server that is not there is missing from the outcome; the others still answer.
    let mut with_gone = ids.clone();
    with_gone.push("cs-gone");
    let header3 = upload_header("fanned_3", bytes2.len() as u64, &sha256_hex(&bytes2));
    let outcome = fanout
        .upload(
            &with_gone,
            encode_frame(&header3, &bytes2).into(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(outcome.len(), 3, "{outcome:?}");
    assert!(!outcome.contains_key("cs-gone"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_a_listed_but_dead_server_still_stores_every_replica() -> anyhow::Result<()> {
    let w = World::start(3, false).await?;
    let opts = dfs::ChunkServerOptions {
        dir: w.dir.path().join("ext-dead"),
        id: Some("extdead".into()),
        settings: dfs::Settings::default(),
    };
    let doomed = dfs::chunk_server::connect(&w.env.nats.url(), opts).await?;
    eventually(Duration::from_secs(10), "four servers are live", || async {
        w.servers().await.len() == 4
    })
    .await;
    // It dies; the coordinator still lists it until its heartbeats have been missing for 5 s.
    doomed.stop().await;
    assert_eq!(w.servers().await.len(), 4);
    let bytes = random_bytes(8 * 64 * 1024 + 5);
    let path = w.file("clip.mp4", &bytes);
    let file_id = client::put(
        &w.c.nats,
        &path,
        &PutOptions {
            chunk_size: Some(64 * 1024),
            replicas: Some(3),
            ..w.opts()
        },
    )
    .await?;
    let locs = w.locations(&file_id).await;
    assert_eq!(locs.len(), 9);
    for (chunk, servers) in &locs {
        let ids: std::collections::BTreeSet<&str> = servers
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["chnk_srv_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 3, "{chunk} on 3 distinct servers: {ids:?}");
        assert!(
            !ids.contains("extdead"),
            "{chunk} is not on the dead server"
        );
    }
    let out = w.dir.path().join("out");
    client::get(&w.c.nats, &file_id, &out, false).await?;
    assert!(std::fs::read(&out)? == bytes);
    Ok(())
}
