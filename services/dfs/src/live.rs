//! Live subjects for dashboards (additions, `schemas::live`): `dfs.live.servers`,
//! `dfs.live.file.<file token>`, `dfs.live.replication`, and the queries `dfs.query.servers` and
//! `dfs.query.file-replicas` that give the state those subjects then change (micro service
//! `dfs-live`).
//!
//! A task follows stream `DFS` with an ordered consumer of its own from the stream's end. Each
//! replica or server event is published on `dfs.live.replication` at once; the servers and the
//! files it touches are marked, and [`FLUSH_AFTER`] later (once the catalog has projected the
//! event) their new state is read from the read model and published. Every process publishes; each
//! message is a complete state, so a repeat does no harm.

use runtime::follow::Follower;
use runtime::projector::ProjectionHandle;
use runtime::service::Endpoints;
use runtime::sqltext::{esc, unesc, unesc_all};
use runtime::ServiceError;
use schemas::dfs::DfsEvent;
use schemas::live::{
    ChunkReplicas, DfsServer, DfsServers, DfsServersQuery, FileReplicas, FileReplicasQuery,
    ReplicationEvent,
};
use sqlx::PgPool;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// One chunk of a file with one of its replicas: chunk id, index, size, server, server alive.
type ReplicaRow = (String, i32, i64, Option<String>, Option<bool>);

/// How long changes are gathered before their state is published.
const FLUSH_AFTER: Duration = Duration::from_millis(100);
/// Subject of the server list.
pub const SERVERS: &str = "dfs.live.servers";
/// Subject of each replica or server change.
pub const REPLICATION: &str = "dfs.live.replication";

/// `dfs.live.file.<file token>`.
#[must_use]
pub fn file_subject(file_id: &str) -> String {
    format!("dfs.live.file.{}", schemas::encode_token(file_id))
}

