//! A deployment to inject faults into (a PostgreSQL cluster of its own, a 3-node JetStream cluster,
//! N `switchyard run` processes) and a steady mixed load over all five contexts whose every command
//! goes into a [`History`].

use crate::cluster::{NatsCluster, Process};
use crate::history::{History, Outcome, StoredFile};
use crate::{Client, PgCluster, TestDb};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Whether `switchyard run` takes a comma-separated `NATS_URL` (then every process gets every
/// node); else each process gets one node and learns the others from the server.
pub const NATS_URL_LIST: bool = true;

/// Chunk servers per process: with three processes six servers, so a factor of 3 is restored
/// while one process is down.
pub const DFS_SERVERS_PER_PROCESS: u32 = 2;

/// PostgreSQL, NATS cluster and processes.
pub struct World {
    // Dropped in this order: processes, then NATS, then the database, then PostgreSQL.
    pub procs: Vec<Process>,
    pub nats: NatsCluster,
    pub client: Client,
    pub db: TestDb,
    pub pg: PgCluster,
    pub replicas: u32,
    pub dir: tempfile::TempDir,
}

impl World {
    /// Starts everything: `procs` processes running every service, streams with `replicas`.
    ///
    /// # Errors
    /// Something did not start.
    pub async fn start(procs: usize, replicas: u32) -> anyhow::Result<Self> {
        crate::init_logging();
        let t0 = std::time::Instant::now();
        let pg = PgCluster::start()?;
        let db = TestDb::create_on(&pg.admin_url()).await?;
        let nats = NatsCluster::start("faults", 3, "2m")?;
        nats.wait_ready(Duration::from_secs(30)).await?;
        let dir = tempfile::tempdir()?;
        let client = nats.client().await?;
        let mut world = Self {
            procs: Vec::new(),
            nats,
            client,
            db,
            pg,
            replicas,
            dir,
        };
        // The first process alone (it creates streams and applies migrations), then the others.
        let first = world.process(0).await?;
        world.procs.push(first);
        let rest = futures::future::join_all((1..procs).map(|i| world.process(i))).await;
        for p in rest {
            world.procs.push(p?);
        }
        println!(
            "world: PostgreSQL, 3 nats nodes and {procs} processes up in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        Ok(world)
    }

    async fn process(&self, i: usize) -> anyhow::Result<Process> {
        let nats_url = if NATS_URL_LIST {
            self.nats.url()
        } else {
            self.nats.nodes[i % self.nats.nodes.len()].url()
        };
        let name = format!("p{i}");
        let env: Vec<(String, String)> = [
            ("NATS_URL", nats_url),
            ("DATABASE_URL", self.db.url.clone()),
            ("HTTP_ADDR", "127.0.0.1:0".into()),
            ("SWITCHYARD_REPLICAS", self.replicas.to_string()),
            ("SWITCHYARD_INSTANCE", name.clone()),
            (
                "SWITCHYARD_DFS_DIR",
                self.dir
                    .path()
                    .join(&name)
                    .join("dfs")
                    .display()
                    .to_string(),
            ),
            (
                "SWITCHYARD_DFS_SERVERS",
                DFS_SERVERS_PER_PROCESS.to_string(),
            ),
            ("RUST_LOG", "warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Process::start(&name, self.dir.path(), &[], env).await
    }

    /// A fresh client of the cluster.
    ///
    /// # Errors
    /// No node answers.
    pub async fn new_client(&self) -> anyhow::Result<Client> {
        self.nats.client().await
    }

    /// The stream with the most messages among the five contexts'.
    ///
    /// # Errors
    /// JetStream did not answer.
    pub async fn busiest_stream(&self) -> anyhow::Result<&'static str> {
        let mut best = ("SHOP", 0);
        for s in crate::history::STREAMS {
            let n = self.client.stream_len(s).await.unwrap_or(0);
            if n > best.1 {
                best = (s, n);
            }
        }
        Ok(best.0)
    }
}

/// Clients running until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Load {
    /// Asks every client to stop after its current command and waits for them.
    ///
    /// # Errors
    /// A client task failed (a bug in the harness, not in the services).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await??;
        }
        Ok(())
    }
}

/// How long one command is retried (same msg id) before the client gives up.
pub const GIVE_UP: Duration = Duration::from_secs(60);
/// Pause between one client's commands (keeps 2 cores from saturating).
const THINK: Duration = Duration::from_millis(15);

