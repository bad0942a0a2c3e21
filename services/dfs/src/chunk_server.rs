//! A chunk server: micro service `dfs-chunk`, endpoint `dfs.chunk.<id>`, in the original framing.
//!
//! - `UPLOAD_CHUNK` (header, `\n\n`, bytes): checked (id, size, checksum, limit), written atomically,
//!   then `ChunkStored` is appended; only then `{"status": "success"}`.
//! - `DOWNLOAD_CHUNK`: the bytes are verified on every read; a chunk that fails is removed, `ChunkLost`
//!   is appended and the client gets an error, never the bad bytes.
//! - `DELETE_CHUNK` and `LIST_CHUNKS` (for the coordinator's garbage collection and reconciliation).
//!
//! Errors are `{"status": "error", "message"}` with the micro error headers. A heartbeat goes out on
//! `dfs.heartbeat.<id>` every `SWITCHYARD_DFS_HEARTBEAT_MS`.

use crate::disk::{Disk, Meta, ReadError};
use crate::domain::{check_upload, split_frame, ChunkId, HEADER_ROOM};
use crate::settings::Settings;
use anyhow::Context as _;
use async_nats::service::ServiceExt;
use bytes::Bytes;
use futures::StreamExt;
use runtime::store::{stamp, EventStore};
use schemas::dfs::{ChunkReply, DfsEvent, DownloadChunk, Heartbeat, UploadChunk};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Requests one server works on at once (bounds memory: each holds up to a chunk).
const MAX_IN_FLIGHT: usize = 16;

/// How to start a chunk server.
#[derive(Debug, Clone)]
pub struct ChunkServerOptions {
    /// Its data directory.
    pub dir: PathBuf,
    /// Its id; when `None`, the id kept in the directory (or a new one, then kept).
    pub id: Option<String>,
    pub settings: Settings,
}

/// A running chunk server; [`ChunkServer::stop`] silences it (no replies, no heartbeats).
pub struct ChunkServer {
    id: String,
    dir: PathBuf,
    tasks: Vec<JoinHandle<()>>,
    service: Option<async_nats::service::Service>,
    own_client: Option<async_nats::Client>,
}

impl ChunkServer {
    /// The server's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The server's data directory.
    #[must_use]
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Where chunk `chunk_id` is kept on this server's disk.
    #[must_use]
    pub fn chunk_path(&self, chunk_id: &str) -> PathBuf {
        self.dir.join("chunks").join(chunk_id)
    }

    /// Stops serving and heartbeating, as a crash would (in-flight replies may be lost).
    pub async fn stop(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(s) = self.service.take() {
            let _ = s.stop().await;
        }
        if let Some(c) = self.own_client.take() {
            let _ = c.drain().await;
        }
    }
}

impl Drop for ChunkServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Connects to NATS on a connection of its own and starts a chunk server there.
///
/// # Errors
/// NATS unreachable, or the directory unusable.
pub async fn connect(nats_url: &str, options: ChunkServerOptions) -> anyhow::Result<ChunkServer> {
    let client = runtime::ctx::connect_nats(nats_url, "dfs-chunk").await?;
    let mut server = start(client.clone(), options).await?;
    server.own_client = Some(client);
    Ok(server)
}

#[derive(Clone)]
struct Shared {
    id: String,
    disk: Disk,
    store: EventStore,
    max_chunk: u64,
}

