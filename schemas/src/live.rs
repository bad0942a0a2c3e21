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
//! - `engine.query.systems` `{limit?, min_seq?}` → [`Systems`]: every system id with its module
//!   count, from the engine read model (the contract has no list of systems).
//! - `dispatch.query.queue` `{cart_id?, min_seq?}` → [`Queues`]: the requests waiting in each cart's
//!   FIFO queue, in order (the contract has no queue query).

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

/// `engine.query.systems`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemsQuery {
    /// At most this many, by system id (1..=5000, default 1000).
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// One system in [`Systems`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SystemSummary {
    pub system_id: String,
    /// How many modules the system holds (its `modules` list, in order).
    pub modules: u32,
    /// Stream sequence of the system's last `SystemSet`.
    pub seq: u64,
}

/// Reply of `engine.query.systems`: systems sorted by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Systems {
    pub systems: Vec<SystemSummary>,
    /// How many systems there are (more than `systems.len()` when `limit` cut the list).
    pub total: u64,
}

/// `dispatch.query.queue`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    /// One cart (its queue, possibly empty; unknown cart `not_found`); absent: every cart whose
    /// queue is not empty.
    #[serde(default)]
    pub cart_id: Option<String>,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// A request waiting for a cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QueuedRequest {
    pub request_id: String,
    pub server_id: String,
    /// The datasets this cart is to carry for the request.
    pub datasets: Vec<String>,
}

/// One cart's FIFO queue, first in line first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CartQueue {
    pub cart_id: String,
    pub requests: Vec<QueuedRequest>,
}

/// Reply of `dispatch.query.queue`: carts sorted by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Queues {
    pub queues: Vec<CartQueue>,
    /// The DISPATCH stream sequence the answer includes.
    pub seq: u64,
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
        doc!("engine.query.systems", Query, "Every system id with its module count, sorted by id (limit 1..=5000, default 1000; total counts them all; an addition).", SystemsQuery => Systems),
        doc!("dispatch.query.queue", Query, "The requests waiting in a cart's FIFO queue, first in line first (one cart, or every cart with a non-empty queue; unknown cart not_found; an addition).", QueueQuery => Queues),
    ]
}
