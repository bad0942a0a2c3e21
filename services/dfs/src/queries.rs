//! The coordinator's queries (the `GET_*` and `LIST_FILES` requests of `dfs.coordinator`) and the
//! reads of the catalog read model behind them (see [`crate::projection`]).

use crate::coordinator::Coordinator;
use crate::domain::ChunkStatus;
use crate::handlers::to_value;
use chrono::{DateTime, Utc};
use runtime::sqltext::{esc, esc_all, unesc};
use runtime::ServiceError;
use schemas::dfs::{
    ChunkLocationsReply, ChunkServerAddr, ChunkServersReply, ClientIdReply, FileChunk, FileInfo,
    FileSummary, ListFilesReply,
};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::BTreeMap;

/// Before a file query: waits for `min_seq` when given; otherwise reads its writes, waiting
/// (briefly) for the catalog to reach the end of the stream, so that a file committed or deleted
/// a moment ago is seen as such. A catalog that lags behind is served as it is.
async fn settle(c: &Coordinator, min_seq: Option<u64>) -> Result<(), ServiceError> {
    if min_seq.is_some() {
        return c.catalog.wait_for(min_seq, c.wait).await;
    }
    if let Err(e) = c.catch_up().await {
        tracing::warn!(error = %e.message, "the catalog lags; answering from it as it is");
    }
    Ok(())
}

/// `GET_CLIENT_ID`: a fresh client id.
pub(crate) fn client_id() -> Result<Value, ServiceError> {
    to_value(&ClientIdReply {
        client_id: uuid::Uuid::new_v4().to_string(),
    })
}

/// `GET_CHUNK_SERVERS`: the live chunk servers.
pub(crate) async fn chunk_servers(
    c: &Coordinator,
    min_seq: Option<u64>,
) -> Result<Value, ServiceError> {
    c.catalog.wait_for(min_seq, c.wait).await?;
    to_value(&ChunkServersReply {
        chunk_servers: live_servers(&c.pool).await?,
    })
}

/// `GET_CHUNK_LOCATIONS`: where each chunk of a file is.
pub(crate) async fn locations(
    c: &Coordinator,
    file_id: &str,
    min_seq: Option<u64>,
) -> Result<Value, ServiceError> {
    settle(c, min_seq).await?;
    to_value(&ChunkLocationsReply {
        chunk_locations: chunk_locations(&c.pool, file_id).await?,
    })
}

/// `LIST_FILES`: every committed file.
pub(crate) async fn files(c: &Coordinator, min_seq: Option<u64>) -> Result<Value, ServiceError> {
    settle(c, min_seq).await?;
    to_value(&ListFilesReply {
        files: list_files(&c.pool).await?,
    })
}

/// `GET_FILE`: one file, or `not_found`.
pub(crate) async fn file(
    c: &Coordinator,
    file_id: &str,
    min_seq: Option<u64>,
) -> Result<Value, ServiceError> {
    settle(c, min_seq).await?;
    match get_file(&c.pool, file_id).await? {
        Some(f) => to_value(&f),
        None => Err(ServiceError::not_found(format!("no file {file_id:?}"))),
    }
}

fn addr(server_id: String, subject: String) -> ChunkServerAddr {
    ChunkServerAddr {
        chnk_srv_addr: unesc(subject),
        chnk_srv_port: None,
        chnk_srv_id: unesc(server_id),
    }
}

/// Live chunk servers, by id.
///
/// # Errors
/// PostgreSQL unavailable.
pub async fn live_servers(pool: &PgPool) -> Result<Vec<ChunkServerAddr>, sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT server_id, subject FROM dfs.servers WHERE live ORDER BY server_id")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(id, s)| addr(id, s)).collect())
}

