//! The tests' and the bench's own nats-servers: one node, or a 3-node JetStream cluster on loopback
//! (routes between all nodes, a store directory per node), with a chosen `sync_interval`; and the
//! faults a test injects: kill -9 a node and start it again on the same ports and store, pause a node
//! (SIGSTOP/SIGCONT). Also `switchyard run` processes (the real binary), killable and restartable.

use crate::{nats_server_bin, wait_for_port};
use anyhow::Context as _;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `n` distinct free ports, held together while they are chosen.
#[must_use]
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .filter_map(|_| TcpListener::bind("127.0.0.1:0").ok())
        .collect();
    listeners
        .iter()
        .filter_map(|l| l.local_addr().ok().map(|a| a.port()))
        .collect()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// One node of a [`NatsCluster`].
pub struct Node {
    pub name: String,
    pub port: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    /// `nats://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Whether the process is running (not killed).
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }
}

/// One nats-server with JetStream, or several routed to each other, each with its own store.
/// Killed on drop.
pub struct NatsCluster {
    /// A name for tables and messages.
    pub label: String,
    pub nodes: Vec<Node>,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `nodes` servers (1, or 3 for a cluster) with `sync_interval: "<sync>"` (`2m`, the
    /// server's default, or `always`) without waiting for them: see [`NatsCluster::wait_ready`]
    /// and [`NatsCluster::wait_jetstream`].
    ///
    /// # Errors
    /// No usable nats-server, or one did not start.
    pub fn start(label: &str, nodes: usize, sync: &str) -> anyhow::Result<Self> {
        let bin = nats_server_bin()?;
        let dir = tempfile::tempdir()?;
        let wanted = if nodes > 1 { 2 * nodes } else { nodes };
        let ports = free_ports(wanted);
        anyhow::ensure!(ports.len() == wanted, "no free ports");
        let (client, route) = ports.split_at(nodes);
        let mut list = Vec::new();
        for i in 0..nodes {
            let name = format!("n{i}");
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store)?;
            let mut conf = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{}\nmax_payload: 8MB\nmax_pending: 256MB\n\
                 jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 268435456\n  \
                 max_file_store: 8589934592\n  sync_interval: \"{sync}\"\n}}\n",
                client[i],
                store.display()
            );
            if nodes > 1 {
                let routes: Vec<String> = (0..nodes)
                    .filter(|&j| j != i)
                    .map(|j| format!("nats-route://127.0.0.1:{}", route[j]))
                    .collect();
                write!(
                    conf,
                    "cluster {{\n  name: test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                    route[i],
                    routes.join(", ")
                )?;
            }
            let path = dir.path().join(format!("{name}.conf"));
            std::fs::write(&path, conf)?;
            list.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                port: client[i],
                conf: path,
                child: None,
                paused: false,
            });
        }
        let mut me = Self {
            label: label.to_string(),
            nodes: list,
            bin,
            _dir: dir,
        };
        for i in 0..nodes {
            me.spawn(i)?;
        }
        Ok(me)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.conf)
            .arg("-l")
            .arg(&node.log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Every node's URL, comma-separated (what `NATS_URL` takes).
    #[must_use]
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(Node::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The replicas this deployment can hold: 1, or 3 for a cluster.
    #[must_use]
    pub fn replicas(&self) -> usize {
        self.nodes.len().min(3)
    }

    /// The running nodes' process ids.
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// A client of the cluster that knows every node (it fails over among them).
    ///
    /// # Errors
    /// No node answers.
    pub async fn client(&self) -> anyhow::Result<crate::Client> {
        let addrs: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .map(|n| n.url().parse())
            .collect::<Result<_, _>>()?;
        let nats = async_nats::ConnectOptions::new()
            .request_timeout(Some(Duration::from_secs(15)))
            .retry_on_initial_connect()
            .connect(addrs)
            .await?;
        Ok(crate::Client { nats })
    }

    /// Waits until every running node listens (10 s each) and JetStream answers account info
    /// through each (a cluster has elected its meta leader).
    ///
    /// # Errors
    /// Not within `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        for n in self.nodes.iter().filter(|n| n.is_up()) {
            anyhow::ensure!(
                wait_for_port(n.port, Duration::from_secs(10)),
                "nats-server {} did not listen: {}",
                n.name,
                tail(&n.log, 20)
            );
        }
        let deadline = Instant::now() + timeout;
        for n in self.nodes.iter().filter(|n| n.is_up() && !n.paused) {
            loop {
                let ok = async {
                    let c = async_nats::connect(n.url()).await.ok()?;
                    let js = async_nats::jetstream::new(c);
                    tokio::time::timeout(Duration::from_secs(2), js.query_account())
                        .await
                        .ok()?
                        .ok()
                }
                .await
                .is_some();
                if ok {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "JetStream did not answer on {} within {timeout:?}",
                    n.name
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Waits until JetStream takes a stream of [`NatsCluster::replicas`] (a cluster needs its meta
    /// leader first) by creating `stream` over `subjects`; returns a connected client.
    ///
    /// # Errors
    /// Not ready within 60 s.
    pub async fn wait_jetstream(
        &self,
        stream: &str,
        subjects: &str,
    ) -> anyhow::Result<crate::Client> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = async {
                let client = crate::Client::connect(&self.url()).await?;
                let js = async_nats::jetstream::new(client.nats.clone());
                js.create_or_update_stream(async_nats::jetstream::stream::Config {
                    name: stream.into(),
                    subjects: vec![subjects.into()],
                    num_replicas: self.replicas(),
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok::<_, anyhow::Error>(client)
            };
            match attempt.await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context(format!("{} did not become ready", self.label)))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// The index of the node that leads `stream` (from the stream's cluster info).
    ///
    /// # Errors
    /// The stream's info is not available.
    pub async fn leader_of(&self, c: &crate::Client, stream: &str) -> anyhow::Result<usize> {
        let js = async_nats::jetstream::new(c.nats.clone());
        let mut s = js.get_stream(stream).await?;
        let info = s.info().await?;
        let leader = info
            .cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .context("the stream has no leader")?;
        self.nodes
            .iter()
            .position(|n| n.name == leader)
            .with_context(|| format!("leader {leader} is not one of the nodes"))
    }

    /// kill -9 node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    /// Starts node `i` again on its ports and store.
    ///
    /// # Errors
    /// It did not start listening.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        anyhow::ensure!(
            wait_for_port(self.nodes[i].port, Duration::from_secs(10)),
            "nats-server {} did not start again",
            self.nodes[i].name
        );
        Ok(())
    }

    /// SIGSTOP node `i`: to the others it is gone, its sockets stay open.
    pub fn pause(&mut self, i: usize) {
        if let Some(c) = &self.nodes[i].child {
            signal(c.id(), "STOP");
            self.nodes[i].paused = true;
        }
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) {
        if let Some(c) = &self.nodes[i].child {
            signal(c.id(), "CONT");
        }
        self.nodes[i].paused = false;
    }

    /// The tail of node `i`'s log (for a failure message).
    #[must_use]
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        tail(&self.nodes[i].log, lines)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                self.resume(i);
            }
            self.kill(i);
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The `switchyard` binary of this build: `$SWITCHYARD_BIN`, else built (`cargo build -p switchyard`,
/// a no-op when it is fresh) into the target directory these tests run from.
///
/// # Errors
/// It could not be built.
pub fn switchyard_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SWITCHYARD_BIN") {
        return Ok(PathBuf::from(p));
    }
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/deps/<test binary>
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .ok_or("no target directory")?
                .to_path_buf();
            let target = profile_dir.parent().ok_or("no target directory")?;
            let profile = profile_dir
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or("debug")
                .to_string();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            // Without the variables cargo and nextest set for this test: build scripts would see
            // them as a change and the next `cargo test` would build everything again.
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy().to_string();
                let keep = matches!(k.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR")
                    || k.starts_with("CARGO_BUILD_");
                let drop = k.starts_with("CARGO")
                    || k.contains("NEXTEST")
                    || k.starts_with("RUST_TEST")
                    || matches!(
                        k.as_str(),
                        "OUT_DIR"
                            | "DEBUG"
                            | "OPT_LEVEL"
                            | "PROFILE"
                            | "TARGET"
                            | "HOST"
                            | "NUM_JOBS"
                    );
                if drop && !keep {
                    cmd.env_remove(&k);
                }
            }
            cmd.args(["build", "-q", "-p", "switchyard", "--bin", "switchyard"])
                .arg("--target-dir")
                .arg(target)
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
            if profile == "release" {
                cmd.arg("--release");
            }
            let out = cmd.output().map_err(|e| format!("cargo build: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "cargo build -p switchyard failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(profile_dir.join("switchyard"))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// One `switchyard run` process (the real binary), killable and restartable with the same settings.
pub struct Process {
    pub name: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Starts `switchyard run <services>` with `env` and waits for "switchyard ready".
    ///
    /// # Errors
    /// It exited or did not become ready in 90 s.
    pub async fn start(
        name: &str,
        dir: &Path,
        services: &[&str],
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let mut p = Self {
            name: name.into(),
            env,
            args: services.iter().map(|s| (*s).to_string()).collect(),
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        p.restart().await?;
        Ok(p)
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again (after [`Process::kill`]) and waits until it is ready.
    ///
    /// # Errors
    /// As [`Process::start`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let bin = switchyard_bin()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mark = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let child = Command::new(bin)
            .arg("run")
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting switchyard")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let text = std::fs::read(&self.log).unwrap_or_default();
            let new = String::from_utf8_lossy(&text[(mark as usize).min(text.len())..]).to_string();
            if new.contains("switchyard ready") {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    anyhow::bail!("{} exited ({status}): {}", self.name, self.log_tail(20));
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} not ready in 90 s: {}",
                self.name,
                self.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of its output.
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Lines of its output that contain `needle`.
    #[must_use]
    pub fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
