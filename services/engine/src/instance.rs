//! One engine instance: its live view of the stream, its membership in the KV bucket
//! `ENGINE_INSTANCES`, the modules it owns and runs, and the watch messages it publishes.
//!
//! Membership: every instance puts a [`InstanceHeartbeat`] under its id every `heartbeat` and watches the
//! bucket; an instance not heard from for `dead_after` is dead. The live set (sorted ids) decides
//! ownership by rendezvous hashing: modules run on their owner; watch subjects of a system are
//! published by the system's owner, status subjects by the module's owner. On a change of the live
//! set an instance starts the modules it gained, drops those it lost, re-publishes the current
//! values of what it gained (so nothing is lost while ownership moved), then reports `started`
//! for that live set. The leader (lowest live id) publishes `ready` on `engine.system` once every
//! live instance reports `started` for the same live set.

use crate::domain::{self, Owned};
use crate::drivers::{Call, Driver, StatusSink};
use crate::view::{Effect, View};
use async_nats::jetstream::{self, kv};
use futures::future::BoxFuture;
use futures::StreamExt;
use runtime::follow::Follower;
use runtime::store::{EventStore, Repository};
use runtime::{Ctx, ServiceError};
use schemas::engine::{self as wire, InstanceHeartbeat, OwnerExec};
use schemas::ErrorCode;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// Name of the membership bucket.
pub const INSTANCES_BUCKET: &str = "ENGINE_INSTANCES";
/// Header an instance sets on a forwarded exec it does not own (the sender retries).
pub const NOT_OWNER_HEADER: &str = "Engine-Not-Owner";

/// The engine's section of the configuration: the secret of `engine.exec` tokens, and the timing
/// of membership and exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SWITCHYARD_TOKEN_SECRET`: the HS256 secret of `engine.exec` tokens.
    pub token_secret: String,
    /// `SWITCHYARD_ENGINE_HEARTBEAT_MS` (default 1000): how often an instance puts its heartbeat.
    pub heartbeat: Duration,
    /// `SWITCHYARD_ENGINE_DEAD_MS` (default 3 heartbeats): silence after which an instance is dead.
    pub dead_after: Duration,
    /// `SWITCHYARD_ENGINE_DRIVER_TIMEOUT_MS` (default 5000): a driver call that takes longer is
    /// `unavailable`.
    pub driver_timeout: Duration,
}

impl Settings {
    /// Reads the environment.
    ///
    /// # Errors
    /// A setting that does not parse or is 0, named.
    pub fn from_env() -> anyhow::Result<Self> {
        use runtime::config::positive;
        let heartbeat =
            Duration::from_millis(positive("SWITCHYARD_ENGINE_HEARTBEAT_MS", 1000)?.max(20));
        let dead_after = match runtime::config::setting::<u64>("SWITCHYARD_ENGINE_DEAD_MS", 0)? {
            0 => heartbeat * 3,
            ms => Duration::from_millis(ms),
        }
        .max(heartbeat * 2);
        let driver_timeout =
            Duration::from_millis(positive("SWITCHYARD_ENGINE_DRIVER_TIMEOUT_MS", 5000)?);
        Ok(Self {
            token_secret: runtime::config::var("SWITCHYARD_TOKEN_SECRET")
                .unwrap_or_else(|| DEV_SECRET.into()),
            heartbeat,
            dead_after,
            driver_timeout,
        })
    }
}

/// The token secret when `SWITCHYARD_TOKEN_SECRET` is not set (for development only).
pub const DEV_SECRET: &str = "switchyard-dev-secret-change-me";

impl Default for Settings {
    fn default() -> Self {
        Self {
            token_secret: DEV_SECRET.into(),
            heartbeat: Duration::from_millis(1000),
            dead_after: Duration::from_millis(3000),
            driver_timeout: Duration::from_millis(5000),
        }
    }
}

