//! The coordinator's commands: wire body in, the file's decision taken on its events, one event
//! appended, the reply out (errors mapped by `From<FileError> for ServiceError`); and the one
//! subject `dfs.coordinator`, whose `request_type` says which command or query runs.

use crate::coordinator::Coordinator;
use crate::domain::{self, Decision, FileError};
use crate::queries;
use runtime::service::Request;
use runtime::ServiceError;
use schemas::dfs::{CommitFile, CommitFileReply, CoordinatorRequest, DeleteFileReply};
use serde_json::Value;
use std::sync::Arc;

/// The event subject of a file.
pub(crate) fn file_subject(file_id: &str) -> String {
    format!("dfs.events.file.{}", schemas::encode_token(file_id))
}

/// A reply as the JSON value the multiplexed subject answers with.
pub(crate) fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ServiceError> {
    serde_json::to_value(v).map_err(|e| ServiceError::internal(e.to_string()))
}

/// `dfs.coordinator`: one subject (contract section 7), the request's `request_type` says what.
pub(crate) async fn handle(
    c: Arc<Coordinator>,
    request: CoordinatorRequest,
    req: Request,
) -> Result<Value, ServiceError> {
    match request {
        CoordinatorRequest::GET_CLIENT_ID {} => queries::client_id(),
        CoordinatorRequest::GET_CHUNK_SERVERS { min_seq } => {
            queries::chunk_servers(&c, min_seq).await
        }
        CoordinatorRequest::GET_CHUNK_LOCATIONS { file_id, min_seq } => {
            queries::locations(&c, &file_id, min_seq).await
        }
        CoordinatorRequest::LIST_FILES { min_seq } => queries::files(&c, min_seq).await,
        CoordinatorRequest::GET_FILE { file_id, min_seq } => {
            queries::file(&c, &file_id, min_seq).await
        }
        CoordinatorRequest::COMMIT_FILE(commit) => commit_file(&c, commit, req.msg_id()).await,
        CoordinatorRequest::DELETE_FILE { file_id } => delete_file(&c, file_id, req.msg_id()).await,
    }
}

/// `COMMIT_FILE`: checked, normalised, its chunks seen stored, then decided on the file.
async fn commit_file(
    c: &Coordinator,
    commit: CommitFile,
    msg_id: Option<&str>,
) -> Result<Value, ServiceError> {
    domain::check_commit(&commit, c.max_chunk)?;
    let commit = domain::normalise_commit(commit, c.default_replicas);
    let subject = file_subject(&commit.file_id);
    let (state, seq) = c.files.state(&subject).await?;
    if domain::decide_commit(&state, &commit)? == Decision::AlreadyDone {
        return to_value(&CommitFileReply {
            file_id: commit.file_id,
            seq,
        });
    }
    // The chunk servers appended ChunkStored before they answered the uploads: see them.
    c.catch_up().await?;
    let missing = queries::unstored_chunks(&c.pool, &commit.chunks).await?;
    if !missing.is_empty() {
        return Err(ServiceError::conflict(format!(
            "{} chunk(s) are not stored on any chunk server with that size and sha256 (first: {}); upload them before COMMIT_FILE",
            missing.len(),
            missing[0]
        )));
    }
    let reply = c
        .files
        .execute(
            &subject,
            msg_id,
            |s, _| match domain::decide_commit(s, &commit)? {
                Decision::Append(e) => Ok(e),
                Decision::AlreadyDone => Err(FileError::Conflict(
                    "the file was committed concurrently; ask GET_FILE".into(),
                )),
            },
            |_, _, seq| CommitFileReply {
                file_id: commit.file_id.clone(),
                seq,
            },
        )
        .await?;
    to_value(&reply)
}

/// `DELETE_FILE`: decided on the file; wakes the repair loop, which collects its chunks.
async fn delete_file(
    c: &Coordinator,
    file_id: String,
    msg_id: Option<&str>,
) -> Result<Value, ServiceError> {
    schemas::check_id("file_id", &file_id).map_err(ServiceError::invalid)?;
    let subject = file_subject(&file_id);
    let reply = c
        .files
        .execute(
            &subject,
            msg_id,
            |s, _| domain::decide_delete(s, &file_id),
            |_, _, seq| DeleteFileReply {
                file_id: file_id.clone(),
                deleted: true,
                seq,
            },
        )
        .await?;
    c.repair_now.notify_one();
    to_value(&reply)
}
