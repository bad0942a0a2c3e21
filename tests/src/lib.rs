//! Test harness: a real nats-server on a free port (stoppable and restartable), a fresh PostgreSQL
//! database per test, services started in-process in their own tokio runtime (so a test can kill
//! them like a process), and a client that talks to them only through NATS, as users do.

pub mod browser;
pub mod cluster;
pub mod history;
pub mod load;
pub mod shop_load;

use anyhow::Context as _;
use bytes::Bytes;
use serde_json::Value;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Finds a program on PATH or in the usual Debian places.
#[must_use]
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.push("/usr/local/sbin".into());
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        dirs.extend(versions.into_iter().rev());
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The oldest nats-server the tests run against (`runtime::nats::MIN_SERVER_VERSION`).
pub use runtime::nats::MIN_SERVER_VERSION;

/// The nats-server the tests use: `$SWITCHYARD_NATS_SERVER`, else `<repo root>/var/bin/nats-server`
/// (what `infra/up.sh` installs), else `nats-server` on PATH; one older than
/// [`MIN_SERVER_VERSION`] is refused with a message saying how to get a current one.
///
/// # Errors
/// None found, or the one found is too old.
pub fn nats_server_bin() -> anyhow::Result<PathBuf> {
    static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| find_nats_server().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

fn find_nats_server() -> anyhow::Result<PathBuf> {
    let min = runtime::nats::min_server_version();
    let repo_var = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../var/bin/nats-server");
    let bin = if let Some(p) = std::env::var_os("SWITCHYARD_NATS_SERVER").filter(|p| !p.is_empty())
    {
        PathBuf::from(p)
    } else if repo_var.is_file() {
        repo_var
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join("nats-server")).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.is_file())
            .with_context(|| {
                format!("no nats-server found: run `bash infra/up.sh` (or `make test`), which installs {min} or newer into ./var/bin")
            })?
    };
    check_nats_server(bin)
}

/// `bin` when it is a nats-server of at least [`MIN_SERVER_VERSION`].
///
/// # Errors
/// It does not run, or it is older (the message names its version, the minimum and the fix).
pub fn check_nats_server(bin: PathBuf) -> anyhow::Result<PathBuf> {
    let min = runtime::nats::min_server_version();
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    match runtime::nats::parse_version(&version) {
        Some(v) if v >= MIN_SERVER_VERSION => Ok(bin),
        _ => anyhow::bail!(
            "{} is nats-server {version:?}, older than {min}, the oldest Switchyard supports: run \
             `bash infra/up.sh` (installs 2.15.1 into ./var/bin) or set SWITCHYARD_NATS_SERVER",
            bin.display()
        ),
    }
}

/// A free TCP port on 127.0.0.1.
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Waits until something listens on 127.0.0.1:`port`.
#[must_use]
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A nats-server with JetStream (file store) of the test's own; killed on drop.
pub struct NatsServer {
    pub port: u16,
    /// The WebSocket listener (`no_tls`, loopback) for browser clients such as the dashboard.
    pub ws_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Appended to the generated config (e.g. `include auth.conf`).
    extra_conf: String,
    /// Added to the `websocket` block (e.g. `no_auth_user: dashboard`).
    ws_extra: String,
}