/// Opens (creating or updating in place, `replicas` included) the KV bucket [`INSTANCES_BUCKET`]:
/// one entry per key, entries older than 5 minutes dropped.
///
/// # Errors
/// JetStream not reachable, or fewer servers than `replicas`.
pub async fn membership_bucket(
    js: &jetstream::Context,
    replicas: usize,
) -> anyhow::Result<kv::Store> {
    runtime::nats::ensure_kv(
        js,
        kv::Config {
            bucket: INSTANCES_BUCKET.into(),
            description: "engine instance heartbeats".into(),
            history: 1,
            max_age: Duration::from_secs(300),
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        },
    )
    .await
}

/// Turns `config.instance` into an id that is a valid KV key and subject token, unique per start.
#[must_use]
pub fn instance_id(configured: &str) -> String {
    let base: String = configured
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    format!("{base}-{}", &suffix[suffix.len() - 8..])
}

#[derive(Debug, Clone)]
struct Member {
    seen: Instant,
    beat: InstanceHeartbeat,
}

/// Why an owner could not run a forwarded call.
pub enum OwnerError {
    /// This instance does not own the module (the sender retries with its fresh view).
    NotOwner,
    /// A contract error.
    Service(ServiceError),
}

/// Shared state of one engine instance.
pub struct Engine {
    pub ctx: Ctx,
    pub me: String,
    pub settings: Settings,
    pub store: EventStore,
    pub drivers_repo: Repository<domain::DriverState>,
    pub modules_repo: Repository<domain::ModuleState>,
    pub systems_repo: Repository<domain::SystemState>,
    pub view: RwLock<View>,
    view_seq: watch::Sender<u64>,
    /// Sorted ids of the live instances as this instance sees them.
    pub live: watch::Sender<Arc<Vec<String>>>,
    pub impls: HashMap<&'static str, Arc<dyn Driver>>,
    /// Modules this instance has started (module id -> driver).
    running: Mutex<HashMap<String, Arc<dyn Driver>>>,
    members: Mutex<BTreeMap<String, Member>>,
    membership_changed: Notify,
    /// (live hash, started) of this instance, as its heartbeat reports.
    applied: Mutex<(u64, bool)>,
    announced: Mutex<Option<u64>>,
    beat: std::sync::atomic::AtomicU64,
    kv: kv::Store,
}

impl Engine {
    /// Builds the instance (nothing runs yet).
    ///
    /// # Errors
    /// JetStream not reachable.
    pub async fn new(
        ctx: &Ctx,
        store: EventStore,
        settings: Settings,
    ) -> anyhow::Result<Arc<Self>> {
        let kv = membership_bucket(&ctx.js, ctx.config.replicas).await?;
        let impls = crate::drivers::builtin()
            .into_iter()
            .map(|d| (d.id(), d))
            .collect();
        Ok(Arc::new(Self {
            me: instance_id(&ctx.config.instance),
            settings,
            drivers_repo: ctx.repository(&store, "engine"),
            modules_repo: ctx.repository(&store, "engine"),
            systems_repo: ctx.repository(&store, "engine"),
            store,
            view: RwLock::new(View::default()),
            view_seq: watch::channel(0).0,
            live: watch::channel(Arc::new(Vec::new())).0,
            impls,
            running: Mutex::new(HashMap::new()),
            members: Mutex::new(BTreeMap::new()),
            membership_changed: Notify::new(),
            applied: Mutex::new((0, false)),
            announced: Mutex::new(None),
            beat: std::sync::atomic::AtomicU64::new(0),
            kv,
            ctx: ctx.clone(),
        }))
    }