/// Chunk id → live replicas holding the right bytes, for every chunk of a live file (`{}` when the
/// file is unknown or deleted).
///
/// # Errors
/// PostgreSQL unavailable.
pub async fn chunk_locations(
    pool: &PgPool,
    file_id: &str,
) -> Result<BTreeMap<String, Vec<ChunkServerAddr>>, sqlx::Error> {
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT fc.chunk_id, s.server_id, s.subject
         FROM dfs.files f
         JOIN dfs.file_chunks fc ON fc.file_id = f.file_id
         LEFT JOIN (dfs.replicas r JOIN dfs.servers s ON s.server_id = r.server_id AND s.live)
                ON r.chunk_id = fc.chunk_id AND r.sha256 = fc.sha256
         WHERE f.file_id = $1 AND f.deleted_at IS NULL
         ORDER BY fc.chunk_index, s.server_id",
    )
    .bind(esc(file_id).as_ref())
    .fetch_all(pool)
    .await?;
    let mut out: BTreeMap<String, Vec<ChunkServerAddr>> = BTreeMap::new();
    for (chunk, server, subject) in rows {
        let list = out.entry(chunk).or_default();
        if let (Some(id), Some(s)) = (server, subject) {
            list.push(addr(id, s));
        }
    }
    Ok(out)
}

type FileRow = (String, String, i64, String, i32, i32, DateTime<Utc>);

/// Live files, oldest first.
///
/// # Errors
/// PostgreSQL unavailable.
pub async fn list_files(pool: &PgPool) -> Result<Vec<FileSummary>, sqlx::Error> {
    let rows: Vec<FileRow> = sqlx::query_as(
        "SELECT file_id, name, size, sha256, replicas, chunk_count, committed_at FROM dfs.files
         WHERE deleted_at IS NULL ORDER BY committed_at, file_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(file_id, name, size, sha256, replicas, chunk_count, committed_at)| FileSummary {
                file_id: unesc(file_id),
                name: unesc(name),
                size: size as u64,
                sha256: unesc(sha256),
                chunk_count: chunk_count as u32,
                replicas: replicas as u32,
                committed_at,
            },
        )
        .collect())
}

/// A live file with its chunks, or `None`.
///
/// # Errors
/// PostgreSQL unavailable.
pub async fn get_file(pool: &PgPool, file_id: &str) -> Result<Option<FileInfo>, sqlx::Error> {
    let row: Option<FileRow> = sqlx::query_as(
        "SELECT file_id, name, size, sha256, replicas, chunk_count, committed_at FROM dfs.files
         WHERE file_id = $1 AND deleted_at IS NULL",
    )
    .bind(esc(file_id).as_ref())
    .fetch_optional(pool)
    .await?;
    let Some((file_id, name, size, sha256, replicas, _, committed_at)) = row else {
        return Ok(None);
    };
    let chunks: Vec<(String, i32, i64, String)> =
        sqlx::query_as("SELECT chunk_id, chunk_index, size, sha256 FROM dfs.file_chunks WHERE file_id = $1 ORDER BY chunk_index")
            .bind(&file_id)
            .fetch_all(pool)
            .await?;
    Ok(Some(FileInfo {
        file_id: unesc(file_id),
        name: unesc(name),
        size: size as u64,
        sha256: unesc(sha256),
        replicas: replicas as u32,
        committed_at,
        chunks: chunks
            .into_iter()
            .map(|(chunk_id, i, size, sha256)| FileChunk {
                chunk_id,
                chunk_index: i as u32,
                size: size as u64,
                sha256: unesc(sha256),
            })
            .collect(),
    }))
}

/// Chunks of a commit that no server holds with that size and checksum.
///
/// # Errors
/// PostgreSQL unavailable.
pub async fn unstored_chunks(
    pool: &PgPool,
    chunks: &[FileChunk],
) -> Result<Vec<String>, sqlx::Error> {
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = chunks.iter().map(|c| c.chunk_id.as_str()).collect();
    let shas: Vec<&str> = chunks.iter().map(|c| c.sha256.as_str()).collect();
    let sizes: Vec<i64> = chunks.iter().map(|c| c.size as i64).collect();
    sqlx::query_scalar(
        "SELECT c.chunk_id FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS c(chunk_id, sha256, size)
         WHERE NOT EXISTS (SELECT 1 FROM dfs.replicas r WHERE r.chunk_id = c.chunk_id AND r.sha256 = c.sha256 AND r.size = c.size)",
    )
    .bind(esc_all(&ids))
    .bind(esc_all(&shas))
    .bind(&sizes)
    .fetch_all(pool)
    .await
}

