//! The bus says no: a real nats-server with the accounts, users and permissions that
//! `infra/auth.sh` generates. For every user an allowed request works, and a forbidden publish is
//! refused by the server (a permissions violation reported to the client) and changes nothing: no
//! stream's last sequence moves and no dashboard subscriber sees the forged message. The
//! dashboard's `operator` may also exec and request datasets, and nothing more.

use async_nats::jetstream;
use e2e::{NatsServer, TestDb};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

const STREAMS: [&str; 5] = ["SHOP", "DISPATCH", "ENGINE", "CLUSTER", "DFS"];

/// `NATS_PASSWORD` of `user` from the generated `creds/<user>.env`.
fn password(dir: &Path, user: &str) -> String {
    let text = std::fs::read_to_string(dir.join("creds").join(format!("{user}.env"))).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("NATS_PASSWORD="))
        .unwrap()
        .trim_matches('\'')
        .to_string()
}

/// A user's connection and the server errors reported to it.
struct As {
    nats: async_nats::Client,
    errors: mpsc::UnboundedReceiver<String>,
}

async fn connect(port: u16, dir: &Path, user: &str) -> anyhow::Result<As> {
    let (tx, errors) = mpsc::unbounded_channel();
    let nats = async_nats::ConnectOptions::new()
        .user_and_password(user.into(), password(dir, user))
        .request_timeout(Some(Duration::from_secs(10)))
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = e {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(format!("nats://127.0.0.1:{port}"))
        .await?;
    Ok(As { nats, errors })
}

impl As {
    /// A request with headers; the reply's JSON whatever it says (a service error included).
    async fn answer(
        &self,
        subject: &str,
        headers: async_nats::HeaderMap,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let msg = self
            .nats
            .request_with_headers(
                subject.to_string(),
                headers,
                serde_json::to_vec(body)?.into(),
            )
            .await?;
        Ok(serde_json::from_slice(&msg.payload)?)
    }

    async fn request(&self, subject: &str, body: &Value) -> anyhow::Result<Value> {
        let msg = self
            .nats
            .request(subject.to_string(), serde_json::to_vec(body)?.into())
            .await?;
        let v: Value = serde_json::from_slice(&msg.payload)?;
        anyhow::ensure!(v.get("error").is_none(), "{subject}: {v}");
        Ok(v)
    }

    /// Publishes `subject` and waits for the server's permissions violation naming it.
    async fn refused(&mut self, subject: &str) {
        while self.errors.try_recv().is_ok() {}
        self.nats
            .publish(subject.to_string(), "forged".into())
            .await
            .unwrap();
        self.nats.flush().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let e = tokio::time::timeout_at(deadline, self.errors.recv())
                .await
                .unwrap_or_else(|_| panic!("no permissions violation for a publish to {subject}"))
                .unwrap();
            let lower = e.to_lowercase();
            if lower.contains("permissions violation") && e.contains(subject) {
                return;
            }
        }
    }
}

