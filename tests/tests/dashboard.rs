//! End-to-end browser test of the dashboard (`services/dashboard`): the real stack (its own
//! nats-server with a WebSocket listener, a fresh database, every service, the gateway serving the
//! built page) and Debian's Chromium driven by Playwright (`e2e/dashboard.spec.mjs`). The spec
//! checks every view live: a cart moves on the map after a request; a module's value changes after
//! an exec and follows a re-order; the tree updates after a graph commit and recovers from a forced
//! gap; a dfs file plays and seeks; the page shows "reconnecting" while nats-server restarts and
//! recovers after. Screenshots of every view: `target/dashboard-screenshots/`.
//!
//! A second test runs the stack under the set-up's NATS accounts (`infra/auth.sh`, the WebSocket
//! listener binding credential-less connections to the read-only `dashboard` user):
//! `e2e/dashboard_auth.spec.mjs` checks that an anonymous exec and request show the bus's
//! permission error, and that after "Sign in as operator" they work.

use e2e::browser;
use e2e::{Client, NatsServer, TestDb, TestEnv};
use serde_json::{json, Value};
use std::time::Duration;

const SECRET: &str = "switchyard-dev-secret-change-me";

async fn cmd(c: &Client, subject: &str, body: Value) -> Value {
    c.request(subject, &body).await.unwrap().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_views_follow_the_live_subjects() -> anyhow::Result<()> {
    browser::check_prerequisites()?;
    let mut env = TestEnv::new().await?;
    let dir = tempfile::tempdir()?;
    // Read by the gateway at start (edition 2021: set_var is safe; this binary has one test).
    std::env::set_var("NATS_WS_URL", env.nats.ws_url());
    std::env::set_var(
        "SWITCHYARD_DASHBOARD_DIR",
        browser::dashboard_dir().join("dist"),
    );
    let mut config = switchyard::Configuration::with_runtime(env.config())?;
    config.dfs.dir = dir.path().join("dfs").to_string_lossy().to_string();
    let services = e2e::Services::start_configured(config, &[]).await?;
    let http = services.http_addr.expect("the gateway runs");
    let c = env.client().await?;

    // engine: two displays in a system.
    for m in ["dash-disp-1", "dash-disp-2"] {
        cmd(
            &c,
            "engine.cmd.add-module",
            json!({"module_id": m, "driver_id": "display", "name": "Display"}),
        )
        .await;
    }
    cmd(
        &c,
        "engine.cmd.set-system",
        json!({"system_id": "dash-sys", "modules": ["dash-disp-1", "dash-disp-2"]}),
    )
    .await;
    // cluster: a manager with two workers, no graph yet (the spec commits it).
    cmd(
        &c,
        "cluster.cmd.start-manager",
        json!({"manager_id": "dash-m1", "ip": "10.0.0.1", "port": 9000}),
    )
    .await;
    for (id, name) in [("w1", "camera-host"), ("w2", "gpu-host")] {
        cmd(&c, "cluster.cmd.connect-worker", json!({"manager_id": "dash-m1", "worker": {"id": id, "name": name, "ip": "10.0.0.2", "port": 9100}})).await;
    }
    // dfs: a 30 s WAV in 64 KiB chunks.
    let wav = dir.path().join("tone.wav");
    std::fs::write(&wav, browser::wav(30))?;
    let file_id = dfs::client::put(
        &c.nats,
        &wav,
        &dfs::client::PutOptions {
            chunk_size: Some(64 * 1024),
            metadata_dir: dir.path().to_path_buf(),
            ..Default::default()
        },
    )
    .await?;
    // shop: a cart to look up.
    cmd(&c, "shop.cmd.add-item", json!({"customer_id": "dash-lookup", "item_id": "book", "offered_price": 12.5, "item_count": 2, "special_sale": null, "sale_expiration": null})).await;
    // dispatch: a cart only it can serve, with a dataset that takes minutes to transfer, so that
    // the requests after the first wait in its queue while the spec looks.
    cmd(
        &c,
        "dispatch.cmd.register-cart",
        json!({"cart_id": "dash-qcart", "home": "bay-c"}),
    )
    .await;
    cmd(&c, "dispatch.cmd.register-ssd", json!({"ssd_id": "dash-qssd", "cart_id": "dash-qcart", "capacity_bytes": 8_000_000_000_000u64, "health": "ok"})).await;
    cmd(&c, "dispatch.cmd.put-dataset", json!({"ssd_id": "dash-qssd", "dataset": "dash-queue-ds", "size_bytes": 4_000_000_000_000u64})).await;
    // dispatch: the cart simulator drives the jobs (5x real time).
    let sim = tools::dispatch_sim::spawn(
        c.nats.clone(),
        tools::dispatch_sim::SimOptions {
            speed: 5.0,
            ..Default::default()
        },
    );

    let token = engine::auth::issue(SECRET, "dashboard-test", &["administrator".into()], 3600)?;
    let vars = vec![
        ("DASH_URL", format!("http://{http}/")),
        ("EXEC_TOKEN", token),
        ("FILE_ID", file_id.clone()),
    ];
    let nats = &mut env.nats;
    let spec = tokio::task::block_in_place(|| {
        browser::run_spec(
            "dashboard.spec.mjs",
            &vars,
            Duration::from_secs(240),
            |command| match command {
                "STOP_NATS" => {
                    nats.stop();
                    Ok(())
                }
                "START_NATS" => nats.restart(),
                other => anyhow::bail!("unknown command {other}"),
            },
        )
    });
    sim.abort();
    drop(services);
    spec?;
    Ok(())
}

/// `NATS_PASSWORD` of `user` from the generated `creds/<user>.env`.
fn password(dir: &std::path::Path, user: &str) -> String {
    let text = std::fs::read_to_string(dir.join("creds").join(format!("{user}.env"))).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("NATS_PASSWORD="))
        .unwrap()
        .trim_matches('\'')
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_operator_signs_in_under_the_accounts() -> anyhow::Result<()> {
    browser::check_prerequisites()?;
    e2e::init_logging();
    let (nats, creds) = NatsServer::start_with_auth()?;
    let db = TestDb::create().await?;
    let dir = tempfile::tempdir()?;
    // The page gets the WebSocket URL from `?nats=` (NATS_WS_URL is the other test's).
    std::env::set_var(
        "SWITCHYARD_DASHBOARD_DIR",
        browser::dashboard_dir().join("dist"),
    );
    let url = |user: &str| {
        format!(
            "nats://{user}:{}@127.0.0.1:{}",
            password(&creds, user),
            nats.port
        )
    };
    let mut config = switchyard::Configuration::with_runtime(runtime::Config::for_urls(
        &url("switchyard"),
        &db.url,
    ))?;
    config.dfs.dir = dir.path().join("dfs").to_string_lossy().to_string();
    let services = e2e::Services::start_configured(config, &[]).await?;
    let http = services.http_addr.expect("the gateway runs");
    let admin = Client {
        nats: async_nats::ConnectOptions::new()
            .user_and_password("admin".into(), password(&creds, "admin"))
            .request_timeout(Some(Duration::from_secs(15)))
            .connect(format!("127.0.0.1:{}", nats.port))
            .await?,
    };
    cmd(
        &admin,
        "engine.cmd.add-module",
        json!({"module_id": "auth-disp", "driver_id": "display", "name": "Display"}),
    )
    .await;
    cmd(
        &admin,
        "engine.cmd.set-system",
        json!({"system_id": "auth-sys", "modules": ["auth-disp"]}),
    )
    .await;
    let vars = vec![
        (
            "DASH_URL",
            format!("http://{http}/?nats=ws://127.0.0.1:{}", nats.ws_port),
        ),
        ("OPERATOR_PASSWORD", password(&creds, "operator")),
    ];
    let spec = tokio::task::block_in_place(|| {
        browser::run_spec(
            "dashboard_auth.spec.mjs",
            &vars,
            Duration::from_secs(180),
            |other| anyhow::bail!("unknown command {other}"),
        )
    });
    drop(services);
    spec?;
    Ok(())
}