/// Starts a chunk server on `client`.
///
/// # Errors
/// NATS unreachable, or the directory unusable.
pub async fn start(
    client: async_nats::Client,
    options: ChunkServerOptions,
) -> anyhow::Result<ChunkServer> {
    let dir = options.dir.clone();
    let disk = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || Disk::open(&dir))
            .await?
            .with_context(|| format!("opening {}", options.dir.display()))?
    };
    let id = match options.id.clone() {
        Some(id) => id,
        None => {
            let disk = disk.clone();
            tokio::task::spawn_blocking(move || {
                disk.server_id(|| {
                    format!("cs-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
                })
            })
            .await??
        }
    };
    crate::domain::check_server_id(&id).map_err(|e| anyhow::anyhow!(e))?;
    let store = EventStore::open_existing(
        async_nats::jetstream::new(client.clone()),
        "dfs",
        crate::STREAM,
    )
    .await?;
    let max_chunk = (client.server_info().max_payload.saturating_sub(HEADER_ROOM)) as u64;
    let shared = Shared {
        id: id.clone(),
        disk,
        store,
        max_chunk,
    };
    let subject = crate::transfer::chunk_subject(&id);
    let service = client
        .service_builder()
        .description(format!("dfs chunk server {id}"))
        .start("dfs-chunk", env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("starting micro service dfs-chunk: {e}"))?;
    let mut endpoint = service
        .endpoint_builder()
        .name("chunk")
        .add(subject.clone())
        .await
        .map_err(|e| anyhow::anyhow!("adding endpoint {subject}: {e}"))?;
    // Fanned-out uploads (`crate::fanout`): every pattern that names this server, subscribed before
    // anything is spawned, so that a failure leaves nothing running.
    let mut fanned = Vec::new();
    for pattern in crate::fanout::patterns(&id) {
        fanned.push(
            client
                .subscribe(pattern.clone())
                .await
                .map_err(|e| anyhow::anyhow!("subscribing to {pattern}: {e}"))?,
        );
    }
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let serve = {
        let (shared, limit) = (shared.clone(), limit.clone());
        tokio::spawn(async move {
            while let Some(request) = endpoint.next().await {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let shared = shared.clone();
                let span = tracing::info_span!("chunk_request", server = %shared.id, size = request.message.payload.len());
                tokio::spawn(
                    async move {
                        let _permit = permit;
                        let (body, headers) =
                            answer(&shared, &request.message.payload, Only::Any).await;
                        if let Err(e) = request.respond_with_headers(Ok(body), headers).await {
                            tracing::debug!(error = %e, "could not send the reply");
                        }
                    }
                    .instrument(span),
                );
            }
        })
    };
    let serve_fanned = {
        let (shared, client) = (shared.clone(), client.clone());
        let mut fanned = futures::stream::select_all(fanned);
        tokio::spawn(async move {
            while let Some(message) = fanned.next().await {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let (shared, client) = (shared.clone(), client.clone());
                let span = tracing::info_span!("chunk_request", server = %shared.id, fanned = true, size = message.payload.len());
                tokio::spawn(
                    async move {
                        let _permit = permit;
                        let Some(reply) = message.reply.clone() else {
                            return;
                        };
                        let (body, mut headers) =
                            if crate::fanout::names(&message.subject, &shared.id) {
                                answer(&shared, &message.payload, Only::Upload).await
                            } else {
                                refusal(fanned_refusal())
                            };
                        headers.insert(crate::fanout::SERVER_HEADER, shared.id.as_str());
                        if let Err(e) = client.publish_with_headers(reply, headers, body).await {
                            tracing::debug!(error = %e, "could not send the reply");
                        }
                    }
                    .instrument(span),
                );
            }
        })
    };
    let beat = {
        let shared = shared.clone();
        let client = client.clone();
        let subject = subject.clone();
        let every = options.settings.heartbeat;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let disk = shared.disk.clone();
                let (chunks, bytes) = tokio::task::spawn_blocking(move || disk.usage())
                    .await
                    .unwrap_or((0, 0));
                let hb = Heartbeat {
                    server_id: shared.id.clone(),
                    subject: subject.clone(),
                    chunks,
                    bytes,
                    max_chunk: shared.max_chunk,
                };
                let Ok(payload) = serde_json::to_vec(&hb) else {
                    continue;
                };
                if let Err(e) = client
                    .publish(format!("dfs.heartbeat.{}", shared.id), payload.into())
                    .await
                {
                    tracing::warn!(error = %e, "heartbeat not sent");
                }
            }
        })
    };
    tracing::info!(server = %id, dir = %dir.display(), max_chunk, "chunk server listening");
    Ok(ChunkServer {
        id,
        dir,
        tasks: vec![serve, serve_fanned, beat],
        service: Some(service),
        own_client: None,
    })
}

