//! Live subjects added for the dashboard (`services/dashboard`), beyond the contract: what the dfs
//! and shop contexts publish so that a page can follow them without polling, and the queries that
//! give the state those subjects then change.
//!
//! - `dfs.live.servers` ([`DfsServers`]): every chunk server with its liveness, chunk count and bytes,
//!   after any change (a server joined or was lost, a chunk stored, lost or deleted).
//! - `dfs.live.file.<file token>` ([`FileReplicas`]): a file's chunks with the servers holding each,
//!   after any change to one of them (re-replication shows here as it happens).
//! - `dfs.live.replication` ([`ReplicationEvent`]): each replica change as it is recorded.
//! - `dfs.query.servers` → [`DfsServers`]; `dfs.query.file-replicas` `{file_id}` → [`FileReplicas`].
//! - `shop.live.checkouts` ([`LiveCheckout`]): each checkout as it is recorded.
//! - `shop.live.dht-stats` ([`crate::shop::DhtStatsReply`]): keys per shard, at most twice a second
//!   while carts change (and once after the last change).
//! - `shop.query.checkouts` `{limit?}` → [`RecentCheckouts`]: the latest checkouts, newest first.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A chunk server as the coordinator's catalog sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DfsServer {
    pub server_id: String,
    /// `dfs.chunk.<id>`.
    pub subject: String,
    /// Heard within the dead-after window (5 s by default).
    pub alive: bool,
    /// Good copies held (from the catalog).
    pub chunks: u64,
    /// Bytes of those copies.
    pub bytes: u64,
}

/// `dfs.live.servers` and the reply of `dfs.query.servers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DfsServers {
    pub servers: Vec<DfsServer>,
    /// The DFS stream sequence this view includes.
    pub seq: u64,
}

/// `dfs.query.servers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DfsServersQuery {
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// `dfs.query.file-replicas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileReplicasQuery {
    pub file_id: String,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// One chunk of a file and the servers holding a good copy (alive or not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChunkReplicas {
    pub chunk_id: String,
    pub chunk_index: u32,
    pub size: u64,
    /// Servers holding a copy, alive ones first, each sorted by id.
    pub servers: Vec<String>,
    /// How many of `servers` are alive.
    pub live: u32,
}

/// `dfs.live.file.<file token>` and the reply of `dfs.query.file-replicas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileReplicas {
    pub file_id: String,
    pub name: String,
    pub size: u64,
    /// The replication factor the file was committed with.
    pub replicas: u32,
    /// In `chunk_index` order.
    pub chunks: Vec<ChunkReplicas>,
    /// Chunks with fewer live copies than `replicas`.
    pub under_replicated: u32,
    /// True once the file is deleted (the last message for it).
    pub deleted: bool,
    pub seq: u64,
}

/// `dfs.live.replication`: one replica or server change, as recorded in stream `DFS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicationEvent {
    /// `ChunkStored`, `ChunkLost`, `ChunkDeleted`, `ServerJoined` or `ServerLost`.
    #[serde(rename = "type")]
    pub kind: String,
    pub server_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_id: Option<String>,
    /// Files holding the chunk.
    #[serde(default)]
    pub file_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub seq: u64,
}

/// `shop.live.checkouts`: one checkout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LiveCheckout {
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<crate::shop::OrderLine>,
    pub total: f64,
    pub occurred_at: DateTime<Utc>,
    /// Stream sequence of the `CartCheckedOut` event.
    pub seq: u64,
}

/// `shop.query.checkouts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutsQuery {
    /// At most this many (1..=200, default 50).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Reply of `shop.query.checkouts`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecentCheckouts {
    pub checkouts: Vec<LiveCheckout>,
}

/// Subjects of this module for the catalogue.
pub fn subjects() -> Vec<crate::catalogue::SubjectDoc> {
    use crate::catalogue::Kind::*;
    use crate::doc;
    use crate::shop::DhtStatsReply;
    vec![
        doc!("dfs.live.servers", Live, "Every chunk server (alive, chunks, bytes) after any server or replica change (an addition for dashboards).", DfsServers),
        doc!("dfs.live.file.{file_id}", Live, "A file's chunks and the servers holding each, after any change to them; deleted: true last (an addition).", FileReplicas),
        doc!("dfs.live.replication", Live, "Each replica or server change as it is recorded: ChunkStored, ChunkLost, ChunkDeleted, ServerJoined, ServerLost (an addition).", ReplicationEvent),
        doc!("dfs.query.servers", Query, "Every chunk server with liveness, chunk count and bytes (an addition).", DfsServersQuery => DfsServers),
        doc!("dfs.query.file-replicas", Query, "A file's chunks with the servers holding each and the under-replicated count; unknown file not_found (an addition).", FileReplicasQuery => FileReplicas),
        doc!("shop.live.checkouts", Live, "Each checkout as it is recorded (an addition for dashboards).", LiveCheckout),
        doc!("shop.live.dht-stats", Live, "Keys per shard, at most twice a second while carts change and once after the last change (an addition).", DhtStatsReply),
        doc!("shop.query.checkouts", Query, "The latest checkouts, newest first (limit 1..=200, default 50; an addition).", CheckoutsQuery => RecentCheckouts),
    ]
}