/// Every chunk server with its liveness, chunk count and bytes.
///
/// # Errors
/// PostgreSQL failed.
pub async fn servers(pool: &PgPool, seq: u64) -> Result<DfsServers, sqlx::Error> {
    let rows: Vec<(String, String, bool, i64, i64)> = sqlx::query_as(
        "SELECT s.server_id, s.subject, s.live, count(r.chunk_id), coalesce(sum(r.size), 0)::bigint
         FROM dfs.servers s LEFT JOIN dfs.replicas r ON r.server_id = s.server_id
         GROUP BY s.server_id, s.subject, s.live ORDER BY s.server_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(DfsServers {
        servers: rows
            .into_iter()
            .map(|(server_id, subject, alive, chunks, bytes)| DfsServer {
                server_id: unesc(server_id),
                subject: unesc(subject),
                alive,
                chunks: chunks.max(0) as u64,
                bytes: bytes.max(0) as u64,
            })
            .collect(),
        seq,
    })
}

/// A file's chunks with the servers holding a good copy of each (`None`: no such file).
///
/// # Errors
/// PostgreSQL failed.
pub async fn file_replicas(
    pool: &PgPool,
    file_id: &str,
    seq: u64,
) -> Result<Option<FileReplicas>, sqlx::Error> {
    let file: Option<(String, i64, i32, bool)> = sqlx::query_as(
        "SELECT name, size, replicas, deleted_at IS NOT NULL FROM dfs.files WHERE file_id = $1",
    )
    .bind(esc(file_id))
    .fetch_optional(pool)
    .await?;
    let Some((name, size, replicas, deleted)) = file else {
        return Ok(None);
    };
    let rows: Vec<ReplicaRow> = sqlx::query_as(
        "SELECT fc.chunk_id, fc.chunk_index, fc.size, r.server_id, s.live
         FROM dfs.file_chunks fc
         LEFT JOIN dfs.replicas r ON r.chunk_id = fc.chunk_id AND r.sha256 = fc.sha256
         LEFT JOIN dfs.servers s ON s.server_id = r.server_id
         WHERE fc.file_id = $1
         ORDER BY fc.chunk_index, s.live DESC NULLS LAST, r.server_id",
    )
    .bind(esc(file_id))
    .fetch_all(pool)
    .await?;
    let mut chunks: Vec<ChunkReplicas> = Vec::new();
    for (chunk_id, index, csize, server, live) in rows {
        let (chunk_id, server) = (unesc(chunk_id), server.map(unesc));
        if chunks.last().is_none_or(|c| c.chunk_id != chunk_id) {
            chunks.push(ChunkReplicas {
                chunk_id,
                chunk_index: index.max(0) as u32,
                size: csize.max(0) as u64,
                servers: vec![],
                live: 0,
            });
        }
        if let (Some(c), Some(server)) = (chunks.last_mut(), server) {
            c.servers.push(server);
            if live == Some(true) {
                c.live += 1;
            }
        }
    }
    let factor = replicas.max(0) as u32;
    let under_replicated = if deleted {
        0
    } else {
        chunks.iter().filter(|c| c.live < factor).count() as u32
    };
    Ok(Some(FileReplicas {
        file_id: file_id.to_string(),
        name: unesc(name),
        size: size.max(0) as u64,
        replicas: factor,
        chunks: if deleted { vec![] } else { chunks },
        under_replicated,
        deleted,
        seq,
    }))
}

/// What the `dfs-live` queries read.
struct Reads {
    pool: PgPool,
    catalog: ProjectionHandle,
    wait: std::time::Duration,
}

/// `dfs.query.servers`.
async fn servers_query(
    r: Arc<Reads>,
    q: DfsServersQuery,
    _: runtime::service::Request,
) -> Result<DfsServers, ServiceError> {
    r.catalog.wait_for(q.min_seq, r.wait).await?;
    Ok(servers(&r.pool, r.catalog.checkpoint()).await?)
}

/// `dfs.query.file-replicas`.
async fn file_replicas_query(
    r: Arc<Reads>,
    q: FileReplicasQuery,
    _: runtime::service::Request,
) -> Result<FileReplicas, ServiceError> {
    schemas::check_id("file_id", &q.file_id).map_err(ServiceError::invalid)?;
    r.catalog.wait_for(q.min_seq, r.wait).await?;
    file_replicas(&r.pool, &q.file_id, r.catalog.checkpoint())
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("no file {:?}", q.file_id)))
}

/// Starts the `dfs-live` queries and the live publisher.
///
/// # Errors
/// The endpoints could not be started.
pub async fn start(ctx: &runtime::Ctx, catalog: ProjectionHandle) -> anyhow::Result<()> {
    let ep = Endpoints::start(
        &ctx.client,
        "dfs-live",
        "dfs servers and replicas for dashboards",
    )
    .await?;
    let routes = ep.with_state(Arc::new(Reads {
        pool: ctx.pool.clone(),
        catalog: catalog.clone(),
        wait: ctx.config.min_seq_wait,
    }));
    routes.on("dfs.query.servers", servers_query).await?;
    routes
        .on("dfs.query.file-replicas", file_replicas_query)
        .await?;
    let publisher = Publisher {
        js: async_nats::jetstream::new(ctx.client.clone()),
        client: ctx.client.clone(),
        pool: ctx.pool.clone(),
        catalog,
    };
    tokio::spawn(publisher.run());
    Ok(())
}

struct Publisher {
    js: async_nats::jetstream::Context,
    client: async_nats::Client,
    pool: PgPool,
    catalog: ProjectionHandle,
}

#[derive(Default)]
struct Dirty {
    servers: bool,
    files: BTreeSet<String>,
    /// Servers whose liveness changed: every file with a chunk there changes too.
    via_servers: BTreeSet<String>,
    seq: u64,
}