/// Which requests a subject takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Only {
    /// Every request type (`dfs.chunk.<id>`).
    Any,
    /// `UPLOAD_CHUNK` alone (a fanned-out subject).
    Upload,
}

fn fanned_refusal() -> Refusal {
    bad(format!(
        "{}.<server id>... takes UPLOAD_CHUNK only, for 1 to {} servers",
        crate::fanout::PREFIX,
        crate::fanout::MAX_SERVERS
    ))
}

/// The reply to one request: its body and, for a refusal, the micro error headers.
async fn answer(shared: &Shared, payload: &Bytes, only: Only) -> (Bytes, async_nats::HeaderMap) {
    match handle(shared, payload, only).await {
        Ok(body) => (body, async_nats::HeaderMap::new()),
        Err(refused) => {
            tracing::debug!(status = refused.0, message = %refused.1, "chunk request refused");
            refusal(refused)
        }
    }
}

fn refusal((status, message): Refusal) -> (Bytes, async_nats::HeaderMap) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Service-Error-Code", status.to_string().as_str());
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    headers.insert("Nats-Service-Error", one_line.as_str());
    (error_body(&message), headers)
}

fn error_body(message: &str) -> Bytes {
    let reply = ChunkReply {
        status: "error".into(),
        message: Some(message.into()),
        chunk_index: None,
        chunk_size: None,
        sha256: None,
        chunks: None,
    };
    serde_json::to_vec(&reply)
        .map(Bytes::from)
        .unwrap_or_default()
}

fn success() -> ChunkReply {
    ChunkReply {
        status: "success".into(),
        message: None,
        chunk_index: None,
        chunk_size: None,
        sha256: None,
        chunks: None,
    }
}

type Refusal = (u16, String);

fn bad(message: impl Into<String>) -> Refusal {
    (400, message.into())
}

async fn append(shared: &Shared, chunk_id: &ChunkId, event: DfsEvent) -> Result<(), Refusal> {
    let new = stamp(&event).map_err(|e| (500, e.message))?;
    shared
        .store
        .append_unchecked(
            &format!("dfs.events.chunk.{chunk_id}"),
            new.payload,
            &new.id,
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            (
                503,
                format!("the event store did not record the change: {e}"),
            )
        })
}