impl NatsServer {
    /// Starts a server on a free port with the project's settings (`max_payload` 8 MiB, `max_pending` 256 MiB).
    ///
    /// # Errors
    /// No nats-server binary, or it did not start.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        Self::start_in(dir, String::new(), String::new())
    }

    /// As [`NatsServer::start`] with the accounts, users and permissions that `infra/auth.sh`
    /// writes (the set-up's own generator, run into the server's directory), and, as `infra/up.sh`
    /// has it, the WebSocket listener binding credential-less connections to the read-only
    /// `dashboard` user. Returns the server and the directory holding `creds/<user>.env`.
    ///
    /// # Errors
    /// The generator or the server failed.
    pub fn start_with_auth() -> anyhow::Result<(Self, PathBuf)> {
        let dir = tempfile::tempdir()?;
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/auth.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(dir.path())
            .status()
            .context("running infra/auth.sh")?;
        anyhow::ensure!(status.success(), "infra/auth.sh failed: {status}");
        let path = dir.path().to_path_buf();
        Ok((
            Self::start_in(
                dir,
                "include auth.conf\n".into(),
                "  no_auth_user: dashboard\n".into(),
            )?,
            path,
        ))
    }

    fn start_in(
        dir: tempfile::TempDir,
        extra_conf: String,
        ws_extra: String,
    ) -> anyhow::Result<Self> {
        let mut s = Self {
            port: free_port(),
            ws_port: free_port(),
            dir,
            child: None,
            extra_conf,
            ws_extra,
        };
        // Another test may take the same free port between our probe and the server's bind: then
        // the server exits at once, and we try another port.
        for _ in 0..5 {
            s.restart()?;
            std::thread::sleep(Duration::from_millis(30));
            if s.child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
            {
                return Ok(s);
            }
            s.stop();
            s.port = free_port();
            s.ws_port = free_port();
        }
        anyhow::bail!("nats-server did not stay up")
    }

    /// The server's process id, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `nats://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:<ws_port>`: the WebSocket listener.
    #[must_use]
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    /// Starts the server again (same port, same store) after [`NatsServer::stop`].
    ///
    /// # Errors
    /// It did not start.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let bin = nats_server_bin()?;
        let conf = self.dir.path().join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{}\nwebsocket {{\n  listen: 127.0.0.1:{}\n  no_tls: true\n{}}}\nmax_payload: 8MB\nmax_pending: 256MB\njetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 268435456\n  max_file_store: 8589934592\n}}\n{}",
                self.port,
                self.ws_port,
                self.ws_extra,
                self.dir.path().join("js").display(),
                self.extra_conf
            ),
        )?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        anyhow::ensure!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "nats-server did not start"
        );
        Ok(())
    }

    /// Stops the server the hard way (SIGKILL): what was acknowledged must survive.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The PostgreSQL server tests create their databases in (`DATABASE_URL`, else the local default).
#[must_use]
pub fn admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database, dropped when the test ends.
pub struct TestDb {
    pub url: String,
    admin: String,
    name: String,
}

impl TestDb {
    /// Creates `t_<uuid>` on the server of [`admin_url`] (or of `admin` if given).
    ///
    /// # Errors
    /// The server is not reachable.
    pub async fn create_on(admin: &str) -> anyhow::Result<Self> {
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        let admin_db = runtime::db::with_database(admin, "postgres");
        let mut conn = sqlx::PgConnection::connect_with_url(&admin_db).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await?;
        Ok(Self {
            url: runtime::db::with_database(admin, &name),
            admin: admin_db,
            name,
        })
    }

    /// Creates a database on the default server.
    ///
    /// # Errors
    /// As [`TestDb::create_on`].
    pub async fn create() -> anyhow::Result<Self> {
        Self::create_on(&admin_url()).await
    }
}

trait ConnectUrl: Sized {
    async fn connect_with_url(url: &str) -> anyhow::Result<Self>;
}

