//! Ids holding any UTF-8 (NUL, the escape character U+0001, dots, wildcards, astral characters)
//! survive every context's projection: a seeded random-id property test per context against real
//! PostgreSQL, the cart, and health that stays `ok` (nothing parked).

use e2e::{Client, TestEnv};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// A random non-empty id of at most 256 bytes over the characters that once broke projections.
fn random_id(rng: &mut impl Rng) -> String {
    loop {
        let n = rng.random_range(1..16);
        let s: String = (0..n)
            .map(|_| match rng.random_range(0..10) {
                0 | 1 => '\0',
                2 => '\u{1}',
                3 => '0',
                4 => '1',
                5 => ['.', '*', '>', ' ', '/', '~', '"', '\\'][rng.random_range(0..8)],
                6 => loop {
                    if let Some(c) = char::from_u32(rng.random_range(0x80..0x11_0000)) {
                        break c;
                    }
                },
                _ => char::from(rng.random_range(b'a'..=b'z')),
            })
            .collect();
        if s.len() <= 256 {
            return s;
        }
    }
}

/// `count` distinct random ids, the same for every run.
fn ids(seed: u64, count: usize) -> Vec<String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out: Vec<String> = vec!["nul\0item".into(), "\u{1}0".into(), "\0".into()];
    while out.len() < count {
        let id = random_id(&mut rng);
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// Health is `ok`: no projection parked anything.
async fn assert_healthy(c: &Client) {
    let h = c
        .request("sys.query.health", &json!({}))
        .await
        .unwrap()
        .ok();
    assert_eq!(h["ok"], true, "health: {h}");
    assert_eq!(h["status"], "ok", "health: {h}");
    for (name, s) in h["services"].as_object().unwrap() {
        for (p, ph) in s["projections"].as_object().unwrap() {
            assert_eq!(ph["parked"], 0, "{name}/{p}: {ph}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_cart_with_a_nul_item_reads_back_both_items() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let add = |customer: &str, item: &str| {
        json!({"customer_id": customer, "item_id": item, "offered_price": 1.5, "item_count": 2,
               "special_sale": null, "sale_expiration": null})
    };
    c.request("shop.cmd.add-item", &add("nul-cart", "plain-1"))
        .await?
        .ok();
    let r = c
        .request("shop.cmd.add-item", &add("nul-cart", "nul\u{0}item"))
        .await?
        .ok();
    let items: Vec<&str> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item_id"].as_str().unwrap())
        .collect();
    assert_eq!(items, ["plain-1", "nul\u{0}item"], "the command reply");
    let cart = c
        .request(
            "shop.query.cart",
            &json!({"customer_id": "nul-cart", "min_seq": r["seq"]}),
        )
        .await?
        .ok();
    assert_eq!(cart["items"], r["items"], "the read model holds both items");
    // A query given a NUL id answers (an empty cart), not `unavailable`.
    let empty = c
        .request(
            "shop.query.cart",
            &json!({"customer_id": "no\u{0}such", "min_seq": r["seq"]}),
        )
        .await?
        .ok();
    assert_eq!(empty["items"], json!([]));
    assert_healthy(&c).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_random_ids_survive_the_projection() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["shop"]).await?;
    let c = env.client().await?;
    let customers = ids(1, 16);
    let items = ids(2, 16);
    let mut last = 0;
    for (k, customer) in customers.iter().enumerate() {
        for item in items.iter().skip(k % 4).step_by(4) {
            let r = c
                .request(
                    "shop.cmd.add-item",
                    &json!({"customer_id": customer, "item_id": item, "offered_price": 2.0,
                            "item_count": 1, "special_sale": null, "sale_expiration": null}),
                )
                .await?
                .ok();
            last = r["seq"].as_u64().unwrap();
        }
    }
    for (k, customer) in customers.iter().enumerate() {
        let want: Vec<&String> = items.iter().skip(k % 4).step_by(4).collect();
        let cart = c
            .request(
                "shop.query.cart",
                &json!({"customer_id": customer, "min_seq": last}),
            )
            .await?
            .ok();
        assert_eq!(cart["customer_id"], json!(customer));
        let got: Vec<&str> = cart["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["item_id"].as_str().unwrap())
            .collect();
        assert_eq!(got, want, "customer {customer:?}");
        let dht = c
            .request("shop.query.dht-get", &json!({"key": customer}))
            .await?
            .ok();
        assert_eq!(dht["value"]["items"], cart["items"], "dht-get {customer:?}");
    }
    assert_healthy(&c).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_random_ids_survive_the_projection() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["dispatch"]).await?;
    let c = env.client().await?;
    let carts = ids(3, 12);
    let datasets = ids(4, 12);
    let mut last = 0;
    for (i, cart) in carts.iter().enumerate() {
        c.request(
            "dispatch.cmd.register-cart",
            &json!({"cart_id": cart, "home": "bay-a"}),
        )
        .await?
        .ok();
        let ssd = format!("{cart}\0ssd");
        c.request(
            "dispatch.cmd.register-ssd",
            &json!({"ssd_id": ssd, "cart_id": cart, "capacity_bytes": 1000, "health": "ok"}),
        )
        .await?
        .ok();
        let r = c
            .request(
                "dispatch.cmd.put-dataset",
                &json!({"ssd_id": ssd, "dataset": datasets[i], "size_bytes": 10}),
            )
            .await?
            .ok();
        last = r["seq"].as_u64().unwrap_or(last);
    }
    for (i, cart) in carts.iter().enumerate() {
        let info = c
            .request(
                "dispatch.query.cart",
                &json!({"cart_id": cart, "min_seq": last}),
            )
            .await?
            .ok();
        assert_eq!(info["cart_id"], json!(cart));
        assert_eq!(info["ssds"][0]["ssd_id"], json!(format!("{cart}\0ssd")));
        assert_eq!(info["ssds"][0]["datasets"], json!([datasets[i]]));
        let ds = c
            .request(
                "dispatch.query.dataset",
                &json!({"dataset": datasets[i], "min_seq": last}),
            )
            .await?
            .ok();
        assert_eq!(ds["ssds"][0]["cart_id"], json!(cart), "{ds}");
    }
    let all = c
        .request("dispatch.query.carts", &json!({"min_seq": last}))
        .await?
        .ok();
    let mut got: Vec<String> = all["carts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cart_id"].as_str().unwrap().to_string())
        .collect();
    got.retain(|id| carts.contains(id));
    assert_eq!(got.len(), carts.len());
    c.request(
        "dispatch.query.request",
        &json!({"request_id": "no\0such", "min_seq": last}),
    )
    .await?
    .assert_error("not_found", 404);
    assert_healthy(&c).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_random_ids_survive_the_projection() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["engine"]).await?;
    let c = env.client().await?;
    let modules = ids(5, 10);
    let systems = ids(6, 5);
    let mut last = 0;
    for m in &modules {
        c.request(
            "engine.cmd.add-module",
            &json!({"module_id": m, "driver_id": "display", "name": "Display"}),
        )
        .await?
        .ok();
        let r = c
            .request(
                "engine.cmd.update-status",
                &json!({"module_id": m, "name": "note", "value": {"k\u{0}": [m, "\u{1}0"]}}),
            )
            .await?
            .ok();
        last = r["seq"].as_u64().unwrap_or(last);
    }
    for (i, s) in systems.iter().enumerate() {
        let r = c
            .request(
                "engine.cmd.set-system",
                &json!({"system_id": s, "modules": [modules[2 * i], modules[2 * i + 1]]}),
            )
            .await?
            .ok();
        last = last.max(r["seq"].as_u64().unwrap_or(0));
    }
    for m in &modules {
        let v = c
            .request(
                "engine.query.status",
                &json!({"module_id": m, "name": "note", "min_seq": last}),
            )
            .await?
            .ok();
        assert_eq!(v["value"], json!({"k\u{0}": [m, "\u{1}0"]}), "{m:?}");
        let module = c
            .request(
                "engine.query.module",
                &json!({"module_id": m, "min_seq": last}),
            )
            .await?
            .ok();
        assert_eq!(module["module_id"], json!(m));
        assert_eq!(module["status"]["note"], v["value"]);
    }
    for (i, s) in systems.iter().enumerate() {
        let sys = c
            .request(
                "engine.query.system",
                &json!({"system_id": s, "min_seq": last}),
            )
            .await?
            .ok();
        assert_eq!(sys["modules"], json!([modules[2 * i], modules[2 * i + 1]]));
        let l = c
            .request(
                "engine.query.lookup",
                &json!({"system_id": s, "module": "Display_2", "min_seq": last}),
            )
            .await?
            .ok();
        assert_eq!(l["module_id"], json!(modules[2 * i + 1]));
    }
    c.request(
        "engine.query.module",
        &json!({"module_id": "no\0such", "min_seq": last}),
    )
    .await?
    .assert_error("not_found", 404);
    assert_healthy(&c).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_random_ids_survive_the_projection() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let _svc = env.services(&["cluster"]).await?;
    let c = env.client().await?;
    let managers = ids(7, 16);
    let mut last = 0;
    for m in &managers {
        let r = c
            .request(
                "cluster.cmd.start-manager",
                &json!({"manager_id": m, "ip": "10.0.0.1", "port": 9000}),
            )
            .await?
            .ok();
        last = r["seq"].as_u64().unwrap_or(last);
        let r = c
            .request(
                "cluster.cmd.connect-worker",
                &json!({"manager_id": m, "worker": {"id": format!("w\0{m}"), "name": m, "ip": "10.0.0.2", "port": 1}}),
            )
            .await?
            .ok();
        last = last.max(r["seq"].as_u64().unwrap_or(0));
    }
    for m in &managers {
        let tree = c
            .request(
                "cluster.query.tree",
                &json!({"manager_id": m, "min_seq": last}),
            )
            .await?
            .ok();
        assert_eq!(tree["version"], 2, "{m:?}: {tree}");
        assert_eq!(tree["workers"][0]["id"], json!(format!("w\0{m}")));
        assert_eq!(tree["workers"][0]["name"], json!(m));
    }
    let all = c
        .request("cluster.query.managers", &json!({"min_seq": last}))
        .await?
        .ok();
    let mut got: Vec<String> = all["managers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager_id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want = managers.clone();
    want.sort();
    assert_eq!(got, want);
    c.request(
        "cluster.query.tree",
        &json!({"manager_id": "no\0such", "min_seq": last}),
    )
    .await?
    .assert_error("not_found", 404);
    assert_healthy(&c).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dfs_random_file_ids_and_names_survive_the_projection() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let dir = tempfile::tempdir()?;
    let mut config = switchyard::Configuration::with_runtime(env.config())?;
    config.dfs.dir = dir.path().join("data").to_string_lossy().to_string();
    config.dfs.servers = 3;
    let _svc = e2e::Services::start_configured(config, &["dfs"]).await?;
    let c = env.client().await?;
    // One real upload stores the chunk that every commit below names.
    let path = dir.path().join("one.bin");
    std::fs::write(&path, b"the bytes of every file in this test")?;
    let opts = dfs::client::PutOptions {
        metadata_dir: dir.path().to_path_buf(),
        ..dfs::client::PutOptions::default()
    };
    let original = dfs::client::put(&c.nats, &path, &opts).await?;
    let info = c
        .request(
            "dfs.coordinator",
            &json!({"request_type": "GET_FILE", "file_id": original}),
        )
        .await?
        .ok();
    let files = ids(8, 12);
    for (i, f) in files.iter().enumerate() {
        let name = format!("name\0{i}\u{1}");
        c.request(
            "dfs.coordinator",
            &json!({"request_type": "COMMIT_FILE", "file_id": f, "name": name, "size": info["size"],
                    "sha256": info["sha256"], "chunks": info["chunks"]}),
        )
        .await?
        .ok();
    }
    for (i, f) in files.iter().enumerate() {
        // The catalog read model shows the commit once its projection has applied it.
        let got: Value = e2e::eventually(
            std::time::Duration::from_secs(10),
            "the committed file in the catalog",
            || async {
                let r = c
                    .request(
                        "dfs.coordinator",
                        &json!({"request_type": "GET_FILE", "file_id": f}),
                    )
                    .await
                    .expect("GET_FILE");
                (r.code() != Some("not_found")).then(|| r.ok())
            },
        )
        .await;
        assert_eq!(got["file_id"], json!(f));
        assert_eq!(got["name"], json!(format!("name\0{i}\u{1}")));
        let loc = c
            .request(
                "dfs.coordinator",
                &json!({"request_type": "GET_CHUNK_LOCATIONS", "file_id": f}),
            )
            .await?
            .ok();
        assert_eq!(
            loc["chunk_locations"].as_object().map(|m| m.len()),
            info["chunks"].as_array().map(Vec::len),
            "{f:?}"
        );
    }
    let listed = c
        .request("dfs.coordinator", &json!({"request_type": "LIST_FILES"}))
        .await?
        .ok();
    let text = listed.to_string();
    for f in &files {
        assert!(text.contains(&serde_json::to_string(f)?), "{f:?} listed");
    }
    assert_healthy(&c).await;
    Ok(())
}