    /// Reads the view.
    pub fn read_view<T>(&self, f: impl FnOnce(&View) -> T) -> T {
        match self.view.read() {
            Ok(v) => f(&v),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// The live set now.
    #[must_use]
    pub fn live_now(&self) -> Arc<Vec<String>> {
        self.live.borrow().clone()
    }

    // -----------------------------------------------------------------------------------------
    // The view

    /// Follows the stream into the view for as long as the process runs.
    pub fn spawn_follower(self: &Arc<Self>) {
        let me = self.clone();
        let mut follower = Follower::new(
            &self.ctx.js,
            self.store.name(),
            &format!("engine view of {}", self.me),
        )
        .subjects("engine.events.>")
        .from(self.read_view(|v| v.seq) + 1);
        tokio::spawn(async move {
            loop {
                for m in follower.next(256).await {
                    let effects = {
                        let mut view = match me.view.write() {
                            Ok(v) => v,
                            Err(p) => p.into_inner(),
                        };
                        if m.seq <= view.seq {
                            continue;
                        }
                        match m.event::<domain::Event>() {
                            Ok((_, event)) => view.apply(m.seq, &event),
                            Err(e) => {
                                tracing::error!(seq = m.seq, error = %e, "an engine event does not decode; skipped in the view");
                                view.seq = m.seq;
                                Vec::new()
                            }
                        }
                    };
                    me.view_seq.send_replace(m.seq);
                    me.publish(effects, &me.live_now()).await;
                }
            }
        });
    }

    /// Waits until the view has folded `seq` (at most `timeout`); true when it has.
    pub async fn wait_view(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.view_seq.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Brings the view up to the stream's end as it is now (used when the view misses something a
    /// client may just have created).
    ///
    /// # Errors
    /// `unavailable` when the stream does not answer or the view does not catch up in `timeout`.
    pub async fn sync_view(&self, timeout: Duration) -> Result<(), ServiceError> {
        let last = self.store.last_seq().await.map_err(|e| {
            ServiceError::unavailable(format!("the event store is unavailable: {e}"))
        })?;
        if self.wait_view(last, timeout).await {
            Ok(())
        } else {
            Err(ServiceError::unavailable(format!(
                "the engine view has not reached sequence {last} within {} ms",
                timeout.as_millis()
            )))
        }
    }

    /// Publishes the effects this instance is responsible for under `live`.
    async fn publish(&self, effects: Vec<Effect>, live: &[String]) {
        for e in effects {
            let (subject, value) = match &e {
                Effect::Status {
                    module_id,
                    name,
                    value,
                } => {
                    if domain::owner(live, Owned::Module(module_id)) != Some(self.me.as_str()) {
                        continue;
                    }
                    (domain::status_subject(module_id, name), value)
                }
                Effect::Watch {
                    system_id,
                    place,
                    name,
                    value,
                } => {
                    if domain::owner(live, Owned::System(system_id)) != Some(self.me.as_str()) {
                        continue;
                    }
                    (domain::watch_subject(system_id, place, name), value)
                }
            };
            let payload = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
            if let Err(e) = self.ctx.client.publish(subject, payload.into()).await {
                tracing::warn!(error = %e, "could not publish a watch message");
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Membership

    /// Joins: writes the first heartbeat, reads who else is there, applies the first live set and
    /// keeps heartbeating and watching for as long as the process runs.
    ///
    /// # Errors
    /// The bucket is unreachable at start.
    pub async fn join(self: &Arc<Self>) -> anyhow::Result<()> {
        let watch = self
            .kv
            .watch_with_history(">")
            .await
            .map_err(|e| anyhow::anyhow!("watching {INSTANCES_BUCKET}: {e}"))?;
        self.put_heartbeat().await?;
        let me = self.clone();
        tokio::spawn(async move { me.watch_members(watch).await });
        // The snapshot arrives quickly; wait until this instance sees itself.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .members
            .lock()
            .map(|m| m.contains_key(&self.me))
            .unwrap_or(false)
        {
            if Instant::now() > deadline {
                anyhow::bail!("the membership bucket did not show this instance within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.evaluate().await;
        let me = self.clone();
        tokio::spawn(async move { me.membership_loop().await });
        Ok(())
    }

    async fn put_heartbeat(&self) -> anyhow::Result<()> {
        let (live_hash, started) = self.applied.lock().map(|a| *a).unwrap_or((0, false));
        let beat = self.beat.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let hb = InstanceHeartbeat {
            instance_id: self.me.clone(),
            live_hash,
            started,
            beat,
        };
        let body = serde_json::to_vec(&hb)?;
        self.kv
            .put(&self.me, body.into())
            .await
            .map_err(|e| anyhow::anyhow!("heartbeat: {e}"))?;
        Ok(())
    }

    async fn watch_members(self: Arc<Self>, mut watch: kv::Watch) {
        loop {
            while let Some(entry) = watch.next().await {
                let Ok(entry) = entry else { continue };
                let changed = {
                    let Ok(mut members) = self.members.lock() else {
                        return;
                    };
                    match entry.operation {
                        kv::Operation::Put => {
                            match serde_json::from_slice::<InstanceHeartbeat>(&entry.value) {
                                Ok(beat) => {
                                    let age_ms = (time_now_ms()
                                        - entry.created.unix_timestamp_nanos() / 1_000_000)
                                        .max(0);
                                    let age =
                                        Duration::from_millis(u64::try_from(age_ms).unwrap_or(0))
                                            .min(self.settings.dead_after * 4);
                                    let seen = Instant::now()
                                        .checked_sub(age)
                                        .unwrap_or_else(Instant::now);
                                    let new = !members.contains_key(&entry.key);
                                    members.insert(entry.key.clone(), Member { seen, beat });
                                    new || entry.key != self.me
                                }
                                Err(_) => false,
                            }
                        }
                        kv::Operation::Delete | kv::Operation::Purge => {
                            members.remove(&entry.key).is_some()
                        }
                    }
                };
                if changed {
                    self.membership_changed.notify_one();
                }
            }
            // The watch ended (a reconnect): start it again.
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Ok(w) = self.kv.watch_with_history(">").await {
                    watch = w;
                    break;
                }
            }
        }
    }

    async fn membership_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut check =
            tokio::time::interval((self.settings.heartbeat / 4).max(Duration::from_millis(10)));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.put_heartbeat().await {
                        tracing::warn!(error = %e, "engine heartbeat failed");
                    }
                }
                _ = check.tick() => {}
                () = self.membership_changed.notified() => {}
            }
            self.evaluate().await;
        }
    }

    /// The live set by the latest heartbeats (always including this instance).
    fn compute_live(&self) -> Vec<String> {
        let now = Instant::now();
        let Ok(mut members) = self.members.lock() else {
            return vec![self.me.clone()];
        };
        // Forget instances that have been silent for long (their keys age out of the bucket too).
        let forget = self.settings.dead_after * 10;
        members.retain(|id, m| *id == self.me || now.duration_since(m.seen) < forget);
        let mut live: Vec<String> = members
            .iter()
            .filter(|(id, m)| {
                **id == self.me || now.duration_since(m.seen) < self.settings.dead_after
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !live.contains(&self.me) {
            live.push(self.me.clone());
        }
        live.sort();
        live
    }

    /// Applies a new live set if there is one, then lets the leader announce `ready` if due.
    async fn evaluate(self: &Arc<Self>) {
        let live = self.compute_live();
        let old = self.live_now();
        if *old != live {
            tracing::info!(instance = %self.me, live = ?live, "engine membership changed");
            self.rebalance(&old, live).await;
        }
        self.maybe_announce().await;
    }

    async fn rebalance(self: &Arc<Self>, old: &[String], live: Vec<String>) {
        let hash = domain::live_hash(&live);
        if let Ok(mut a) = self.applied.lock() {
            *a = (hash, false);
        }
        let live = Arc::new(live);
        self.live.send_replace(live.clone());
        let me = self.me.as_str();
        let (gained_modules, lost_modules, gained_systems, effects) = self.read_view(|v| {
            let mut gained = Vec::new();
            let mut lost = Vec::new();
            let mut effects = Vec::new();
            for (id, entry) in &v.modules {
                let now_mine = domain::owner(&live, Owned::Module(id)) == Some(me);
                let was_mine = domain::owner(old, Owned::Module(id)) == Some(me);
                if now_mine && !was_mine {
                    gained.push((id.clone(), entry.driver_id.clone()));
                    effects.extend(v.module_snapshot(id));
                } else if was_mine && !now_mine {
                    lost.push(id.clone());
                }
            }
            let mut systems = 0usize;
            for id in v.systems.keys() {
                if domain::owner(&live, Owned::System(id)) == Some(me)
                    && domain::owner(old, Owned::System(id)) != Some(me)
                {
                    systems += 1;
                    effects.extend(v.system_snapshot(id));
                }
            }
            (gained, lost, systems, effects)
        });
        if let Ok(mut running) = self.running.lock() {
            for id in &lost_modules {
                running.remove(id);
            }
            for (id, driver) in &gained_modules {
                if let Some(d) = self.impls.get(driver.as_str()) {
                    running.insert(id.clone(), d.clone());
                }
            }
        }
        tracing::info!(
            instance = %self.me,
            gained = gained_modules.len(),
            lost = lost_modules.len(),
            systems = gained_systems,
            "engine modules rebalanced"
        );
        self.publish(effects, &live).await;
        if let Ok(mut a) = self.applied.lock() {
            if a.0 == hash {
                a.1 = true;
            }
        }
        if let Err(e) = self.put_heartbeat().await {
            tracing::warn!(error = %e, "engine heartbeat failed");
        }
    }

    async fn maybe_announce(&self) {
        let live = self.live_now();
        if domain::leader(&live) != Some(self.me.as_str()) {
            return;
        }
        let hash = domain::live_hash(&live);
        if self
            .announced
            .lock()
            .map(|a| *a == Some(hash))
            .unwrap_or(true)
        {
            return;
        }
        let all_started = {
            let Ok(members) = self.members.lock() else {
                return;
            };
            live.iter().all(|id| {
                if *id == self.me {
                    self.applied
                        .lock()
                        .map(|a| *a == (hash, true))
                        .unwrap_or(false)
                } else {
                    members
                        .get(id)
                        .is_some_and(|m| m.beat.live_hash == hash && m.beat.started)
                }
            })
        };
        if !all_started {
            return;
        }
        if let Ok(mut a) = self.announced.lock() {
            *a = Some(hash);
        }
        tracing::info!(instance = %self.me, live = ?live, "engine leader: every instance has started its modules; ready");
        if let Err(e) = runtime::health::announce_ready(&self.ctx.client).await {
            tracing::warn!(error = %e, "could not announce ready");
        }
    }

    /// Whether this instance reports `started` for its current live set.
    #[must_use]
    pub fn started(&self) -> bool {
        self.applied.lock().map(|a| a.1).unwrap_or(false)
    }

    // -----------------------------------------------------------------------------------------
    // Running modules

    /// Serves forwarded calls on `engine.instance.<me>.exec`.
    ///
    /// # Errors
    /// NATS unreachable.
    pub async fn serve_owner(self: &Arc<Self>) -> anyhow::Result<()> {
        let subject = format!("engine.instance.{}.exec", self.me);
        let mut sub = self.ctx.client.subscribe(subject).await?;
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let Some(reply) = msg.reply.clone() else {
                        return;
                    };
                    let outcome = match serde_json::from_slice::<OwnerExec>(&msg.payload) {
                        Ok(call) => me.run_local(&call).await,
                        Err(e) => Err(OwnerError::Service(ServiceError::invalid(format!(
                            "bad forwarded call: {e}"
                        )))),
                    };
                    let sent = match outcome {
                        Ok(result) => {
                            let body = serde_json::to_vec(&schemas::engine::ExecReply { result })
                                .unwrap_or_default();
                            me.ctx.client.publish(reply, body.into()).await
                        }
                        Err(OwnerError::NotOwner) => {
                            let err =
                                ServiceError::unavailable("this instance does not own the module");
                            let (mut headers, body) =
                                runtime::service::error_reply(runtime::codec::Codec::Json, &err);
                            headers.insert(NOT_OWNER_HEADER, "1");
                            me.ctx
                                .client
                                .publish_with_headers(reply, headers, body)
                                .await
                        }
                        Err(OwnerError::Service(err)) => {
                            let (headers, body) =
                                runtime::service::error_reply(runtime::codec::Codec::Json, &err);
                            me.ctx
                                .client
                                .publish_with_headers(reply, headers, body)
                                .await
                        }
                    };
                    if let Err(e) = sent {
                        tracing::debug!(error = %e, "could not reply to a forwarded exec");
                    }
                });
            }
        });
        Ok(())
    }

    /// Runs a checked call on this instance, which must own the module.
    ///
    /// # Errors
    /// Not the owner; `driver_error` for the driver's own failure; `unavailable` for a driver
    /// without an implementation here or one that does not answer in time.
    pub async fn run_local(self: &Arc<Self>, call: &OwnerExec) -> Result<Value, OwnerError> {
        if self.read_view(|v| v.seq) < call.view_seq {
            self.wait_view(call.view_seq, Duration::from_secs(2)).await;
        }
        if domain::owner(&self.live_now(), Owned::Module(&call.module_id)) != Some(self.me.as_str())
        {
            return Err(OwnerError::NotOwner);
        }
        let driver = {
            let mut running = self
                .running
                .lock()
                .map_err(|_| OwnerError::Service(ServiceError::internal("lock poisoned")))?;
            match running.get(&call.module_id) {
                Some(d) => d.clone(),
                None => {
                    let Some(d) = self.impls.get(call.driver_id.as_str()).cloned() else {
                        return Err(OwnerError::Service(ServiceError::unavailable(format!(
                            "driver {:?} has no implementation on engine instance {}",
                            call.driver_id, self.me
                        ))));
                    };
                    running.insert(call.module_id.clone(), d.clone());
                    d
                }
            }
        };
        let sink = Sink {
            engine: self.clone(),
            module_id: call.module_id.clone(),
        };
        let span =
            tracing::info_span!("driver_call", module = %call.module_id, method = %call.method);
        tracing::Instrument::instrument(
            call_driver(driver.as_ref(), call, &sink, self.settings.driver_timeout),
            span,
        )
        .await
        .map_err(OwnerError::Service)
    }

    /// Modules owned by each live instance (for `engine.query.instances`).
    #[must_use]
    pub fn ownership(&self) -> Vec<(String, Vec<String>)> {
        let live = self.live_now();
        let mut out: BTreeMap<String, Vec<String>> =
            live.iter().map(|i| (i.clone(), Vec::new())).collect();
        self.read_view(|v| {
            for id in v.modules.keys() {
                if let Some(o) = domain::owner(&live, Owned::Module(id)) {
                    out.entry(o.to_string()).or_default().push(id.clone());
                }
            }
        });
        out.into_iter()
            .map(|(i, mut m)| {
                m.sort();
                (i, m)
            })
            .collect()
    }
}

/// Runs one driver call with a time limit: the driver's own failure is `driver_error`, no answer
/// within `timeout` is `unavailable`.
///
/// # Errors
/// As above.
pub async fn call_driver(
    driver: &dyn Driver,
    call: &OwnerExec,
    status: &dyn StatusSink,
    timeout: Duration,
) -> Result<Value, ServiceError> {
    let fut = driver.call(Call {
        module_id: &call.module_id,
        method: &call.method,
        args: &call.args,
        status,
    });
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(msg)) => Err(ServiceError::new(
            ErrorCode::DriverError,
            format!("{}.{} failed: {msg}", call.module_id, call.method),
        )),
        Err(_) => Err(ServiceError::unavailable(format!(
            "driver {:?} of module {:?} did not answer {} within {} ms",
            call.driver_id,
            call.module_id,
            call.method,
            timeout.as_millis()
        ))),
    }
}