impl ConnectUrl for sqlx::PgConnection {
    async fn connect_with_url(url: &str) -> anyhow::Result<Self> {
        Ok(<sqlx::PgConnection as sqlx::Connection>::connect(url).await?)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop the database from a thread of its own: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect_with_url(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A set of services running in a tokio runtime of their own, like a process: [`Services::kill`]
/// drops every task and connection at once.
pub struct Services {
    rt: Option<tokio::runtime::Runtime>,
    pub http_addr: Option<std::net::SocketAddr>,
}

impl Services {
    /// Starts `names` (all when empty) with the runtime section `config` (every context's section
    /// from the environment) and waits until they are ready.
    ///
    /// # Errors
    /// They did not start.
    pub async fn start(config: runtime::Config, names: &[&str]) -> anyhow::Result<Self> {
        Self::start_configured(switchyard::Configuration::with_runtime(config)?, names).await
    }

    /// [`Services::start`] with the whole configuration.
    ///
    /// # Errors
    /// They did not start.
    pub async fn start_configured(
        config: switchyard::Configuration,
        names: &[&str],
    ) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let names: Vec<String> = names.iter().map(|s| (*s).to_string()).collect();
        let (tx, rx) = tokio::sync::oneshot::channel();
        rt.spawn(async move {
            let result = async {
                let selected = switchyard::select(&names)?;
                let running = switchyard::start(config, &selected).await?;
                Ok::<_, anyhow::Error>(running.http_addr)
            }
            .await;
            let _ = tx.send(result.map_err(|e| format!("{e:#}")));
            std::future::pending::<()>().await;
        });
        // Owned before the first `?`, so that an early return shuts the runtime down (Drop).
        let mut me = Self {
            rt: Some(rt),
            http_addr: None,
        };
        me.http_addr = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .context("services did not become ready in 60 s")??
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(me)
    }

    /// Kills the services: no graceful shutdown, in-flight work is lost as in a crash.
    pub fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One test's world: its own nats-server and database.
pub struct TestEnv {
    pub nats: NatsServer,
    pub db: TestDb,
}

impl TestEnv {
    /// Starts a nats-server and creates a database.
    ///
    /// # Errors
    /// Either failed.
    pub async fn new() -> anyhow::Result<Self> {
        init_logging();
        Ok(Self {
            nats: NatsServer::start()?,
            db: TestDb::create().await?,
        })
    }

    /// A configuration pointing at this environment.
    #[must_use]
    pub fn config(&self) -> runtime::Config {
        runtime::Config::for_urls(&self.nats.url(), &self.db.url)
    }

    /// Starts services (all when `names` is empty).
    ///
    /// # Errors
    /// They did not start.
    pub async fn services(&self, names: &[&str]) -> anyhow::Result<Services> {
        Services::start(self.config(), names).await
    }

    /// A client of this environment's NATS.
    ///
    /// # Errors
    /// NATS unreachable.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Client::connect(&self.nats.url()).await
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A reply as a client sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// `Nats-Service-Error-Code`, when the reply is an error.
    pub status: Option<u16>,
    /// `Nats-Service-Error`.
    pub error_header: Option<String>,
    pub body: Value,
    pub raw: Bytes,
}

impl Reply {
    /// The error code of an error reply.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        self.body
            .get("error")
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
    }

    /// Panics with the reply unless it is a success.
    pub fn ok(self) -> Value {
        assert!(
            self.status.is_none() && self.body.get("error").is_none(),
            "expected success, got {:?}",
            self.body
        );
        self.body
    }

    /// Asserts the reply is the error `code` with the matching status header.
    pub fn assert_error(&self, code: &str, status: u16) {
        assert_eq!(self.code(), Some(code), "reply: {}", self.body);
        assert_eq!(self.status, Some(status), "status header for {}", self.body);
        assert!(
            self.error_header.as_deref().is_some_and(|m| !m.is_empty()),
            "Nats-Service-Error header missing"
        );
        let msg = self.body["error"]["message"].as_str().unwrap_or_default();
        assert!(!msg.is_empty(), "error message must say what to fix");
    }
}

/// A NATS client that sends requests as an outside user would.
#[derive(Clone)]
pub struct Client {
    pub nats: async_nats::Client,
}

impl Client {
    /// Connects (`url` is one server or a comma-separated list, as `NATS_URL`).
    ///
    /// # Errors
    /// NATS unreachable.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let nats = async_nats::ConnectOptions::new()
            .request_timeout(Some(Duration::from_secs(15)))
            .connect(runtime::nats::server_addrs(url)?)
            .await?;
        Ok(Self { nats })
    }

    /// Sends raw bytes with optional headers and reads the reply.
    ///
    /// # Errors
    /// No reply.
    pub async fn request_raw(
        &self,
        subject: &str,
        headers: Option<async_nats::HeaderMap>,
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let msg = match headers {
            Some(h) => {
                self.nats
                    .request_with_headers(subject.to_string(), h, body)
                    .await?
            }
            None => self.nats.request(subject.to_string(), body).await?,
        };
        let status = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error-Code"))
            .and_then(|v| v.as_str().parse().ok());
        let error_header = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error"))
            .map(|v| v.as_str().to_string());
        let body = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            error_header,
            body,
            raw: msg.payload,
        })
    }

    /// Sends a JSON body.
    ///
    /// # Errors
    /// No reply.
    pub async fn request(&self, subject: &str, body: &Value) -> anyhow::Result<Reply> {
        self.request_raw(subject, None, Bytes::from(serde_json::to_vec(body)?))
            .await
    }

    /// Sends a JSON body with a `Nats-Msg-Id`.
    ///
    /// # Errors
    /// No reply.
    pub async fn request_with_id(
        &self,
        subject: &str,
        msg_id: &str,
        body: &Value,
    ) -> anyhow::Result<Reply> {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", msg_id);
        self.request_raw(subject, Some(h), Bytes::from(serde_json::to_vec(body)?))
            .await
    }

    /// Sends a JSON command and returns only its `seq` (parses no more of the reply than that).
    ///
    /// # Errors
    /// No reply, or an error reply.
    pub async fn command_seq(&self, subject: &str, body: &Value) -> anyhow::Result<u64> {
        #[derive(serde::Deserialize)]
        struct Seq {
            #[serde(default)]
            seq: u64,
            #[serde(default)]
            error: Option<serde::de::IgnoredAny>,
        }
        let msg = self
            .nats
            .request(subject.to_string(), Bytes::from(serde_json::to_vec(body)?))
            .await?;
        let r: Seq = serde_json::from_slice(&msg.payload)?;
        anyhow::ensure!(
            r.error.is_none(),
            "{subject}: {}",
            String::from_utf8_lossy(&msg.payload)
        );
        Ok(r.seq)
    }

    /// Number of messages in a stream (what was appended).
    ///
    /// # Errors
    /// JetStream unreachable.
    pub async fn stream_len(&self, stream: &str) -> anyhow::Result<u64> {
        let js = async_nats::jetstream::new(self.nats.clone());
        let mut s = js.get_stream(stream).await?;
        Ok(s.info().await?.state.messages)
    }
}

