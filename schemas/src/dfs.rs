//! Contract section 7: chunked file storage with replicas.
//!
//! Two request-reply surfaces:
//! - the coordinator on `dfs.coordinator`, dispatching on `request_type` as the original protocol
//!   ([`CoordinatorRequest`]); errors there use the contract's `{"error": {code, message}}` shape;
//! - chunk server `<id>` on `dfs.chunk.<id>`, in the original framing: a JSON header, `\n\n`, then
//!   the chunk's bytes ([`UploadChunk`], [`DownloadChunk`]); errors there are the original
//!   `{"status": "error", "message"}` ([`ChunkReply`]), with the micro error headers as well.
//!
//! Chunk ids are 1..=128 of `[A-Za-z0-9_-]`, so they are subject tokens as they are. File ids are
//! contract ids (1..=256 bytes of UTF-8) and become tokens with [`crate::encode_token`].

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A request on `dfs.coordinator`, tagged by `request_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "request_type", deny_unknown_fields)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum CoordinatorRequest {
    /// → [`ClientIdReply`].
    GET_CLIENT_ID {},
    /// → [`ChunkServersReply`]: live servers only.
    GET_CHUNK_SERVERS {
        #[serde(default)]
        min_seq: Option<u64>,
    },
    /// → [`ChunkLocationsReply`]: live replicas only; unknown file `{}`.
    GET_CHUNK_LOCATIONS {
        file_id: String,
        #[serde(default)]
        min_seq: Option<u64>,
    },
    /// → [`CommitFileReply`]. Every chunk must have been stored on at least one server.
    COMMIT_FILE(CommitFile),
    /// → [`ListFilesReply`].
    LIST_FILES {
        #[serde(default)]
        min_seq: Option<u64>,
    },
    /// → [`FileInfo`]; unknown file `not_found`.
    GET_FILE {
        file_id: String,
        #[serde(default)]
        min_seq: Option<u64>,
    },
    /// → [`DeleteFileReply`]; unknown file `not_found`. The chunks are then garbage collected.
    DELETE_FILE { file_id: String },
}

/// `GET_CLIENT_ID` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientIdReply {
    pub client_id: String,
}

/// One chunk server as the original protocol names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChunkServerAddr {
    /// The server's subject, `dfs.chunk.<id>`.
    pub chnk_srv_addr: String,
    /// Always null: servers are reached by subject, not by port.
    pub chnk_srv_port: Option<u16>,
    pub chnk_srv_id: String,
}

/// `GET_CHUNK_SERVERS` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChunkServersReply {
    pub chunk_servers: Vec<ChunkServerAddr>,
}

/// `GET_CHUNK_LOCATIONS` reply: chunk id → live replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChunkLocationsReply {
    pub chunk_locations: std::collections::BTreeMap<String, Vec<ChunkServerAddr>>,
}

/// One chunk of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileChunk {
    pub chunk_id: String,
    /// 0-based position in the file.
    pub chunk_index: u32,
    /// Bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the chunk's bytes.
    pub sha256: String,
}

/// `COMMIT_FILE` body (beside `request_type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitFile {
    pub file_id: String,
    /// The file's name (its extension picks the HTTP Content-Type).
    pub name: String,
    /// Bytes; the sum of the chunks' sizes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
    /// Indices 0..n, each once.
    pub chunks: Vec<FileChunk>,
    /// Replication factor for this file (default: the deployment's, `SWITCHYARD_DFS_REPLICAS`).
    #[serde(default)]
    pub replicas: Option<u32>,
}

/// `COMMIT_FILE` reply. Committing the same file again with the same content is answered the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommitFileReply {
    pub file_id: String,
    pub seq: u64,
}

/// A file as `LIST_FILES` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileSummary {
    pub file_id: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub chunk_count: u32,
    pub replicas: u32,
    pub committed_at: DateTime<Utc>,
}

/// `LIST_FILES` reply, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListFilesReply {
    pub files: Vec<FileSummary>,
}

/// `GET_FILE` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileInfo {
    pub file_id: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub replicas: u32,
    pub committed_at: DateTime<Utc>,
    /// In `chunk_index` order.
    pub chunks: Vec<FileChunk>,
}

/// `DELETE_FILE` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeleteFileReply {
    pub file_id: String,
    pub deleted: bool,
    pub seq: u64,
}

/// `UPLOAD_CHUNK` header; `\n\n` and exactly `chunk_size` bytes follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UploadChunk {
    /// `"UPLOAD_CHUNK"`.
    pub request_type: String,
    pub chunk_id: String,
    pub chunk_index: u32,
    pub chunk_size: u64,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub file_id: Option<String>,
    /// Lower-case hex SHA-256 of the bytes; a mismatch stores nothing.
    pub sha256: String,
}

/// `DOWNLOAD_CHUNK` request (a `\n\n` after it is allowed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DownloadChunk {
    /// `"DOWNLOAD_CHUNK"`.
    pub request_type: String,
    pub chunk_id: String,
}

/// `DELETE_CHUNK` (beyond the original; the coordinator's garbage collector sends it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeleteChunk {
    /// `"DELETE_CHUNK"`.
    pub request_type: String,
    pub chunk_id: String,
}