async fn handle(shared: &Shared, payload: &Bytes, only: Only) -> Result<Bytes, Refusal> {
    let frame = split_frame(payload, false).map_err(|e| {
        if only == Only::Upload {
            fanned_refusal()
        } else {
            bad(e.to_string())
        }
    })?;
    let kind = frame
        .header
        .get("request_type")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    if only == Only::Upload && kind != "UPLOAD_CHUNK" {
        return Err(fanned_refusal());
    }
    match kind.as_str() {
        "UPLOAD_CHUNK" => {
            if !frame.delimited {
                return Err(bad("truncated framing: the JSON header must be followed by \"\\n\\n\" and chunk_size bytes"));
            }
            let header: UploadChunk = serde_json::from_value(frame.header.clone()).map_err(|e| bad(format!("bad UPLOAD_CHUNK header: {e}")))?;
            let body_start = payload.len() - frame.body.len();
            let bytes = payload.slice(body_start..);
            let valid = check_upload(&header, &bytes, shared.max_chunk).map_err(bad)?;
            let meta = Meta { chunk_index: valid.chunk_index, chunk_size: bytes.len() as u64, sha256: valid.sha256.clone(), file_id: header.file_id.clone() };
            let disk = shared.disk.clone();
            let id = valid.chunk_id.clone();
            let sha = valid.sha256.clone();
            tokio::task::spawn_blocking(move || {
                // A chunk id names one content: a different one never replaces it (the same one,
                // say over a corrupt copy, does).
                match disk.recorded_sha(&id) {
                    Some(held) if held != sha => Err(Err(held)),
                    _ => disk.write(&id, &meta, &bytes).map_err(Ok),
                }
            })
                .await
                .map_err(|e| (500, e.to_string()))?
                .map_err(|e| match e {
                    Ok(io) => (500, format!("could not store chunk {}: {io}", valid.chunk_id)),
                    Err(held) => (409, format!("chunk {} already holds other content (sha256 {held}); a chunk id names one content", valid.chunk_id)),
                })?;
            let event = DfsEvent::ChunkStored {
                chunk_id: valid.chunk_id.to_string(),
                server_id: shared.id.clone(),
                chunk_index: valid.chunk_index,
                size: header.chunk_size,
                sha256: valid.sha256,
            };
            append(shared, &valid.chunk_id, event).await?;
            Ok(serde_json::to_vec(&success()).map_err(|e| (500, e.to_string()))?.into())
        }
        "DOWNLOAD_CHUNK" => {
            let req: DownloadChunk = serde_json::from_value(frame.header).map_err(|e| bad(format!("bad DOWNLOAD_CHUNK request: {e}")))?;
            let id = ChunkId::parse(&req.chunk_id).map_err(bad)?;
            let disk = shared.disk.clone();
            let read_id = id.clone();
            let read = tokio::task::spawn_blocking(move || disk.read(&read_id)).await.map_err(|e| (500, e.to_string()))?;
            match read {
                Ok(held) => {
                    let reply = ChunkReply {
                        status: "success".into(),
                        message: None,
                        chunk_index: Some(held.meta.chunk_index),
                        chunk_size: Some(held.meta.chunk_size),
                        sha256: Some(held.meta.sha256.clone()),
                        chunks: None,
                    };
                    let header = serde_json::to_vec(&reply).map_err(|e| (500, e.to_string()))?;
                    Ok(held.into_frame(&header))
                }
                Err(ReadError::Missing(_)) => Err((404, format!("no chunk {id} on this server"))),
                Err(ReadError::Corrupt(_, why)) => {
                    tracing::warn!(chunk = %id, reason = %why, "corrupt chunk removed");
                    let disk = shared.disk.clone();
                    let del_id = id.clone();
                    let _ = tokio::task::spawn_blocking(move || disk.delete(&del_id)).await;
                    let _ = append(shared, &id, DfsEvent::ChunkLost { chunk_id: id.to_string(), server_id: shared.id.clone(), reason: why.clone() }).await;
                    Err((500, format!("chunk {id} is corrupt on this server ({why}); it is not served: read another replica")))
                }
                Err(e @ ReadError::Io(..)) => Err((500, e.to_string())),
            }
        }
        "DELETE_CHUNK" => {
            let id = frame.header.get("chunk_id").and_then(|v| v.as_str()).ok_or_else(|| bad("chunk_id is missing"))?;
            let id = ChunkId::parse(id).map_err(bad)?;
            let disk = shared.disk.clone();
            let del_id = id.clone();
            tokio::task::spawn_blocking(move || disk.delete(&del_id))
                .await
                .map_err(|e| (500, e.to_string()))?
                .map_err(|e| (500, format!("could not delete chunk {id}: {e}")))?;
            append(shared, &id, DfsEvent::ChunkDeleted { chunk_id: id.to_string(), server_id: shared.id.clone() }).await?;
            Ok(serde_json::to_vec(&success()).map_err(|e| (500, e.to_string()))?.into())
        }
        "LIST_CHUNKS" => {
            let disk = shared.disk.clone();
            let chunks = tokio::task::spawn_blocking(move || disk.list())
                .await
                .map_err(|e| (500, e.to_string()))?
                .map_err(|e| (500, format!("could not list chunks: {e}")))?;
            let mut reply = success();
            reply.chunks = Some(chunks);
            Ok(serde_json::to_vec(&reply).map_err(|e| (500, e.to_string()))?.into())
        }
        "" => Err(bad("request_type is missing: UPLOAD_CHUNK, DOWNLOAD_CHUNK, DELETE_CHUNK or LIST_CHUNKS")),
        other => Err(bad(format!("unknown request_type {other:?}: UPLOAD_CHUNK, DOWNLOAD_CHUNK, DELETE_CHUNK or LIST_CHUNKS"))),
    }
}