async fn last_seqs(js: &jetstream::Context) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for s in STREAMS {
        let mut stream = js.get_stream(s).await.unwrap();
        out.insert(s, stream.info().await.unwrap().state.last_sequence);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_may_do_its_work_and_the_server_refuses_the_rest() -> anyhow::Result<()> {
    e2e::init_logging();
    let (nats, dir) = NatsServer::start_with_auth()?;
    let db = TestDb::create().await?;
    let port = nats.port;
    // Every generated password, the operator's included, is readable by its owner only.
    for user in ["switchyard", "dashboard", "operator"] {
        use std::os::unix::fs::PermissionsExt as _;
        let f = dir.join("creds").join(format!("{user}.env"));
        let mode = std::fs::metadata(&f)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is mode {mode:o}", f.display());
    }
    // Without credentials nobody gets in.
    assert!(
        async_nats::connect(format!("nats://127.0.0.1:{port}"))
            .await
            .is_err(),
        "an anonymous connection must be refused"
    );
    // The services run as `switchyard`.
    let url = format!(
        "nats://switchyard:{}@127.0.0.1:{port}",
        password(&dir, "switchyard")
    );
    let mut config =
        switchyard::Configuration::with_runtime(runtime::Config::for_urls(&url, &db.url))?;
    let data = tempfile::tempdir()?;
    config.dfs.dir = data.path().join("dfs").to_string_lossy().to_string();
    let _services = e2e::Services::start_configured(config, &[]).await?;

    let admin = connect(port, &dir, "admin").await?;
    let js = jetstream::new(admin.nats.clone());

    // The dashboard watches every live subject it may see.
    let mut dashboard = connect(port, &dir, "dashboard").await?;
    let mut live = futures::stream::select_all(vec![
        dashboard.nats.subscribe("engine.system").await?,
        dashboard.nats.subscribe("cluster.tree.>").await?,
        dashboard.nats.subscribe("dispatch.status.>").await?,
        dashboard.nats.subscribe("engine.status.>").await?,
        dashboard.nats.subscribe("engine.watch.>").await?,
    ]);
    dashboard.nats.flush().await?;

    // Allowed: each publisher user's own requests, through the CLIENTS account's imports.
    let shop = connect(port, &dir, "shop").await?;
    let r = shop
        .request(
            "shop.cmd.add-item",
            &json!({"customer_id": "c1", "item_id": "i1", "offered_price": 1.0, "item_count": 1,
                    "special_sale": null, "sale_expiration": null}),
        )
        .await?;
    shop.request(
        "shop.query.cart",
        &json!({"customer_id": "c1", "min_seq": r["seq"]}),
    )
    .await?;
    let dispatch = connect(port, &dir, "dispatch").await?;
    dispatch.request("dispatch.query.carts", &json!({})).await?;
    let engine = connect(port, &dir, "engine").await?;
    engine
        .request("engine.query.driver", &json!({"driver_id": "display"}))
        .await?;
    let cluster = connect(port, &dir, "cluster").await?;
    let started = cluster
        .request(
            "cluster.cmd.start-manager",
            &json!({"manager_id": "m1", "ip": "10.0.0.1", "port": 1}),
        )
        .await?;
    let dfs = connect(port, &dir, "dfs").await?;
    let servers = dfs
        .request(
            "dfs.coordinator",
            &json!({"request_type": "GET_CHUNK_SERVERS"}),
        )
        .await?;
    // The chunk protocol: a LIST_CHUNKS on a chunk server's own subject.
    if let Some(addr) = servers["chunk_servers"][0]["chnk_srv_addr"].as_str() {
        let m = dfs
            .nats
            .request(
                addr.to_string(),
                br#"{"request_type": "LIST_CHUNKS"}"#.to_vec().into(),
            )
            .await?;
        assert!(!m.payload.is_empty());
    }
    dashboard
        .request(
            "cluster.query.tree",
            &json!({"manager_id": "m1", "min_seq": started["seq"]}),
        )
        .await?;
    dashboard.request("sys.query.health", &json!({})).await?;
    // The dashboard's own additions reach the services too (dfs.query.* is imported).
    dashboard.request("dfs.query.servers", &json!({})).await?;
    dashboard
        .request("engine.query.systems", &json!({}))
        .await?;
    dashboard
        .request("dispatch.query.queue", &json!({}))
        .await?;
    // The services' own delta for m1 reaches the dashboard (so the silence below means something).
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = live.next().await {
            if m.subject.as_str() == "cluster.tree.m1" {
                return;
            }
        }
    })
    .await
    .expect("the dashboard sees the live delta of m1");
    admin
        .nats
        .request("$JS.API.INFO".to_string(), "".into())
        .await?;

    // The operator (signed in on the dashboard): what dashboard may, plus engine.exec (the
    // engine's own token check still applies) and dispatch.cmd.request-datasets; nothing else.
    let mut operator = connect(port, &dir, "operator").await?;
    for (m, driver, name) in [
        ("op-disp", "display", "Display"),
        ("op-calc", "calculator", "Calculator"),
    ] {
        admin
            .request(
                "engine.cmd.add-module",
                &json!({"module_id": m, "driver_id": driver, "name": name}),
            )
            .await?;
    }
    let set = admin
        .request(
            "engine.cmd.set-system",
            &json!({"system_id": "op-sys", "modules": ["op-disp", "op-calc"]}),
        )
        .await?;
    let token = engine::auth::issue(
        "switchyard-dev-secret-change-me",
        "op",
        &["administrator".into()],
        600,
    )?;
    let bearer = |t: Option<&str>| {
        let mut h = async_nats::HeaderMap::new();
        if let Some(t) = t {
            h.insert("Authorization", format!("Bearer {t}").as_str());
        }
        h
    };
    let power = json!({"system_id": "op-sys", "module": "Display_1", "method": "power", "args": {"state": true}});
    let r = operator.answer("engine.exec", bearer(None), &power).await?;
    assert_eq!(r, json!({"result": true}), "operator exec");
    let task = json!({"system_id": "op-sys", "module": "Calculator_1", "method": "perform_task", "args": {"name": 7}});
    let r = operator.answer("engine.exec", bearer(None), &task).await?;
    assert_eq!(
        r["error"]["code"], "unauthorized",
        "an administrator function without a token: {r}"
    );
    let r = operator
        .answer("engine.exec", bearer(Some(&token)), &task)
        .await?;
    assert!(
        r.get("error").is_none() && r.get("result").is_some(),
        "operator exec with a token: {r}"
    );
    let r = operator
        .request(
            "dispatch.cmd.request-datasets",
            &json!({"server_id": "ml-node-3", "datasets": ["imagenet_train"]}),
        )
        .await?;
    assert!(r["request_id"].is_string(), "operator request: {r}");
    operator
        .request("engine.query.systems", &json!({"min_seq": set["seq"]}))
        .await?;
    operator.request("dispatch.query.carts", &json!({})).await?;
    operator.request("sys.query.health", &json!({})).await?;
    operator.nats.subscribe("dispatch.status.>").await?;
    operator.nats.subscribe("engine.watch.>").await?;
    // What those commands cause settles (the reservation, the display's status report).
    let mut seqs = last_seqs(&js).await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = last_seqs(&js).await;
        if now == seqs {
            break;
        }
        seqs = now;
    }

    // Forbidden: events, live subjects, `engine.system`, the JetStream API, other contexts.
    let before = last_seqs(&js).await;
    let mut users = vec![
        ("shop", shop, "shop.events.cart.c1"),
        ("dispatch", dispatch, "dispatch.events.cart.x"),
        ("engine", engine, "engine.events.module.x"),
        ("cluster", cluster, "cluster.events.manager.m1"),
        ("dfs", dfs, "dfs.events.file.x"),
    ];
    for (name, user, events) in &mut users {
        user.refused(events).await;
        user.refused("engine.system").await;
        user.refused("cluster.tree.m1").await;
        user.refused("dispatch.status.cart.c9").await;
        user.refused("engine.status.x.power").await;
        user.refused("engine.watch.s.Display_1.power").await;
        user.refused("$JS.API.STREAM.DELETE.SHOP").await;
        user.refused("$JS.API.STREAM.PURGE.DFS").await;
        user.refused("dfs.heartbeat.forged").await;
        user.refused("engine.instance.x.exec").await;
        let other = if *name == "shop" {
            "dispatch.cmd.register-cart"
        } else {
            "shop.cmd.add-item"
        };
        user.refused(other).await;
    }
    dashboard.refused("shop.cmd.add-item").await;
    dashboard.refused("engine.exec").await;
    dashboard.refused("engine.system").await;
    dashboard.refused("cluster.tree.m1").await;
    dashboard.refused("$JS.API.STREAM.DELETE.ENGINE").await;
    dashboard.refused("dfs.chunk.x").await;
    dashboard.refused("dispatch.cmd.request-datasets").await;

    // Forbidden for the operator: events, live subjects, every other command, the JetStream API.
    for subject in [
        "engine.events.module.x",
        "dispatch.events.cart.x",
        "shop.events.cart.c1",
        "engine.system",
        "cluster.tree.m1",
        "dispatch.status.cart.c9",
        "engine.status.x.power",
        "engine.watch.s.Display_1.power",
        "shop.live.checkouts",
        "dfs.live.servers",
        "dispatch.cmd.register-cart",
        "dispatch.cmd.cart-report",
        "engine.cmd.set-system",
        "shop.cmd.add-item",
        "cluster.cmd.start-manager",
        "engine.instance.x.exec",
        "dfs.chunk.x",
        "$JS.API.STREAM.DELETE.ENGINE",
    ] {
        operator.refused(subject).await;
    }

    // Nothing moved, nothing was deleted, no dashboard saw a forged message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(last_seqs(&js).await, before, "no stream moved");
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), live.next()).await {
        assert_ne!(
            &m.payload[..],
            b"forged",
            "a dashboard saw a forged message on {}",
            m.subject
        );
    }
    Ok(())
}