/// Starts the mixed load: `shop_clients` shop clients sharing 6 carts, one client each for
/// dispatch, engine and cluster, one querying shop carts every 100 ms, and one dfs client putting a small file every second.
///
/// # Errors
/// A client could not connect.
pub async fn start_load(world: &World, h: &History, shop_clients: usize) -> anyhow::Result<Load> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for k in 0..shop_clients {
        let c = world.new_client().await?;
        tasks.push(tokio::spawn(shop_client(c, h.clone(), k, stop.clone())));
    }
    let c = world.new_client().await?;
    tasks.push(tokio::spawn(dispatch_client(c, h.clone(), stop.clone())));
    let c = world.new_client().await?;
    tasks.push(tokio::spawn(engine_client(c, h.clone(), stop.clone())));
    let c = world.new_client().await?;
    tasks.push(tokio::spawn(cluster_client(c, h.clone(), stop.clone())));
    let c = world.new_client().await?;
    tasks.push(tokio::spawn(query_client(c, h.clone(), stop.clone())));
    let c = world.new_client().await?;
    let dir = world.dir.path().join("dfs-client");
    std::fs::create_dir_all(&dir)?;
    tasks.push(tokio::spawn(dfs_client(c, h.clone(), dir, stop.clone())));
    Ok(Load { stop, tasks })
}

async fn shop_client(c: Client, h: History, k: usize, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let name = format!("shop{k}");
    let mut mine: Vec<(String, String)> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let cart = format!("{}-cart-{}", h.run, n % 6);
        let (subject, body) = if n.is_multiple_of(5) && !mine.is_empty() {
            let (cart, item) = &mine[(n as usize / 5) % mine.len()];
            (
                "shop.cmd.update-item",
                json!({"customer_id": cart, "item_id": item, "new_count": 2 + n % 3}),
            )
        } else if n.is_multiple_of(7) && !mine.is_empty() {
            let (cart, item) = mine.swap_remove((n as usize / 7) % mine.len());
            (
                "shop.cmd.remove-item",
                json!({"customer_id": cart, "item_id": item}),
            )
        } else if n.is_multiple_of(41) {
            ("shop.cmd.checkout", json!({"customer_id": cart}))
        } else {
            let item = format!("{}-{name}-item-{n}", h.run);
            mine.push((cart.clone(), item.clone()));
            (
                "shop.cmd.add-item",
                json!({"customer_id": cart, "item_id": item, "offered_price": 1.5,
                       "item_count": 1, "special_sale": null, "sale_expiration": null}),
            )
        };
        let id = h.msg_id(&name, n);
        h.command(&c, &name, subject, &id, &body, GIVE_UP).await;
        tokio::time::sleep(THINK).await;
    }
    Ok(())
}

async fn query_client(c: Client, h: History, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let cart = format!("{}-cart-{}", h.run, n % 6);
        h.query(&c, "shop.query.cart", &json!({"customer_id": cart}))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn dispatch_client(c: Client, h: History, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let name = "dispatch";
    let mut n = 0u64;
    let mut k = 0u64;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let cart = format!("{}-dcart-{k}", h.run);
        let ssd = format!("{cart}/ssd");
        let steps: Vec<(&str, Value)> = vec![
            (
                "dispatch.cmd.register-cart",
                json!({"cart_id": cart, "home": "bay-a"}),
            ),
            (
                "dispatch.cmd.register-ssd",
                json!({"ssd_id": ssd, "cart_id": cart, "capacity_bytes": 1_000_000_000_000u64, "health": "ok"}),
            ),
            (
                "dispatch.cmd.put-dataset",
                json!({"ssd_id": ssd, "dataset": format!("{cart}-ds-1"), "size_bytes": 1_000_000u64}),
            ),
            (
                "dispatch.cmd.put-dataset",
                json!({"ssd_id": ssd, "dataset": format!("{cart}-ds-2"), "size_bytes": 1_000_000u64}),
            ),
        ];
        for (subject, body) in steps {
            n += 1;
            let id = h.msg_id(name, n);
            h.command(&c, name, subject, &id, &body, GIVE_UP).await;
            tokio::time::sleep(THINK).await;
        }
    }
    Ok(())
}

