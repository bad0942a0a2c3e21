//! Contract section 4: SSD carts that carry datasets to compute servers.
//!
//! Event subjects (stream `DISPATCH`): `dispatch.events.facility.default`,
//! `dispatch.events.cart.<cart>`, `dispatch.events.ssd.<ssd>`, `dispatch.events.request.<request>`,
//! each id encoded with [`crate::encode_token`].

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a facility node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Where carts live (their home).
    Storage,
    /// A compute server's dock; the node id is the server id.
    Dock,
    /// A crossing of aisles.
    Junction,
}

/// One node of the facility graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
}

/// An undirected edge: a cart drives it in `seconds` (finite, >= 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub seconds: f64,
}

/// `dispatch.cmd.set-facility`: replaces the graph; it must be connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetFacility {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// Reply of `dispatch.cmd.set-facility` and `dispatch.query.facility` (`seq` 0 for no facility).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Facility {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub seq: u64,
}

/// Cart status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CartStatus {
    /// At home, no job.
    Free,
    /// Reserved for a request, waiting to leave.
    Queue,
    /// Driving (to the server, or home).
    Flight,
    /// At the server's dock.
    Docked,
    /// Transferring datasets at the dock.
    Transfer,
    /// Out of order; its undelivered datasets were requested again on other carts.
    Fault,
}

impl CartStatus {
    /// The status as written on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "FREE",
            Self::Queue => "QUEUE",
            Self::Flight => "FLIGHT",
            Self::Docked => "DOCKED",
            Self::Transfer => "TRANSFER",
            Self::Fault => "FAULT",
        }
    }
}

/// SSD health; only `failed` SSDs serve nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SsdHealth {
    Ok,
    Degraded,
    Failed,
}

/// `dispatch.cmd.register-cart`; `home` must be a node of the facility. Registering a cart in
/// `FAULT` again (after repair) puts it back `FREE` at home; any other existing cart is `conflict`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterCart {
    pub cart_id: String,
    pub home: String,
}

/// `dispatch.cmd.register-ssd` (the cart must exist; an SSD id is registered once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterSsd {
    pub ssd_id: String,
    pub cart_id: String,
    /// >= 1.
    pub capacity_bytes: u64,
    pub health: SsdHealth,
}

/// `dispatch.cmd.set-ssd-health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSsdHealth {
    pub ssd_id: String,
    pub health: SsdHealth,
}

/// `dispatch.cmd.put-dataset`: must fit the SSD's free space (else `conflict`); putting a dataset
/// the SSD already holds replaces its size. A failed SSD takes nothing (`conflict`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutDataset {
    pub ssd_id: String,
    pub dataset: String,
    pub size_bytes: u64,
}

/// One SSD as a cart shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SsdInfo {
    pub ssd_id: String,
    pub health: SsdHealth,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    /// Dataset names, sorted.
    pub datasets: Vec<String>,
}

/// Reply of `register-ssd`, `set-ssd-health`, `put-dataset`: the SSD with its cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SsdReply {
    pub ssd_id: String,
    pub cart_id: String,
    pub health: SsdHealth,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub datasets: Vec<String>,
    pub seq: u64,
}

/// A cart: reply of `dispatch.query.cart`, of `register-cart` and `cart-report`, and the message on
/// `dispatch.status.cart.<cart_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CartInfo {
    pub cart_id: String,
    pub status: CartStatus,
    /// The node the cart is at, or last passed.
    pub location: String,
    pub home: String,
    pub ssds: Vec<SsdInfo>,
    /// The request of the cart's current job (null when it has none).
    pub request_id: Option<String>,
    pub server_id: Option<String>,
    /// The current job's route from where the cart started to the server's dock.
    pub route: Option<Vec<String>>,
    /// Expected arrival at where the cart is driving to (the dock, or home after undocking).
    pub eta: Option<DateTime<Utc>>,
    /// Stream sequence of the cart's last event (in command replies: of the event just appended).
    pub seq: u64,
}

/// `dispatch.cmd.request-datasets`; `directory` is accepted for `datasets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestDatasets {
    pub server_id: String,
    /// 1..=1000 dataset names (duplicates are ignored).
    #[serde(alias = "directory")]
    pub datasets: Vec<String>,
}

/// A cart serving (part of) a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestCart {
    pub cart_id: String,
    pub datasets: Vec<String>,
    /// `QUEUE` once the cart is reserved for this request; otherwise the cart's own status (the
    /// request then waits in that cart's FIFO queue).
    pub status: CartStatus,
    /// Whether this cart's transfer to the server has completed.
    #[serde(default)]
    pub delivered: bool,
}

