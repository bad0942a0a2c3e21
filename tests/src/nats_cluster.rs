//! nats-server deployments of the tests' and the bench's own: one node or a 3-node JetStream cluster
//! on loopback (routes between all nodes, a store directory per node), with a chosen
//! `sync_interval`. Killed on drop.

use crate::{free_port, nats_server_bin};
use anyhow::Context as _;
use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One nats-server or a cluster of them.
pub struct NatsDeployment {
    /// A name for tables and messages.
    pub label: String,
    /// Its nodes' client ports.
    pub ports: Vec<u16>,
    nodes: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl NatsDeployment {
    /// Starts `nodes` servers (1, or 3 for a cluster) with `sync_interval: "<sync>"` (`2m`, the
    /// server's default, or `always`); they are ready once [`NatsDeployment::wait_jetstream`] is.
    ///
    /// # Errors
    /// No usable nats-server, or one did not start.
    pub fn start(label: &str, nodes: usize, sync: &str) -> anyhow::Result<Self> {
        let bin = nats_server_bin()?;
        let dir = tempfile::tempdir()?;
        let ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let mut children = Vec::new();
        for i in 0..nodes {
            let store = dir.path().join(format!("n{i}"));
            let mut conf = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{}\nmax_payload: 8MB\nmax_pending: 256MB\n\
                 jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 268435456\n  \
                 max_file_store: 8589934592\n  sync_interval: \"{sync}\"\n}}\n",
                ports[i],
                store.display()
            );
            if nodes > 1 {
                let others: Vec<String> = (0..nodes)
                    .filter(|&j| j != i)
                    .map(|j| format!("    nats-route://127.0.0.1:{}", routes[j]))
                    .collect();
                write!(
                    conf,
                    "cluster {{\n  name: test\n  listen: 127.0.0.1:{}\n  routes: [\n{}\n  ]\n}}\n",
                    routes[i],
                    others.join("\n")
                )?;
            }
            let path = dir.path().join(format!("n{i}.conf"));
            std::fs::write(&path, conf)?;
            children.push(
                Command::new(&bin)
                    .arg("-c")
                    .arg(&path)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .with_context(|| format!("starting {}", bin.display()))?,
            );
        }
        Ok(Self {
            label: label.to_string(),
            ports,
            nodes: children,
            _dir: dir,
        })
    }

    /// Every node, as `NATS_URL` lists them.
    #[must_use]
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The replicas this deployment can hold: 1, or 3 for a cluster.
    #[must_use]
    pub fn replicas(&self) -> usize {
        self.nodes.len().min(3)
    }

    /// The nodes' process ids.
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(Child::id).collect()
    }

    /// Kills node `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        let _ = self.nodes[i].kill();
        let _ = self.nodes[i].wait();
    }

    /// Waits until JetStream takes a stream of [`NatsDeployment::replicas`] (a cluster needs its
    /// meta leader first) by creating `stream` over `subjects`; returns a connected client.
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
}

impl Drop for NatsDeployment {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