fn time_now_ms() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i128::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0)
}

/// Status reports of a running module: the `update-status` command, run in-process.
struct Sink {
    engine: Arc<Engine>,
    module_id: String,
}

impl StatusSink for Sink {
    fn report<'a>(&'a self, name: &'a str, value: Value) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let cmd = schemas::engine::UpdateStatus {
                module_id: self.module_id.clone(),
                name: name.to_string(),
                value,
            };
            self.engine
                .update_status(cmd, None)
                .await
                .map(|_| ())
                .map_err(|e| e.message)
        })
    }
}

/// How long a command or exec waits for the view to show something a client may just have created.
pub(crate) const SYNC_WAIT: Duration = Duration::from_secs(3);

impl Engine {
    /// `engine.cmd.update-status` (also what running drivers call).
    ///
    /// # Errors
    /// As the contract says.
    pub async fn update_status(
        &self,
        cmd: wire::UpdateStatus,
        msg_id: Option<&str>,
    ) -> Result<wire::StatusUpdated, ServiceError> {
        domain::check_id("module_id", &cmd.module_id)?;
        domain::check_status_name(&cmd.name)?;
        // Existence comes from the view (synced on a miss): a process's cached aggregate may be older
        // than the module; the append's expected sequence still guards the aggregate itself.
        let mut exists = self.read_view(|v| v.modules.contains_key(&cmd.module_id));
        if !exists {
            self.sync_view(SYNC_WAIT).await?;
            exists = self.read_view(|v| v.modules.contains_key(&cmd.module_id));
        }
        let state = domain::ModuleState {
            added: exists.then(|| (String::new(), String::new())),
        };
        let event = domain::update_status(&state, &cmd)?;
        // Status reports need no expected sequence (the decision depends only on the module existing,
        // which never changes back), so they go on their own subject and skip the aggregate check:
        // one publish, no reload when several instances report on one module.
        let new = runtime::store::stamp(&event)?;
        let ack = self
            .store
            .append_unchecked(
                &domain::status_events_subject(&cmd.module_id),
                new.payload,
                msg_id.unwrap_or(&new.id),
            )
            .await
            .map_err(|err| {
                ServiceError::unavailable(format!(
                    "{err}; it may have been stored: retry with the same Nats-Msg-Id"
                ))
            })?;
        Ok(wire::StatusUpdated {
            module_id: cmd.module_id,
            name: cmd.name,
            value: cmd.value,
            seq: ack.sequence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A driver whose `wait` never answers and whose `fail` fails.
    struct Stuck;

    impl Driver for Stuck {
        fn id(&self) -> &'static str {
            "stuck"
        }
        fn metadata(&self) -> schemas::engine::DriverMetadata {
            crate::drivers::metadata_from(json!({"functions": {"wait": {}, "fail": {}}}))
        }
        fn call<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Value, String>> {
            Box::pin(async move {
                if call.method == "fail" {
                    return Err("broken".into());
                }
                std::future::pending::<()>().await;
                Ok(Value::Null)
            })
        }
    }

    struct NoSink;
    impl StatusSink for NoSink {
        fn report<'a>(&'a self, _: &'a str, _: Value) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn call(method: &str) -> OwnerExec {
        OwnerExec {
            module_id: "m".into(),
            driver_id: "stuck".into(),
            method: method.into(),
            args: serde_json::Map::new(),
            view_seq: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_driver_that_does_not_answer_in_time_is_unavailable() {
        let started = tokio::time::Instant::now();
        let err = call_driver(&Stuck, &call("wait"), &NoSink, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_driver_failure_is_driver_error() {
        let err = call_driver(&Stuck, &call("fail"), &NoSink, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::DriverError);
        assert!(err.message.contains("broken"));
    }

    #[test]
    fn settings_default_to_a_second_and_three() {
        let s = Settings::from_env().unwrap();
        assert!(s.dead_after >= s.heartbeat * 2);
        let id = instance_id("host.name/1");
        assert!(id.starts_with("host_name_1-"));
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