/// Reply of `dispatch.cmd.request-datasets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestDatasetsReply {
    pub request_id: String,
    pub server_id: String,
    pub carts: Vec<RequestCart>,
    pub seq: u64,
}

/// A report a cart sends about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    Departed,
    Position,
    Docked,
    TransferStarted,
    TransferCompleted,
    Undocked,
    Returned,
    Fault,
}

impl Report {
    /// As written on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Departed => "departed",
            Self::Position => "position",
            Self::Docked => "docked",
            Self::TransferStarted => "transfer_started",
            Self::TransferCompleted => "transfer_completed",
            Self::Undocked => "undocked",
            Self::Returned => "returned",
            Self::Fault => "fault",
        }
    }
}

/// `dispatch.cmd.cart-report`: `location` (a facility node) is required for `position`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CartReport {
    pub cart_id: String,
    pub report: Report,
    #[serde(default)]
    pub location: Option<String>,
}

/// Published on `dispatch.cart.<cart_id>.job` for each dispatch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    pub request_id: String,
    pub server_id: String,
    /// Node ids from the cart's location to the server's dock (both included).
    pub route: Vec<String>,
    /// Driving time of the route.
    pub seconds: f64,
    pub cart_id: String,
    /// The datasets this cart carries for the request.
    pub datasets: Vec<String>,
    /// Their total size (the simulator derives the transfer time from it).
    pub bytes: u64,
}

/// `dispatch.query.cart`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DispatchCartQuery {
    pub cart_id: String,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// `dispatch.query.carts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CartsQuery {
    #[serde(default)]
    pub status: Option<CartStatus>,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// Reply of `dispatch.query.carts`, sorted by `cart_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CartsReply {
    pub carts: Vec<CartInfo>,
}

/// `dispatch.query.request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestQuery {
    pub request_id: String,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// State of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// No cart has been reserved for it yet.
    Queued,
    /// At least one cart is reserved or on its way.
    Dispatched,
    /// Every dataset has been transferred.
    Delivered,
    /// A dataset can no longer be served (see `reason`).
    Failed,
}

/// Reply of `dispatch.query.request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestInfo {
    pub request_id: String,
    pub server_id: String,
    pub datasets: Vec<String>,
    pub state: RequestState,
    /// Carts currently serving it (carts that faulted before delivering are no longer listed).
    pub carts: Vec<RequestCart>,
    /// Datasets that no cart can serve any more.
    pub failed: Vec<String>,
    /// Why the request failed (null unless `failed`).
    pub reason: Option<String>,
    pub seq: u64,
}

/// `dispatch.query.dataset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetQuery {
    pub dataset: String,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// One SSD holding a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetSsd {
    pub ssd_id: String,
    pub cart_id: String,
    pub health: SsdHealth,
    pub size_bytes: u64,
}

/// Reply of `dispatch.query.dataset` (a dataset on no SSD is `not_found`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetInfo {
    pub dataset: String,
    pub ssds: Vec<DatasetSsd>,
}

/// `dispatch.query.route` between two nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteQuery {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// Reply of `dispatch.query.route`: the shortest path (both ends included) and its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RouteReply {
    pub path: Vec<String>,
    pub seconds: f64,
}

/// `dispatch.query.facility` (the body may be empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FacilityQuery {
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// A dataset and its size (inside events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetSize {
    pub dataset: String,
    pub size_bytes: u64,
}

/// The datasets of a request one cart carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlannedCart {
    pub cart_id: String,
    pub datasets: Vec<String>,
}

