//! The coordinator: micro service `dfs-coordinator` on `dfs.coordinator` (dispatch on
//! `request_type`), the heartbeat monitor (`ServerJoined` / `ServerLost`), reconciliation of a
//! (re)joining server's disk with the catalog, and the repair loop (re-replication, surplus and
//! garbage removal). Its only memory is when each server was last heard; everything else is in
//! the event stream and the read model.

use crate::domain::{self, Action, FileState, ServerState};
use crate::settings::Settings;
use crate::transfer;
use crate::{handlers, queries};
use futures::StreamExt;
use runtime::projector::ProjectionHandle;
use runtime::service::Endpoints;
use runtime::store::{stamp, CommandError, EventStore, Repository};
use runtime::{Ctx, ServiceError};
use schemas::dfs::{DfsEvent, Heartbeat, UploadChunk};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument;

/// Everything the coordinator's tasks share.
#[derive(Clone)]
pub struct Coordinator {
    pub(crate) store: EventStore,
    pub(crate) files: Repository<FileState>,
    servers: Repository<ServerState>,
    pub(crate) pool: sqlx::PgPool,
    pub(crate) catalog: ProjectionHandle,
    client: async_nats::Client,
    settings: Settings,
    pub(crate) default_replicas: u32,
    pub(crate) max_chunk: u64,
    pub(crate) wait: Duration,
    /// When each server was last heard.
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    /// Wakes the repair loop early (a server was lost, a file deleted).
    pub(crate) repair_now: Arc<Notify>,
    /// The lease that makes one coordinator (of several processes) the one that repairs.
    lease: async_nats::jetstream::stream::Stream,
    /// This process's name in the lease.
    instance: String,
}

/// The stream holding the repair lease: the last message on [`LEASE_SUBJECT`] (a key-value entry
/// in all but name, built so for nats-server 2.9; still a plain stream, with `SWITCHYARD_REPLICAS`).
const LEASE_STREAM: &str = "DFS_LEASE";
/// The lease's subject.
const LEASE_SUBJECT: &str = "dfs.lease.repair";
/// How long a lease lasts without renewal.
const LEASE_TTL: Duration = Duration::from_secs(10);

fn server_subject(server_id: &str) -> String {
    format!("dfs.events.server.{server_id}")
}

/// A server event that is already the server's state (it joined, or was lost, already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AlreadyDone;

impl From<AlreadyDone> for ServiceError {
    fn from(_: AlreadyDone) -> Self {
        ServiceError::conflict("the server is in that state already")
    }
}

impl Coordinator {
    /// Starts the endpoint, the heartbeat monitor and the repair loop.
    ///
    /// # Errors
    /// NATS or PostgreSQL unreachable.
    pub async fn start(
        ctx: &Ctx,
        store: EventStore,
        catalog: ProjectionHandle,
        settings: Settings,
    ) -> anyhow::Result<Self> {
        let lease = runtime::nats::ensure_stream(
            &ctx.js,
            async_nats::jetstream::stream::Config {
                name: LEASE_STREAM.into(),
                subjects: vec![LEASE_SUBJECT.into()],
                max_messages_per_subject: 1,
                storage: async_nats::jetstream::stream::StorageType::File,
                allow_direct: true,
                description: Some("which dfs coordinator runs repairs".into()),
                ..Default::default()
            },
            ctx.config.replicas,
        )
        .await?;
        let max_chunk = (ctx
            .client
            .server_info()
            .max_payload
            .saturating_sub(domain::HEADER_ROOM)) as u64;
        let me = Self {
            files: ctx.repository(&store, "dfs"),
            servers: ctx.repository(&store, "dfs"),
            store,
            pool: ctx.pool.clone(),
            catalog,
            client: ctx.client.clone(),
            default_replicas: settings.replicas.clamp(1, 16),
            settings,
            max_chunk,
            wait: ctx.config.min_seq_wait,
            seen: Arc::default(),
            repair_now: Arc::default(),
            lease,
            instance: ctx.config.instance.clone(),
        };
        // Servers the catalog says are live get a full dead-after window to be heard again.
        while !me.catalog.caught_up() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let now = Instant::now();
        {
            let live = queries::live_servers(&me.pool).await?;
            let mut seen = me.seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            for s in live {
                seen.insert(s.chnk_srv_id, now);
            }
        }
        let endpoints = Endpoints::start(
            &ctx.client,
            "dfs-coordinator",
            "dfs coordinator: files, chunk servers, replicas",
        )
        .await?;
        endpoints
            .with_state(Arc::new(me.clone()))
            .on_with_limit("dfs.coordinator", 8 * 1024 * 1024, handlers::handle)
            .await?;
        let heartbeats = ctx.client.subscribe("dfs.heartbeat.*").await?;
        tokio::spawn(
            me.clone()
                .monitor(heartbeats)
                .instrument(tracing::info_span!("dfs_monitor")),
        );
        tokio::spawn(
            me.clone()
                .repair_loop()
                .instrument(tracing::info_span!("dfs_repair")),
        );
        Ok(me)
    }