/// A chunk server's reply header. Success of `UPLOAD_CHUNK`/`DELETE_CHUNK`: `{"status": "success"}`;
/// `DOWNLOAD_CHUNK`: `{status, chunk_index, chunk_size, sha256}`, `\n\n`, the bytes;
/// `LIST_CHUNKS`: `{status, chunks}`; any error: `{"status": "error", "message"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChunkReply {
    /// `success` or `error`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<StoredChunk>>,
}

/// One chunk a server holds (`LIST_CHUNKS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoredChunk {
    pub chunk_id: String,
    pub chunk_index: u32,
    pub size: u64,
    pub sha256: String,
}

/// Published on `dfs.heartbeat.<id>` by every chunk server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Heartbeat {
    pub server_id: String,
    /// `dfs.chunk.<id>`.
    pub subject: String,
    /// Chunks held.
    pub chunks: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Largest chunk this server takes.
    pub max_chunk: u64,
}

/// Events on `dfs.events.server.<id>`, `dfs.events.chunk.<chunk_id>`, `dfs.events.file.<file_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum DfsEvent {
    /// A chunk server was heard (first time, or again after it was lost).
    ServerJoined { server_id: String, subject: String },
    /// A chunk server was silent for the dead-after window (5 s by default).
    ServerLost { server_id: String },
    /// A server holds a verified copy of a chunk.
    ChunkStored {
        chunk_id: String,
        server_id: String,
        chunk_index: u32,
        size: u64,
        sha256: String,
    },
    /// A server no longer holds a good copy (missing from its disk, or its bytes went bad).
    ChunkLost {
        chunk_id: String,
        server_id: String,
        reason: String,
    },
    /// A server removed its copy on purpose (garbage collection or a surplus replica).
    ChunkDeleted { chunk_id: String, server_id: String },
    /// A file was committed: its chunks, in order.
    FileCommitted {
        file_id: String,
        name: String,
        size: u64,
        sha256: String,
        replicas: u32,
        chunks: Vec<FileChunk>,
    },
    /// A file was deleted; its chunks become garbage.
    FileDeleted { file_id: String },
}

/// Any reply of `dfs.coordinator` (for the catalogue; each request type has its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CoordinatorReply {
    ClientId(ClientIdReply),
    ChunkServers(ChunkServersReply),
    ChunkLocations(ChunkLocationsReply),
    Commit(CommitFileReply),
    Files(ListFilesReply),
    File(FileInfo),
    Deleted(DeleteFileReply),
}

/// Any request header on `dfs.chunk.<id>` (for the catalogue). `LIST_CHUNKS` is `{request_type}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ChunkRequest {
    Upload(UploadChunk),
    Download(DownloadChunk),
    Delete(DeleteChunk),
}

/// The repair lease: `<instance> <unix ms>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RepairLease(pub String);

/// Subjects of this context for the catalogue.
pub fn subjects() -> Vec<crate::catalogue::SubjectDoc> {
    use crate::catalogue::Kind::*;
    use crate::doc;
    vec![
        doc!("dfs.coordinator", Query, "Coordinator, dispatching on request_type: GET_CLIENT_ID, GET_CHUNK_SERVERS, GET_CHUNK_LOCATIONS, COMMIT_FILE, LIST_FILES, GET_FILE, DELETE_FILE. Errors use the contract shape.", CoordinatorRequest => CoordinatorReply),
        doc!("dfs.chunk.{server_id}", Command, "Chunk server: UPLOAD_CHUNK (JSON header, \\n\\n, chunk_size bytes), DOWNLOAD_CHUNK (reply: header, \\n\\n, bytes), DELETE_CHUNK, LIST_CHUNKS. Errors: {\"status\":\"error\",\"message\"}.", ChunkRequest => ChunkReply),
        doc!("dfs.put.{server_id}[.{server_id}...]", Command, "Fanned-out upload (an addition): one UPLOAD_CHUNK frame published once reaches every chunk server named in the subject (1 to 5 ids); each stores it as on dfs.chunk.<id> and replies to the one reply subject, its id in the Dfs-Chunk-Server header. Any other request_type is refused.", ChunkRequest => ChunkReply),
        doc!(
            "dfs.heartbeat.{server_id}",
            Live,
            "Chunk server heartbeat (every second by default); silent for 5 s means lost.",
            Heartbeat
        ),
        doc!(
            "dfs.lease.repair",
            Live,
            "JetStream subject (stream DFS_LEASE, last message kept) naming the coordinator that runs repairs: `<instance> <unix ms>`, renewed every round, taken over after 10 s.",
            RepairLease
        ),
        doc!(
            "dfs.events.server.{server_id}",
            Event,
            "ServerJoined, ServerLost.",
            DfsEvent
        ),
        doc!(
            "dfs.events.chunk.{chunk_id}",
            Event,
            "ChunkStored, ChunkLost, ChunkDeleted.",
            DfsEvent
        ),
        doc!(
            "dfs.events.file.{file_id}",
            Event,
            "FileCommitted, FileDeleted.",
            DfsEvent
        ),
    ]
}