/// chunk id, wanted factor, live holders, chunk index, size, checksum.
type RepairRow = (
    String,
    i32,
    Vec<String>,
    Option<i32>,
    Option<i64>,
    Option<String>,
);

/// What a copy needs to know of a chunk.
#[derive(Debug, Clone)]
pub struct ChunkFacts {
    pub chunk_index: u32,
    pub size: u64,
    pub sha256: String,
}

/// The repair planner's input: every chunk that is held by a live server or wanted by a live file,
/// with its wanted factor (0 for garbage: only deleted files hold it, or no file does and it is older
/// than `orphan_grace`; chunks of uploads still inside the grace are left out), plus the chunk count
/// of every live server.
///
/// # Errors
/// PostgreSQL unavailable.
pub async fn repair_input(
    pool: &PgPool,
    orphan_grace: std::time::Duration,
) -> Result<
    (
        Vec<ChunkStatus>,
        BTreeMap<String, ChunkFacts>,
        BTreeMap<String, u64>,
    ),
    sqlx::Error,
> {
    let rows: Vec<RepairRow> = sqlx::query_as(
        "WITH wanted AS (
             SELECT fc.chunk_id, max(f.replicas) AS wanted FROM dfs.file_chunks fc
             JOIN dfs.files f ON f.file_id = fc.file_id AND f.deleted_at IS NULL GROUP BY fc.chunk_id),
         held AS (
             SELECT r.chunk_id, array_agg(r.server_id ORDER BY r.server_id) AS servers, max(r.stored_at) AS last_stored,
                    min(r.chunk_index) AS chunk_index, min(r.size) AS size, min(r.sha256) AS sha256
             FROM dfs.replicas r JOIN dfs.servers s ON s.server_id = r.server_id AND s.live GROUP BY r.chunk_id)
         SELECT COALESCE(w.chunk_id, h.chunk_id),
                CASE WHEN w.wanted IS NOT NULL THEN w.wanted
                     WHEN EXISTS (SELECT 1 FROM dfs.file_chunks x WHERE x.chunk_id = h.chunk_id) THEN 0
                     WHEN h.last_stored < now() - make_interval(secs => $1) THEN 0
                     ELSE -1 END,
                COALESCE(h.servers, ARRAY[]::text[]), h.chunk_index, h.size, h.sha256
         FROM wanted w FULL JOIN held h ON h.chunk_id = w.chunk_id",
    )
    .bind(orphan_grace.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let mut statuses = Vec::new();
    let mut facts = BTreeMap::new();
    for (chunk_id, wanted, holders, idx, size, sha) in rows {
        if wanted < 0 || holders.len() as i32 == wanted {
            continue;
        }
        if let (Some(i), Some(s), Some(h)) = (idx, size, sha) {
            facts.insert(
                chunk_id.clone(),
                ChunkFacts {
                    chunk_index: i as u32,
                    size: s as u64,
                    sha256: h,
                },
            );
        }
        statuses.push(ChunkStatus {
            chunk_id,
            wanted: wanted as u32,
            holders,
        });
    }
    let load: Vec<(String, i64)> = sqlx::query_as(
        "SELECT s.server_id, count(r.chunk_id) FROM dfs.servers s LEFT JOIN dfs.replicas r ON r.server_id = s.server_id
         WHERE s.live GROUP BY s.server_id",
    )
    .fetch_all(pool)
    .await?;
    Ok((
        statuses,
        facts,
        load.into_iter()
            .map(|(s, n)| (s, n.max(0) as u64))
            .collect(),
    ))
}

/// The chunks the read model says `server_id` holds: chunk id → checksum.
///
/// # Errors
/// PostgreSQL unavailable.
pub async fn replicas_of(
    pool: &PgPool,
    server_id: &str,
) -> Result<BTreeMap<String, String>, sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT chunk_id, sha256 FROM dfs.replicas WHERE server_id = $1")
            .bind(esc(server_id).as_ref())
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}