async fn engine_client(c: Client, h: History, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let name = "engine";
    let mut n = 0u64;
    let mut k = 0u64;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let module = format!("{}-mod-{k}", h.run);
        n += 1;
        let id = h.msg_id(name, n);
        h.command(
            &c,
            name,
            "engine.cmd.add-module",
            &id,
            &json!({"module_id": module, "driver_id": "display", "name": "Display"}),
            GIVE_UP,
        )
        .await;
        for v in 0..3 {
            n += 1;
            let id = h.msg_id(name, n);
            h.command(
                &c,
                name,
                "engine.cmd.update-status",
                &id,
                &json!({"module_id": module, "name": "power", "value": {"n": n, "on": v % 2 == 0}}),
                GIVE_UP,
            )
            .await;
            tokio::time::sleep(THINK).await;
        }
    }
    Ok(())
}

async fn cluster_client(c: Client, h: History, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let name = "cluster";
    let mut n = 0u64;
    let mut k = 0u64;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let m = format!("{}-mgr-{k}", h.run);
        let mut steps: Vec<(&str, Value)> = vec![(
            "cluster.cmd.start-manager",
            json!({"manager_id": m, "ip": "10.0.0.1", "port": 9000}),
        )];
        for w in 0..3 {
            steps.push((
                "cluster.cmd.connect-worker",
                json!({"manager_id": m, "worker": {"id": format!("w{w}"), "name": format!("worker {w}"), "ip": "10.0.0.2", "port": 9100 + w}}),
            ));
        }
        steps.push((
            "cluster.cmd.disconnect-worker",
            json!({"manager_id": m, "worker_id": "w0"}),
        ));
        for (subject, body) in steps {
            n += 1;
            let id = h.msg_id(name, n);
            h.command(&c, name, subject, &id, &body, GIVE_UP).await;
            tokio::time::sleep(THINK).await;
        }
    }
    Ok(())
}

async fn dfs_client(
    c: Client,
    h: History,
    dir: std::path::PathBuf,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let size = 200 * 1024 + (n as usize % 7) * 1000;
        let bytes: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
        let path = dir.join(format!("file-{n}"));
        std::fs::write(&path, &bytes)?;
        let opts = dfs::client::PutOptions {
            chunk_size: Some(64 * 1024),
            metadata_dir: dir.clone(),
            ..dfs::client::PutOptions::default()
        };
        match tokio::time::timeout(
            Duration::from_secs(30),
            dfs::client::put(&c.nats, &path, &opts),
        )
        .await
        {
            Ok(Ok(file_id)) => h.stored_file(StoredFile {
                file_id,
                sha256: dfs::domain::sha256_hex(&bytes),
                size,
            }),
            Ok(Err(e)) => h.dfs_failure(format!("{e:#}")),
            Err(_) => h.dfs_failure("put timed out (30 s)".into()),
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    Ok(())
}

/// `clients` clients on `conns` connections add the same item to one cart, `each` times each; a
/// command refused with `conflict` (too many concurrent writers) is sent again under a new msg id.
/// Returns how many adds were acknowledged.
///
/// # Errors
/// A client could not connect.
pub async fn race_one_cart(
    world: &World,
    h: &History,
    cart: &str,
    clients: usize,
    conns: usize,
    each: usize,
) -> anyhow::Result<usize> {
    let mut cs = Vec::new();
    for _ in 0..conns {
        cs.push(world.new_client().await?);
    }
    let start = Arc::new(tokio::sync::Barrier::new(clients));
    let mut tasks = Vec::new();
    for k in 0..clients {
        let c = cs[k % conns].clone();
        let h = h.clone();
        let cart = cart.to_string();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("racer{k}");
            let body = json!({"customer_id": cart, "item_id": "contended", "offered_price": 2.0,
                              "item_count": 1, "special_sale": null, "sale_expiration": null});
            start.wait().await;
            let mut acked = 0usize;
            let mut n = 0u64;
            for _ in 0..each {
                loop {
                    n += 1;
                    let id = h.msg_id(&name, n);
                    match h
                        .command(&c, &name, "shop.cmd.add-item", &id, &body, GIVE_UP)
                        .await
                        .0
                    {
                        Outcome::Ok(_) => {
                            acked += 1;
                            break;
                        }
                        Outcome::Refused(code) if code == "conflict" => {}
                        other => anyhow::bail!("{name}: add-item ended {other:?}"),
                    }
                }
            }
            Ok(acked)
        }));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await??;
    }
    Ok(acked)
}