    /// Waits until the catalog has projected everything appended so far.
    pub(crate) async fn catch_up(&self) -> Result<(), ServiceError> {
        let last = self
            .store
            .last_seq()
            .await
            .map_err(|e| ServiceError::unavailable(e.to_string()))?;
        self.catalog.wait_for(Some(last), self.wait).await
    }

    /// Follows heartbeats: a server heard while not live joins (then its disk is reconciled); a
    /// live server silent for `dead_after` is lost.
    async fn monitor(self, mut heartbeats: async_nats::Subscriber) {
        let mut tick =
            tokio::time::interval(Duration::from_millis(100).min(self.settings.dead_after / 4));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = heartbeats.next() => {
                    let Some(msg) = msg else { break };
                    let Ok(hb) = serde_json::from_slice::<Heartbeat>(&msg.payload) else { continue };
                    if domain::check_server_id(&hb.server_id).is_err() || msg.subject.as_str() != format!("dfs.heartbeat.{}", hb.server_id) {
                        continue;
                    }
                    let fresh = self.seen.lock().map(|mut s| s.insert(hb.server_id.clone(), Instant::now()).is_none()).unwrap_or(false);
                    let subject = server_subject(&hb.server_id);
                    let live = match self.servers.state(&subject).await {
                        Ok((s, _)) => s.live,
                        Err(e) => { tracing::warn!(error = %e.message, "server state unavailable"); continue; }
                    };
                    if !live || fresh {
                        let me = self.clone();
                        tokio::spawn(async move { me.joined(hb, live).await });
                    }
                }
                _ = tick.tick() => self.check_silence().await,
            }
        }
    }

    async fn joined(&self, hb: Heartbeat, was_live: bool) {
        let subject = server_subject(&hb.server_id);
        if !was_live {
            let id = hb.server_id.clone();
            let chunk_subject = transfer::chunk_subject(&id);
            let result = self
                .servers
                .execute(
                    &subject,
                    None,
                    |s, _| domain::decide_heard(s, &id, &chunk_subject).ok_or(AlreadyDone),
                    |_, _, seq| seq,
                )
                .await;
            match result {
                Ok(_) => tracing::info!(server = %hb.server_id, "chunk server joined"),
                Err(CommandError::Refused(AlreadyDone) | CommandError::Conflict(_)) => {}
                Err(e) => {
                    let e = e.to_service();
                    tracing::warn!(server = %hb.server_id, error = %e.message, "could not record the join");
                    if let Ok(mut s) = self.seen.lock() {
                        s.remove(&hb.server_id);
                    }
                    return;
                }
            }
        }
        if let Err(e) = self.reconcile(&hb.server_id).await {
            tracing::warn!(server = %hb.server_id, error = %e, "reconciliation failed; retried when next heard");
            if let Ok(mut s) = self.seen.lock() {
                s.remove(&hb.server_id);
            }
        }
    }

    /// Makes the catalog agree with a server's disk: chunks the catalog lists but the disk lacks are
    /// lost; chunks on disk the catalog lacks are recorded (the repair loop then drops what is
    /// surplus or garbage).
    async fn reconcile(&self, server_id: &str) -> anyhow::Result<()> {
        // The catalog first, then the disk: a chunk stored in between shows on the disk only
        // (recorded again, harmless), never as a false loss.
        self.catch_up()
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        let known = queries::replicas_of(&self.pool, server_id).await?;
        let reply = transfer::simple(
            &self.client,
            &transfer::chunk_subject(server_id),
            &serde_json::json!({"request_type": "LIST_CHUNKS"}),
        )
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
        anyhow::ensure!(
            reply.status == "success",
            "LIST_CHUNKS: {}",
            reply.message.unwrap_or_default()
        );
        let on_disk = reply.chunks.unwrap_or_default();
        let disk_ids: BTreeSet<&str> = on_disk.iter().map(|c| c.chunk_id.as_str()).collect();
        let mut changes = 0;
        for (chunk_id, _) in known
            .iter()
            .filter(|(id, _)| !disk_ids.contains(id.as_str()))
        {
            let e = DfsEvent::ChunkLost {
                chunk_id: chunk_id.clone(),
                server_id: server_id.into(),
                reason: "not on the server's disk".into(),
            };
            self.append_chunk_event(chunk_id, e).await?;
            changes += 1;
        }
        for c in on_disk
            .iter()
            .filter(|c| known.get(&c.chunk_id) != Some(&c.sha256))
        {
            let e = DfsEvent::ChunkStored {
                chunk_id: c.chunk_id.clone(),
                server_id: server_id.into(),
                chunk_index: c.chunk_index,
                size: c.size,
                sha256: c.sha256.clone(),
            };
            self.append_chunk_event(&c.chunk_id, e).await?;
            changes += 1;
        }
        tracing::info!(server = %server_id, held = on_disk.len(), changes, "reconciled");
        self.repair_now.notify_one();
        Ok(())
    }

    async fn append_chunk_event(&self, chunk_id: &str, event: DfsEvent) -> anyhow::Result<()> {
        let new = stamp(&event).map_err(|e| anyhow::anyhow!(e.message))?;
        self.store
            .append_unchecked(
                &format!("dfs.events.chunk.{chunk_id}"),
                new.payload,
                &new.id,
            )
            .await?;
        Ok(())
    }

    async fn check_silence(&self) {
        let dead_after = self.settings.dead_after;
        let silent: Vec<String> = match self.seen.lock() {
            Ok(seen) => seen
                .iter()
                .filter(|(_, t)| t.elapsed() >= dead_after)
                .map(|(id, _)| id.clone())
                .collect(),
            Err(_) => return,
        };
        for id in silent {
            let subject = server_subject(&id);
            let result = self
                .servers
                .execute(
                    &subject,
                    None,
                    |s, _| domain::decide_silent(s, &id).ok_or(AlreadyDone),
                    |_, _, seq| seq,
                )
                .await;
            match result {
                Ok(_) => {
                    tracing::warn!(server = %id, "chunk server lost: silent for the dead-after window")
                }
                Err(CommandError::Refused(AlreadyDone) | CommandError::Conflict(_)) => {}
                Err(e) => {
                    let e = e.to_service();
                    tracing::warn!(server = %id, error = %e.message, "could not record the loss; retrying");
                    continue;
                }
            }
            if let Ok(mut seen) = self.seen.lock() {
                if seen.get(&id).is_some_and(|t| t.elapsed() >= dead_after) {
                    seen.remove(&id);
                }
            }
            self.repair_now.notify_one();
        }
    }

    async fn repair_loop(self) {
        loop {
            let _ =
                tokio::time::timeout(self.settings.repair_every, self.repair_now.notified()).await;
            if !self.hold_lease().await {
                continue;
            }
            match self.repair_round().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(actions = n, "repair round done");
                    let _ = self.catch_up().await;
                }
                Err(e) => tracing::warn!(error = %e, "repair round failed"),
            }
        }
    }

    /// Takes or renews the repair lease; true when this process holds it. The lease is the last
    /// message on [`LEASE_SUBJECT`], `<instance> <unix ms>`; one not renewed for [`LEASE_TTL`] may be
    /// taken over. Publishing with the expected last subject sequence makes taking it atomic.
    async fn hold_lease(&self) -> bool {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let now = chrono::Utc::now().timestamp_millis();
        let (seq, free) = match self
            .lease
            .get_last_raw_message_by_subject(LEASE_SUBJECT)
            .await
        {
            Ok(m) => {
                let text = String::from_utf8_lossy(&m.payload).to_string();
                let (holder, at) = text.rsplit_once(' ').unwrap_or((&text, "0"));
                let at: i64 = at.parse().unwrap_or(0);
                let expired = now.saturating_sub(at) > LEASE_TTL.as_millis() as i64;
                (m.sequence, holder == self.instance || expired)
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => (0, true),
            Err(e) => {
                tracing::warn!(error = %e, "the repair lease is unavailable");
                return false;
            }
        };
        if !free {
            return false;
        }
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(format!("{} {now}", self.instance).into())
            .expected_last_subject_sequence(seq);
        match self
            .store
            .jetstream()
            .send_publish(LEASE_SUBJECT, msg)
            .await
        {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        }
    }

    /// Plans and runs one round of repairs; returns how many actions it ran.
    ///
    /// # Errors
    /// The read model is unavailable.
    pub async fn repair_round(&self) -> anyhow::Result<usize> {
        self.catch_up()
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        let (statuses, facts, load) =
            queries::repair_input(&self.pool, self.settings.orphan_grace).await?;
        if statuses.is_empty() {
            return Ok(0);
        }
        let actions = domain::plan(&statuses, &load);
        let n = actions.len();
        let facts = Arc::new(facts);
        futures::stream::iter(actions)
            .for_each_concurrent(self.settings.repair_parallel, |action| {
                let facts = facts.clone();
                async move {
                    if let Err(e) = self.run(&action, &facts).await {
                        tracing::warn!(?action, error = %e, "repair action failed");
                    }
                }
            })
            .await;
        Ok(n)
    }

    async fn run(
        &self,
        action: &Action,
        facts: &std::collections::BTreeMap<String, queries::ChunkFacts>,
    ) -> Result<(), String> {
        match action {
            Action::Drop { chunk_id, server } => {
                let reply = transfer::simple(
                    &self.client,
                    &transfer::chunk_subject(server),
                    &serde_json::json!({"request_type": "DELETE_CHUNK", "chunk_id": chunk_id}),
                )
                .await?;
                if reply.status == "success" {
                    Ok(())
                } else {
                    Err(reply.message.unwrap_or_default())
                }
            }
            Action::Copy {
                chunk_id,
                sources,
                target,
            } => {
                let f = facts.get(chunk_id).ok_or("no facts about the chunk")?;
                let mut last = String::from("no source");
                for source in sources {
                    match transfer::download(
                        &self.client,
                        &transfer::chunk_subject(source),
                        chunk_id,
                        Some(&f.sha256),
                    )
                    .await
                    {
                        Ok((_, bytes)) => {
                            let header = UploadChunk {
                                request_type: "UPLOAD_CHUNK".into(),
                                chunk_id: chunk_id.clone(),
                                chunk_index: f.chunk_index,
                                chunk_size: bytes.len() as u64,
                                user_id: Some("dfs-coordinator".into()),
                                file_id: None,
                                sha256: f.sha256.clone(),
                            };
                            transfer::upload(
                                &self.client,
                                &transfer::chunk_subject(target),
                                &header,
                                &bytes,
                            )
                            .await?;
                            tracing::debug!(chunk = %chunk_id, from = %source, to = %target, "re-replicated");
                            return Ok(());
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }
}