/// A PostgreSQL cluster of the test's own (initdb in a temp dir), so a test can stop and start it.
pub struct PgCluster {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl PgCluster {
    fn run_as_owner(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        let out = cmd
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Creates and starts a cluster on a free port.
    ///
    /// # Errors
    /// No PostgreSQL binaries, or it did not start.
    pub fn start() -> anyhow::Result<Self> {
        let initdb = find_program("initdb")
            .context("initdb not found: run `make test` (it installs PostgreSQL)")?;
        let bin = initdb.parent().map(PathBuf::from).unwrap_or_default();
        let dir = tempfile::tempdir()?;
        if is_root() {
            let _ = Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(dir.path())
                .status();
        }
        let me = Self {
            port: free_port(),
            dir,
            bin,
        };
        let data = me.data();
        me.run_as_owner(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        me.resume()?;
        Ok(me)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    #[must_use]
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (`-m immediate`, like a crash).
    ///
    /// # Errors
    /// pg_ctl failed.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.run_as_owner(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
    }

    /// Starts it again.
    ///
    /// # Errors
    /// pg_ctl failed.
    pub fn resume(&self) -> anyhow::Result<()> {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k /tmp -c fsync=off",
            self.port
        );
        let log = self.dir.path().join("pg.log").display().to_string();
        self.run_as_owner(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Client {
    /// Sends a JSON command with a `Nats-Msg-Id` until it gets a reply (no responders, timeouts and
    /// `unavailable` are retried), as a careful client does across a crash.
    ///
    /// # Errors
    /// No success within `deadline`.
    pub async fn command_until_done(
        &self,
        subject: &str,
        msg_id: &str,
        body: &Value,
        deadline: Duration,
    ) -> anyhow::Result<Value> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", msg_id);
            let req = async_nats::Request::new()
                .headers(h)
                .payload(Bytes::from(serde_json::to_vec(body)?))
                .timeout(Some(Duration::from_secs(2)));
            if let Ok(msg) = self.nats.send_request(subject.to_string(), req).await {
                let v: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
                match v
                    .get("error")
                    .and_then(|e| e.get("code"))
                    .and_then(Value::as_str)
                {
                    None => return Ok(v),
                    Some("unavailable") => {}
                    Some(_) => anyhow::bail!("{subject} rejected: {v}"),
                }
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < until,
                "{subject} {msg_id} not done in time"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What a probe of [`eventually`] answers: `true` / `Some(value)` when done.
pub trait Probe {
    /// What `eventually` returns.
    type Value;
    /// The value, when the probe is done.
    fn done(self) -> Option<Self::Value>;
}

impl Probe for bool {
    type Value = ();
    fn done(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Probe for Option<T> {
    type Value = T;
    fn done(self) -> Option<T> {
        self
    }
}

/// Runs `probe` every 50 ms until it is done (`true`, or `Some(value)`: the value is returned).
///
/// # Panics
/// Not done within `timeout`: "timed out waiting for {what}".
pub async fn eventually<P, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> P::Value
where
    P: Probe,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = P>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await.done() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
