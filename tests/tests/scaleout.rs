//! Issue #13, the set-up part: the oldest NATS server refused, `NATS_URL` as a server list, and
//! `SWITCHYARD_REPLICAS=3` on a real 3-node JetStream cluster (streams, buckets and consumers
//! replicated; an R1 stream raised to R3 in place, its events kept).

use e2e::cluster::NatsCluster;
use e2e::{Client, Services, TestDb};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

fn add(customer: &str, item: &str) -> serde_json::Value {
    json!({"customer_id": customer, "item_id": item, "offered_price": 1.5, "item_count": 1,
           "special_sale": null, "sale_expiration": null})
}

/// A server speaking the NATS protocol's handshake as nats-server 2.9.10 does (its `INFO`, then
/// `PONG` to every `PING`): what a client connected to Debian's server sees.
async fn old_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let info = format!(
                    "INFO {{\"server_id\":\"NOLD\",\"server_name\":\"old\",\"version\":\"2.9.10\",\
                     \"proto\":1,\"go\":\"go1.19\",\"host\":\"127.0.0.1\",\"port\":{port},\
                     \"headers\":true,\"max_payload\":1048576,\"jetstream\":true}}\r\n"
                );
                if w.write_all(info.as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("PING") && w.write_all(b"PONG\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_server_older_than_the_minimum_is_refused_naming_both_versions() {
    let (port, server) = old_server().await;
    let config = runtime::Config::for_urls(
        &format!("nats://127.0.0.1:{port}"),
        "postgres://postgres@127.0.0.1:1/unused",
    );
    let err = match tokio::time::timeout(Duration::from_secs(20), runtime::Ctx::connect(config))
        .await
        .expect("the check answers at once")
    {
        Ok(_) => panic!("a 2.9.10 server was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("2.9.10") && err.contains(&runtime::nats::min_server_version()),
        "the error names both versions: {err}"
    );
    server.abort();
}

#[test]
fn the_harness_finds_a_current_server_and_refuses_an_old_one() {
    let bin = e2e::nats_server_bin().expect("a nats-server of at least the minimum");
    let out = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = runtime::nats::parse_version(text.trim().rsplit(' ').next().unwrap()).unwrap();
    assert!(v >= runtime::nats::MIN_SERVER_VERSION, "{text}");
    // What Debian's package prints.
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("nats-server");
    std::fs::write(&old, "#!/bin/sh\necho 'nats-server: v2.9.10'\n").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = format!("{:#}", e2e::check_nats_server(old).unwrap_err());
    assert!(
        err.contains("2.9.10") && err.contains(&runtime::nats::min_server_version()),
        "{err}"
    );
}

/// Replicas of stream `name` as the cluster reports them (leader + replicas).
async fn stream_replicas(js: &async_nats::jetstream::Context, name: &str) -> (usize, usize) {
    let info = js
        .get_stream(name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    let peers = info.cluster.as_ref().map_or(0, |c| c.replicas.len() + 1);
    (info.config.num_replicas, peers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replicas_3_on_a_3_node_cluster_every_stream_bucket_and_consumer_has_three_copies() {
    e2e::init_logging();
    let nats = NatsCluster::start("cluster", 3, "2m").unwrap();
    let client = nats.wait_jetstream("PROBE", "probe.>").await.unwrap();
    let db = TestDb::create().await.unwrap();
    // The comma-separated list, as a user gives it.
    let mut config = runtime::Config::for_urls(&nats.url(), &db.url);
    config.replicas = 3;
    let _svc = Services::start(config, &["shop", "dispatch", "engine", "cluster"])
        .await
        .unwrap();
    let r = client
        .request_with_id("shop.cmd.add-item", "m-1", &add("r3", "a"))
        .await
        .unwrap()
        .ok();
    assert!(r["seq"].as_u64().unwrap() >= 1);
    let js = async_nats::jetstream::new(client.nats.clone());
    for name in [
        "SHOP",
        "DISPATCH",
        "ENGINE",
        "CLUSTER",
        "SWITCHYARD_IDEMPOTENCY",
        "KV_ENGINE_INSTANCES",
        "KV_CLUSTER_LIVE",
    ] {
        // A cluster reports its peers once they have caught up: give it a moment.
        let mut got = (0, 0);
        for _ in 0..50 {
            got = stream_replicas(&js, name).await;
            if got == (3, 3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(got, (3, 3), "{name}: (configured, peers)");
    }
    // Projections read with ordered consumers of their own (one owner by lease); the durable
    // consumer left is the dispatcher's, and it inherits the stream's R3.
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream("DISPATCH")
        .await
        .unwrap()
        .get_consumer("dispatcher")
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(
        info.cluster.as_ref().map(|c| c.replicas.len() + 1),
        Some(3),
        "the dispatcher's durable consumer inherits R3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r1_stream_is_raised_to_r3_in_place_keeping_its_events() {
    e2e::init_logging();
    let nats = NatsCluster::start("cluster", 3, "2m").unwrap();
    let client = nats.wait_jetstream("PROBE", "probe.>").await.unwrap();
    let db = TestDb::create().await.unwrap();
    let r1 = runtime::Config::for_urls(&nats.url(), &db.url);
    let svc = Services::start(r1.clone(), &["shop"]).await.unwrap();
    let first = client
        .command_seq("shop.cmd.add-item", &add("grow", "a"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client.nats.clone());
    assert_eq!(stream_replicas(&js, "SHOP").await.0, 1);
    let created = js
        .get_stream("SHOP")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .created;
    drop(svc);
    let mut r3 = r1;
    r3.replicas = 3;
    let _svc = Services::start(r3, &["shop"]).await.unwrap();
    let mut got = (0, 0);
    for _ in 0..100 {
        got = stream_replicas(&js, "SHOP").await;
        if got == (3, 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, (3, 3), "SHOP raised to R3");
    let info = js
        .get_stream("SHOP")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.created, created, "the same stream, not a new one");
    assert!(info.state.first_sequence <= first && info.state.last_sequence >= first);
    // The cart, from before the change, is still there and commands go on.
    let second = client
        .command_seq("shop.cmd.add-item", &add("grow", "b"))
        .await
        .unwrap();
    assert!(second > first);
    let cart = client
        .request(
            "shop.query.cart",
            &json!({"customer_id": "grow", "min_seq": second}),
        )
        .await
        .unwrap()
        .ok();
    assert_eq!(cart["items"].as_array().map(Vec::len), Some(2), "{cart}");
}

#[tokio::test]
async fn client_commands_take_the_server_list() {
    let nats = NatsCluster::start("one", 1, "2m").unwrap();
    let _ = nats.wait_jetstream("PROBE", "probe.>").await.unwrap();
    // A dead server first, then the live one: the client uses whichever answers.
    let list = format!("nats://127.0.0.1:1, {}", nats.url());
    let c = runtime::ctx::connect_nats(&list, "list-test")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), c.flush())
        .await
        .expect("connected through the list")
        .unwrap();
    let c = Client::connect(&list).await.unwrap();
    c.nats.flush().await.unwrap();
}