impl Publisher {
    /// Follows the stream from its end, noting what each event changes and publishing it
    /// [`FLUSH_AFTER`] after the first change of a round.
    async fn run(self) {
        let mut follower = Follower::new(&self.js, crate::STREAM, "dfs live publisher");
        let mut dirty = Dirty::default();
        let mut due: Option<tokio::time::Instant> = None;
        loop {
            let wait =
                due.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                chunk = follower.next(256) => {
                    for m in chunk {
                        self.note(m.seq, &m.payload, &mut dirty).await;
                    }
                    if due.is_none() {
                        due = Some(tokio::time::Instant::now() + FLUSH_AFTER);
                    }
                }
                () = tokio::time::sleep_until(wait) => {
                    due = None;
                    self.flush(std::mem::take(&mut dirty)).await;
                }
            }
        }
    }

    async fn files_of_chunk(&self, chunk_id: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT DISTINCT file_id FROM dfs.file_chunks WHERE chunk_id = $1")
            .bind(esc(chunk_id))
            .fetch_all(&self.pool)
            .await
            .map(unesc_all)
            .unwrap_or_default()
    }

    async fn note(&self, seq: u64, payload: &[u8], dirty: &mut Dirty) {
        let Ok((meta, event)) = runtime::store::decode_event::<DfsEvent>(payload) else {
            return;
        };
        dirty.seq = seq;
        let (kind, server_id, chunk_id, reason) = match event {
            DfsEvent::ServerJoined { server_id, .. } => ("ServerJoined", server_id, None, None),
            DfsEvent::ServerLost { server_id } => ("ServerLost", server_id, None, None),
            DfsEvent::ChunkStored {
                chunk_id,
                server_id,
                ..
            } => ("ChunkStored", server_id, Some(chunk_id), None),
            DfsEvent::ChunkLost {
                chunk_id,
                server_id,
                reason,
            } => ("ChunkLost", server_id, Some(chunk_id), Some(reason)),
            DfsEvent::ChunkDeleted {
                chunk_id,
                server_id,
            } => ("ChunkDeleted", server_id, Some(chunk_id), None),
            DfsEvent::FileCommitted { file_id, .. } | DfsEvent::FileDeleted { file_id } => {
                dirty.files.insert(file_id);
                return;
            }
        };
        dirty.servers = true;
        let file_ids = match &chunk_id {
            Some(c) => self.files_of_chunk(c).await,
            None => {
                dirty.via_servers.insert(server_id.clone());
                vec![]
            }
        };
        dirty.files.extend(file_ids.iter().cloned());
        let e = ReplicationEvent {
            kind: kind.into(),
            server_id,
            chunk_id,
            file_ids,
            reason,
            occurred_at: meta.occurred_at,
            seq,
        };
        if let Ok(body) = serde_json::to_vec(&e) {
            let _ = self.client.publish(REPLICATION, body.into()).await;
        }
    }

    async fn flush(&self, mut dirty: Dirty) {
        if self
            .catalog
            .wait_for(Some(dirty.seq), Duration::from_secs(5))
            .await
            .is_err()
        {
            tracing::debug!(
                seq = dirty.seq,
                "dfs live: the catalog is behind; publishing what it has"
            );
        }
        for server in &dirty.via_servers {
            let files: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT fc.file_id FROM dfs.file_chunks fc JOIN dfs.replicas r ON r.chunk_id = fc.chunk_id WHERE r.server_id = $1",
            )
            .bind(esc(server))
            .fetch_all(&self.pool)
            .await
            .map(unesc_all)
            .unwrap_or_default();
            dirty.files.extend(files);
        }
        if dirty.servers {
            match servers(&self.pool, dirty.seq).await {
                Ok(s) => {
                    if let Ok(body) = serde_json::to_vec(&s) {
                        let _ = self.client.publish(SERVERS, body.into()).await;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "dfs live: servers query failed"),
            }
        }
        for file_id in &dirty.files {
            match file_replicas(&self.pool, file_id, dirty.seq).await {
                Ok(Some(f)) => {
                    if let Ok(body) = serde_json::to_vec(&f) {
                        let _ = self
                            .client
                            .publish(file_subject(file_id), body.into())
                            .await;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "dfs live: file query failed"),
            }
        }
    }
}