/// Event data on `dispatch.events.>`, tagged by the envelope's `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum DispatchEvent {
    /// On `dispatch.events.facility.default`: the graph was replaced.
    FacilitySet(FacilitySet),
    /// On `dispatch.events.cart.<cart>`: a cart was registered (or re-registered after a fault).
    CartRegistered(CartRegistered),
    /// On `dispatch.events.ssd.<ssd>`.
    SsdRegistered(SsdRegistered),
    /// On `dispatch.events.ssd.<ssd>`.
    SsdHealthChanged(SsdHealthChanged),
    /// On `dispatch.events.ssd.<ssd>`.
    DatasetPut(DatasetPut),
    /// On `dispatch.events.request.<request>`: a request, with the carts chosen for it.
    DatasetsRequested(DatasetsRequested),
    /// On `dispatch.events.request.<request>`: a cart that faulted handed its datasets on.
    RequestReplanned(RequestReplanned),
    /// On `dispatch.events.cart.<cart>`: the dispatcher reserved the cart for a request (appended
    /// with the cart's expected last sequence, so a cart is never reserved twice).
    CartReserved(CartReserved),
    /// On `dispatch.events.cart.<cart>`: a cart report and the status it moved the cart to.
    CartReported(CartReported),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FacilitySet {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CartRegistered {
    pub cart_id: String,
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SsdRegistered {
    pub ssd_id: String,
    pub cart_id: String,
    pub capacity_bytes: u64,
    pub health: SsdHealth,
    /// Datasets already on the SSD (used when the default facility is loaded).
    #[serde(default)]
    pub datasets: Vec<DatasetSize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SsdHealthChanged {
    pub ssd_id: String,
    pub cart_id: String,
    pub health: SsdHealth,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetPut {
    pub ssd_id: String,
    pub cart_id: String,
    pub dataset: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetsRequested {
    pub request_id: String,
    pub server_id: String,
    pub datasets: Vec<String>,
    pub plan: Vec<PlannedCart>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestReplanned {
    pub request_id: String,
    /// The cart that can no longer serve its share.
    pub cart_id: String,
    /// Its undelivered datasets.
    pub datasets: Vec<String>,
    /// The carts that take them over.
    pub plan: Vec<PlannedCart>,
    /// Those no cart can serve.
    pub failed: Vec<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CartReserved {
    pub cart_id: String,
    pub request_id: String,
    pub server_id: String,
    pub datasets: Vec<String>,
    pub route: Vec<String>,
    pub seconds: f64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CartReported {
    pub cart_id: String,
    pub report: Report,
    /// The status after the report.
    pub status: CartStatus,
    /// The cart's location after the report.
    pub location: String,
    /// The request of the cart's job, if it has one.
    pub request_id: Option<String>,
    pub eta: Option<DateTime<Utc>>,
}

/// HTTP body of `POST /request-datasets` (as the original design: `directory` or `datasets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequestDatasets {
    pub server_id: String,
    #[serde(alias = "directory")]
    pub datasets: Vec<String>,
}

/// Subjects of this context for the catalogue.
#[must_use]
pub fn subjects() -> Vec<crate::catalogue::SubjectDoc> {
    use crate::catalogue::Kind::*;
    use crate::doc;
    vec![
        doc!("dispatch.cmd.set-facility", Command, "Replace the facility graph (must be connected; nodes storage|dock|junction; a dock's id is its compute server's id).", SetFacility => Facility),
        doc!("dispatch.cmd.register-cart", Command, "Register a cart at its home node (again after a FAULT: back FREE at home).", RegisterCart => CartInfo),
        doc!("dispatch.cmd.register-ssd", Command, "Register an SSD on a cart.", RegisterSsd => SsdReply),
        doc!("dispatch.cmd.set-ssd-health", Command, "Set an SSD's health (ok, degraded, failed).", SetSsdHealth => SsdReply),
        doc!("dispatch.cmd.put-dataset", Command, "Put a dataset on an SSD; must fit its free space, else conflict.", PutDataset => SsdReply),
        doc!("dispatch.cmd.request-datasets", Command, "Request datasets for a compute server; one cart carries every requested dataset it holds; nearest free cart wins; busy carts queue requests FIFO. Unknown server or dataset: not_found; only on failed SSDs: conflict.", RequestDatasets => RequestDatasetsReply),
        doc!("dispatch.cmd.cart-report", Command, "A cart's report: departed QUEUE->FLIGHT, position FLIGHT->FLIGHT, docked FLIGHT->DOCKED, transfer_started DOCKED->TRANSFER, transfer_completed TRANSFER->DOCKED, undocked DOCKED->FLIGHT, returned FLIGHT->FREE, fault any->FAULT; anything else conflict.", CartReport => CartInfo),
        doc!("dispatch.cart.{cart_id}.job", Live, "The job of a dispatched cart: the shortest route from its location to the server's dock.", Job),
        doc!("dispatch.status.cart.{cart_id}", Live, "The cart (as dispatch.query.cart) after every change.", CartInfo),
        doc!("dispatch.query.cart", Query, "One cart with its SSDs, job and ETA.", DispatchCartQuery => CartInfo),
        doc!("dispatch.query.carts", Query, "Every cart, optionally only those with one status.", CartsQuery => CartsReply),
        doc!("dispatch.query.request", Query, "A request: state queued|dispatched|delivered|failed and its carts.", RequestQuery => RequestInfo),
        doc!("dispatch.query.dataset", Query, "The SSDs (and carts) holding a dataset.", DatasetQuery => DatasetInfo),
        doc!("dispatch.query.route", Query, "Shortest route between two nodes.", RouteQuery => RouteReply),
        doc!("dispatch.query.facility", Query, "The facility graph.", FacilityQuery => Facility),
        doc!("dispatch.events.{aggregate}.{id}", Event, "Dispatch events on facility.default, cart.<id>, ssd.<id>, request.<id>.", DispatchEvent),
    ]
}
