//! The `dfs_catalog` projection: servers, replicas, files and their chunks in the `dfs` schema,
//! projected from the `DFS` stream so that a restarted coordinator knows everything it knew.

use runtime::projector::Projection;
use runtime::sqltext::{esc, esc_all};
use runtime::store::Stored;
use schemas::dfs::DfsEvent;
use sqlx::PgConnection;

/// Projects every dfs event into the catalog tables.
pub struct Catalog;

impl Projection for Catalog {
    type Event = DfsEvent;
    const NAME: &'static str = "dfs_catalog";

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[Stored<DfsEvent>],
    ) -> Result<(), sqlx::Error> {
        for e in events {
            let at = e.occurred_at;
            match &e.event {
                DfsEvent::ServerJoined { server_id, subject } => {
                    sqlx::query(
                        "INSERT INTO dfs.servers (server_id, subject, live, changed_at) VALUES ($1, $2, true, $3)
                         ON CONFLICT (server_id) DO UPDATE SET subject = EXCLUDED.subject, live = true, changed_at = EXCLUDED.changed_at",
                    )
                    .bind(esc(server_id).as_ref())
                    .bind(esc(subject).as_ref())
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                DfsEvent::ServerLost { server_id } => {
                    sqlx::query(
                        "UPDATE dfs.servers SET live = false, changed_at = $2 WHERE server_id = $1",
                    )
                    .bind(esc(server_id).as_ref())
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                DfsEvent::ChunkStored {
                    chunk_id,
                    server_id,
                    chunk_index,
                    size,
                    sha256,
                } => {
                    sqlx::query(
                        "INSERT INTO dfs.replicas (chunk_id, server_id, chunk_index, size, sha256, stored_at) VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (chunk_id, server_id) DO UPDATE SET chunk_index = EXCLUDED.chunk_index, size = EXCLUDED.size,
                         sha256 = EXCLUDED.sha256, stored_at = EXCLUDED.stored_at",
                    )
                    .bind(esc(chunk_id).as_ref())
                    .bind(esc(server_id).as_ref())
                    .bind(*chunk_index as i32)
                    .bind(*size as i64)
                    .bind(esc(sha256).as_ref())
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                DfsEvent::ChunkLost {
                    chunk_id,
                    server_id,
                    ..
                }
                | DfsEvent::ChunkDeleted {
                    chunk_id,
                    server_id,
                } => {
                    sqlx::query("DELETE FROM dfs.replicas WHERE chunk_id = $1 AND server_id = $2")
                        .bind(esc(chunk_id).as_ref())
                        .bind(esc(server_id).as_ref())
                        .execute(&mut *tx)
                        .await?;
                }
                DfsEvent::FileCommitted {
                    file_id,
                    name,
                    size,
                    sha256,
                    replicas,
                    chunks,
                } => {
                    let inserted = sqlx::query(
                        "INSERT INTO dfs.files (file_id, name, size, sha256, replicas, chunk_count, committed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (file_id) DO NOTHING",
                    )
                    .bind(esc(file_id).as_ref())
                    .bind(esc(name).as_ref())
                    .bind(*size as i64)
                    .bind(esc(sha256).as_ref())
                    .bind(*replicas as i32)
                    .bind(chunks.len() as i32)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                    if inserted.rows_affected() == 1 && !chunks.is_empty() {
                        let ids: Vec<&str> = chunks.iter().map(|c| c.chunk_id.as_str()).collect();
                        let idx: Vec<i32> = chunks.iter().map(|c| c.chunk_index as i32).collect();
                        let sizes: Vec<i64> = chunks.iter().map(|c| c.size as i64).collect();
                        let shas: Vec<&str> = chunks.iter().map(|c| c.sha256.as_str()).collect();
                        sqlx::query(
                            "INSERT INTO dfs.file_chunks (file_id, chunk_index, chunk_id, size, sha256)
                             SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::bigint[], $5::text[]) ON CONFLICT DO NOTHING",
                        )
                        .bind(esc(file_id).as_ref())
                        .bind(&idx)
                        .bind(esc_all(&ids))
                        .bind(&sizes)
                        .bind(esc_all(&shas))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                DfsEvent::FileDeleted { file_id } => {
                    sqlx::query("UPDATE dfs.files SET deleted_at = $2 WHERE file_id = $1 AND deleted_at IS NULL")
                        .bind(esc(file_id).as_ref())
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("TRUNCATE dfs.servers, dfs.replicas, dfs.files, dfs.file_chunks")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
