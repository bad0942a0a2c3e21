//! The dispatch domain, pure: the facility graph and its shortest routes, the cart / SSD / request
//! states with their `decide` functions (one command, one event) and `apply`, and [`Model`], the fold
//! of every event that the dispatcher and the command handlers read (queues, planning, reservations,
//! re-planning after a fault). No tokio, NATS or SQL here.

use chrono::{DateTime, Utc};
use schemas::dispatch::{self as w, CartStatus, DispatchEvent, NodeKind, Report, SsdHealth};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

/// What a command did wrong (`Invalid`, `NotFound`, `Conflict`), mapped to the contract's codes
/// by `From<DomainError> for ServiceError`.
pub use runtime::DomainError;

fn check_id(field: &str, id: &str) -> Result<(), DomainError> {
    schemas::check_id(field, id).map_err(DomainError::Invalid)
}

// ---------------------------------------------------------------------------------------------
// Facility graph

/// The facility: nodes, undirected weighted edges, and an adjacency list for Dijkstra.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<w::Node>,
    pub edges: Vec<w::Edge>,
    index: HashMap<String, usize>,
    adj: Vec<Vec<(usize, f64)>>,
}

#[derive(Clone, Copy, PartialEq)]
struct HeapItem(f64, usize);
impl Eq for HeapItem {}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapItem {
    fn cmp(&self, other: &Self) -> Ordering {
        // Min-heap on the distance.
        other
            .0
            .total_cmp(&self.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

impl Graph {
    /// Builds a graph from stored (already validated) nodes and edges; edges to unknown nodes are
    /// dropped.
    #[must_use]
    pub fn build(nodes: Vec<w::Node>, edges: Vec<w::Edge>) -> Self {
        let mut index = HashMap::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            index.entry(n.id.clone()).or_insert(i);
        }
        let mut adj = vec![Vec::new(); nodes.len()];
        for e in &edges {
            if let (Some(&a), Some(&b)) = (index.get(&e.from), index.get(&e.to)) {
                adj[a].push((b, e.seconds));
                adj[b].push((a, e.seconds));
            }
        }
        Self {
            nodes,
            edges,
            index,
            adj,
        }
    }

    /// Validates a `set-facility`: ids, unique nodes, edges between known nodes with a finite
    /// non-negative time, and connected.
    ///
    /// # Errors
    /// `Invalid` naming the first problem.
    pub fn new(nodes: Vec<w::Node>, edges: Vec<w::Edge>) -> Result<Self, DomainError> {
        if nodes.is_empty() {
            return Err(DomainError::Invalid("`nodes` must not be empty".into()));
        }
        let mut seen = BTreeSet::new();
        for n in &nodes {
            check_id("nodes[].id", &n.id)?;
            if !seen.insert(n.id.as_str()) {
                return Err(DomainError::Invalid(format!(
                    "node {:?} appears twice",
                    n.id
                )));
            }
        }
        for e in &edges {
            if !seen.contains(e.from.as_str()) || !seen.contains(e.to.as_str()) {
                return Err(DomainError::Invalid(format!(
                    "edge {:?} - {:?} names a node that is not in `nodes`",
                    e.from, e.to
                )));
            }
            if !e.seconds.is_finite() || e.seconds < 0.0 {
                return Err(DomainError::Invalid(format!(
                    "edge {:?} - {:?}: `seconds` must be a finite number >= 0",
                    e.from, e.to
                )));
            }
        }
        let g = Self::build(nodes, edges);
        let reached = g.distances_from(0).iter().filter(|d| d.is_finite()).count();
        if reached != g.nodes.len() {
            return Err(DomainError::Invalid(format!(
                "the facility must be connected: {} of {} nodes cannot be reached from {:?}",
                g.nodes.len() - reached,
                g.nodes.len(),
                g.nodes[0].id
            )));
        }
        Ok(g)
    }

    /// Whether `id` is a node.
    #[must_use]
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// The kind of node `id`.
    #[must_use]
    pub fn kind(&self, id: &str) -> Option<NodeKind> {
        self.index.get(id).map(|&i| self.nodes[i].kind)
    }

    /// Shortest driving time from node index `from` to every node (infinite when unreachable).
    #[must_use]
    pub fn distances_from(&self, from: usize) -> Vec<f64> {
        let mut dist = vec![f64::INFINITY; self.nodes.len()];
        if from >= dist.len() {
            return dist;
        }
        let mut heap = BinaryHeap::new();
        dist[from] = 0.0;
        heap.push(HeapItem(0.0, from));
        while let Some(HeapItem(d, u)) = heap.pop() {
            if d > dist[u] {
                continue;
            }
            for &(v, w) in &self.adj[u] {
                let nd = d + w;
                if nd < dist[v] {
                    dist[v] = nd;
                    heap.push(HeapItem(nd, v));
                }
            }
        }
        dist
    }

    /// Shortest driving time from node `from` to every node, by id (`None` for an unknown node).
    #[must_use]
    pub fn distances(&self, from: &str) -> Option<HashMap<&str, f64>> {
        let &i = self.index.get(from)?;
        let d = self.distances_from(i);
        Some(
            self.nodes
                .iter()
                .zip(d)
                .map(|(n, d)| (n.id.as_str(), d))
                .collect(),
        )
    }

    /// The shortest route `from` → `to` (Dijkstra, stopping at the target): the node ids, both ends
    /// included, and the driving time. `None` when either node is unknown or unreachable.
    #[must_use]
    pub fn route(&self, from: &str, to: &str) -> Option<(Vec<String>, f64)> {
        let (&s, &t) = (self.index.get(from)?, self.index.get(to)?);
        let n = self.nodes.len();
        let mut dist = vec![f64::INFINITY; n];
        let mut prev = vec![usize::MAX; n];
        let mut heap = BinaryHeap::new();
        dist[s] = 0.0;
        heap.push(HeapItem(0.0, s));
        while let Some(HeapItem(d, u)) = heap.pop() {
            if u == t {
                break;
            }
            if d > dist[u] {
                continue;
            }
            for &(v, w) in &self.adj[u] {
                let nd = d + w;
                if nd < dist[v] {
                    dist[v] = nd;
                    prev[v] = u;
                    heap.push(HeapItem(nd, v));
                }
            }
        }
        if !dist[t].is_finite() {
            return None;
        }
        let mut path = vec![t];
        let mut at = t;
        while at != s {
            at = prev[at];
            path.push(at);
        }
        path.reverse();
        Some((
            path.into_iter().map(|i| self.nodes[i].id.clone()).collect(),
            dist[t],
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Cart

/// The job a cart is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub request_id: String,
    pub server_id: String,
    pub datasets: Vec<String>,
    pub route: Vec<String>,
    pub seconds: f64,
    pub bytes: u64,
    /// The transfer has completed.
    pub delivered: bool,
    /// The cart has undocked and drives home.
    pub returning: bool,
}

/// The cart aggregate (events on `dispatch.events.cart.<cart>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    pub registered: bool,
    pub cart_id: String,
    pub home: String,
    pub status: CartStatus,
    pub location: String,
    pub job: Option<Job>,
    pub eta: Option<DateTime<Utc>>,
}

impl Default for Cart {
    fn default() -> Self {
        Self {
            registered: false,
            cart_id: String::new(),
            home: String::new(),
            status: CartStatus::Free,
            location: String::new(),
            job: None,
            eta: None,
        }
    }
}

impl Cart {
    /// Folds one event of this cart.
    pub fn apply(&mut self, event: &DispatchEvent) {
        match event {
            DispatchEvent::CartRegistered(e) => {
                *self = Self {
                    registered: true,
                    cart_id: e.cart_id.clone(),
                    home: e.home.clone(),
                    status: CartStatus::Free,
                    location: e.home.clone(),
                    job: None,
                    eta: None,
                };
            }
            DispatchEvent::CartReserved(e) => {
                self.status = CartStatus::Queue;
                self.eta = None;
                self.job = Some(Job {
                    request_id: e.request_id.clone(),
                    server_id: e.server_id.clone(),
                    datasets: e.datasets.clone(),
                    route: e.route.clone(),
                    seconds: e.seconds,
                    bytes: e.bytes,
                    delivered: false,
                    returning: false,
                });
            }
            DispatchEvent::CartReported(e) => {
                self.status = e.status;
                self.location = e.location.clone();
                self.eta = e.eta;
                match e.report {
                    Report::TransferCompleted => {
                        if let Some(j) = &mut self.job {
                            j.delivered = true;
                        }
                    }
                    Report::Undocked => {
                        if let Some(j) = &mut self.job {
                            j.returning = true;
                        }
                    }
                    Report::Returned => self.job = None,
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Where the cart drives to now: the server's dock on the way out, else home.
    #[must_use]
    pub fn destination(&self) -> &str {
        match &self.job {
            Some(j) if !j.returning => &j.server_id,
            _ => &self.home,
        }
    }
}

/// `register-cart`: a new cart, or a faulted one again after repair.
///
/// # Errors
/// Bad ids; home not in the facility (`NotFound`); an existing cart that is not in `FAULT`.
pub fn register_cart(
    cart: &Cart,
    cmd: &w::RegisterCart,
    facility: Option<&Graph>,
) -> Result<w::CartRegistered, DomainError> {
    check_id("cart_id", &cmd.cart_id)?;
    check_id("home", &cmd.home)?;
    if !facility.is_some_and(|f| f.contains(&cmd.home)) {
        return Err(DomainError::NotFound(format!(
            "home {:?} is not a node of the facility",
            cmd.home
        )));
    }
    if cart.registered && cart.status != CartStatus::Fault {
        return Err(DomainError::Conflict(format!(
            "cart {:?} is already registered and {}; only a FAULT cart can be registered again",
            cmd.cart_id,
            cart.status.as_str()
        )));
    }
    Ok(w::CartRegistered {
        cart_id: cmd.cart_id.clone(),
        home: cmd.home.clone(),
    })
}

/// The status a report moves a cart from, and to.
#[must_use]
pub fn transition(report: Report) -> (Option<CartStatus>, CartStatus) {
    use CartStatus::*;
    match report {
        Report::Departed => (Some(Queue), Flight),
        Report::Position => (Some(Flight), Flight),
        Report::Docked => (Some(Flight), Docked),
        Report::TransferStarted => (Some(Docked), Transfer),
        Report::TransferCompleted => (Some(Transfer), Docked),
        Report::Undocked => (Some(Docked), Flight),
        Report::Returned => (Some(Flight), Free),
        Report::Fault => (None, Fault),
    }
}

fn eta_from(now: DateTime<Utc>, seconds: Option<f64>) -> Option<DateTime<Utc>> {
    let s = seconds.filter(|s| s.is_finite() && *s >= 0.0)?;
    Some(now + chrono::Duration::milliseconds((s * 1000.0).round() as i64))
}

/// `cart-report`: exactly the contract's transitions; `now` and the facility give the ETA.
///
/// # Errors
/// Unknown cart or location (`NotFound`), `position` without a location (`Invalid`), any other
/// transition (`Conflict`, naming the state).
pub fn report(
    cart: &Cart,
    cmd: &w::CartReport,
    facility: Option<&Graph>,
    now: DateTime<Utc>,
) -> Result<w::CartReported, DomainError> {
    check_id("cart_id", &cmd.cart_id)?;
    if let Some(l) = &cmd.location {
        check_id("location", l)?;
    }
    if !cart.registered {
        return Err(DomainError::NotFound(format!(
            "cart {:?} is not registered",
            cmd.cart_id
        )));
    }
    if cmd.report == Report::Position && cmd.location.is_none() {
        return Err(DomainError::Invalid(
            "a `position` report needs `location`".into(),
        ));
    }
    if let Some(l) = &cmd.location {
        if !facility.is_some_and(|f| f.contains(l)) {
            return Err(DomainError::NotFound(format!(
                "location {l:?} is not a node of the facility"
            )));
        }
    }
    let (from, to) = transition(cmd.report);
    if let Some(from) = from {
        if cart.status != from {
            return Err(DomainError::Conflict(format!(
                "cart {:?} is {}: `{}` is allowed only when it is {}",
                cmd.cart_id,
                cart.status.as_str(),
                cmd.report.as_str(),
                from.as_str()
            )));
        }
    }
    // The state after the report, to compute the location and the ETA.
    let mut after = cart.clone();
    let location = match cmd.report {
        Report::Returned => cart.home.clone(),
        Report::Docked => cmd.location.clone().unwrap_or_else(|| {
            cart.job
                .as_ref()
                .filter(|j| !j.returning)
                .map_or(cart.location.clone(), |j| j.server_id.clone())
        }),
        _ => cmd
            .location
            .clone()
            .unwrap_or_else(|| cart.location.clone()),
    };
    if cmd.report == Report::Undocked {
        if let Some(j) = &mut after.job {
            j.returning = true;
        }
    }
    let eta = match cmd.report {
        Report::Departed | Report::Position | Report::Undocked => {
            let dest = after.destination().to_string();
            eta_from(
                now,
                facility
                    .and_then(|f| f.route(&location, &dest))
                    .map(|(_, s)| s),
            )
        }
        _ => None,
    };
    Ok(w::CartReported {
        cart_id: cmd.cart_id.clone(),
        report: cmd.report,
        status: to,
        location,
        request_id: cart.job.as_ref().map(|j| j.request_id.clone()),
        eta,
    })
}

// ---------------------------------------------------------------------------------------------
// SSD

/// The SSD aggregate (events on `dispatch.events.ssd.<ssd>`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Ssd {
    pub registered: bool,
    pub ssd_id: String,
    pub cart_id: String,
    pub capacity_bytes: u64,
    pub health: Option<SsdHealth>,
    pub datasets: BTreeMap<String, u64>,
}

impl Ssd {
    /// Bytes taken by its datasets.
    #[must_use]
    pub fn used(&self) -> u64 {
        self.datasets.values().sum()
    }

    /// Whether it can serve data.
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.registered && self.health.is_some_and(|h| h != SsdHealth::Failed)
    }

    /// Folds one event of this SSD.
    pub fn apply(&mut self, event: &DispatchEvent) {
        match event {
            DispatchEvent::SsdRegistered(e) => {
                *self = Self {
                    registered: true,
                    ssd_id: e.ssd_id.clone(),
                    cart_id: e.cart_id.clone(),
                    capacity_bytes: e.capacity_bytes,
                    health: Some(e.health),
                    datasets: e
                        .datasets
                        .iter()
                        .map(|d| (d.dataset.clone(), d.size_bytes))
                        .collect(),
                };
            }
            DispatchEvent::SsdHealthChanged(e) => self.health = Some(e.health),
            DispatchEvent::DatasetPut(e) => {
                self.datasets.insert(e.dataset.clone(), e.size_bytes);
            }
            _ => {}
        }
    }

    /// The wire view.
    #[must_use]
    pub fn info(&self) -> w::SsdInfo {
        w::SsdInfo {
            ssd_id: self.ssd_id.clone(),
            health: self.health.unwrap_or(SsdHealth::Ok),
            capacity_bytes: self.capacity_bytes,
            used_bytes: self.used(),
            datasets: self.datasets.keys().cloned().collect(),
        }
    }
}

/// `register-ssd`.
///
/// # Errors
/// Bad ids or capacity 0 (`Invalid`); unknown cart (`NotFound`); an SSD id already registered.
pub fn register_ssd(
    ssd: &Ssd,
    cmd: &w::RegisterSsd,
    cart_exists: bool,
) -> Result<w::SsdRegistered, DomainError> {
    check_id("ssd_id", &cmd.ssd_id)?;
    check_id("cart_id", &cmd.cart_id)?;
    if cmd.capacity_bytes == 0 {
        return Err(DomainError::Invalid("`capacity_bytes` must be >= 1".into()));
    }
    if !cart_exists {
        return Err(DomainError::NotFound(format!(
            "cart {:?} is not registered",
            cmd.cart_id
        )));
    }
    if ssd.registered {
        return Err(DomainError::Conflict(format!(
            "SSD {:?} is already registered on cart {:?}",
            cmd.ssd_id, ssd.cart_id
        )));
    }
    Ok(w::SsdRegistered {
        ssd_id: cmd.ssd_id.clone(),
        cart_id: cmd.cart_id.clone(),
        capacity_bytes: cmd.capacity_bytes,
        health: cmd.health,
        datasets: vec![],
    })
}

/// `set-ssd-health`.
///
/// # Errors
/// Bad id; unknown SSD.
pub fn set_ssd_health(
    ssd: &Ssd,
    cmd: &w::SetSsdHealth,
) -> Result<w::SsdHealthChanged, DomainError> {
    check_id("ssd_id", &cmd.ssd_id)?;
    if !ssd.registered {
        return Err(DomainError::NotFound(format!(
            "SSD {:?} is not registered",
            cmd.ssd_id
        )));
    }
    Ok(w::SsdHealthChanged {
        ssd_id: cmd.ssd_id.clone(),
        cart_id: ssd.cart_id.clone(),
        health: cmd.health,
    })
}

/// `put-dataset`: replaces the size of a dataset the SSD already holds.
///
/// # Errors
/// Bad ids; unknown SSD; a failed SSD or not enough free space (`Conflict`).
pub fn put_dataset(ssd: &Ssd, cmd: &w::PutDataset) -> Result<w::DatasetPut, DomainError> {
    check_id("ssd_id", &cmd.ssd_id)?;
    check_id("dataset", &cmd.dataset)?;
    if !ssd.registered {
        return Err(DomainError::NotFound(format!(
            "SSD {:?} is not registered",
            cmd.ssd_id
        )));
    }
    if ssd.health == Some(SsdHealth::Failed) {
        return Err(DomainError::Conflict(format!(
            "SSD {:?} is failed and takes no data",
            cmd.ssd_id
        )));
    }
    let used_without = ssd.used() - ssd.datasets.get(&cmd.dataset).copied().unwrap_or(0);
    let free = ssd.capacity_bytes.saturating_sub(used_without);
    if cmd.size_bytes > free {
        return Err(DomainError::Conflict(format!(
            "dataset {:?} ({} bytes) does not fit SSD {:?}: {} of {} bytes free",
            cmd.dataset, cmd.size_bytes, cmd.ssd_id, free, ssd.capacity_bytes
        )));
    }
    Ok(w::DatasetPut {
        ssd_id: cmd.ssd_id.clone(),
        cart_id: ssd.cart_id.clone(),
        dataset: cmd.dataset.clone(),
        size_bytes: cmd.size_bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// Requests

/// Where one cart's share of a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Share {
    /// In the cart's FIFO queue.
    Waiting,
    /// The cart is reserved for it (or on its way).
    Reserved,
    /// Transferred.
    Delivered,
    /// The cart faulted before delivering; handed on by a re-plan.
    Lost,
}

/// One cart's share of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub cart_id: String,
    pub datasets: Vec<String>,
    pub share: Share,
}

/// A request for datasets (events on `dispatch.events.request.<request>`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Request {
    pub request_id: String,
    pub server_id: String,
    pub datasets: Vec<String>,
    pub assignments: Vec<Assignment>,
    pub failed: Vec<String>,
    pub reason: Option<String>,
}

impl Request {
    /// `queued`, `dispatched`, `delivered` or `failed`.
    #[must_use]
    pub fn state(&self) -> w::RequestState {
        let live: Vec<&Assignment> = self
            .assignments
            .iter()
            .filter(|a| a.share != Share::Lost)
            .collect();
        if !self.failed.is_empty() {
            w::RequestState::Failed
        } else if live.iter().all(|a| a.share == Share::Delivered) {
            w::RequestState::Delivered
        } else if live.iter().any(|a| a.share != Share::Waiting) {
            w::RequestState::Dispatched
        } else {
            w::RequestState::Queued
        }
    }

    fn assignment_mut(&mut self, cart_id: &str, shares: &[Share]) -> Option<&mut Assignment> {
        self.assignments
            .iter_mut()
            .find(|a| a.cart_id == cart_id && shares.contains(&a.share))
    }

    fn apply(&mut self, event: &DispatchEvent) {
        match event {
            DispatchEvent::DatasetsRequested(e) => {
                *self = Self {
                    request_id: e.request_id.clone(),
                    server_id: e.server_id.clone(),
                    datasets: e.datasets.clone(),
                    assignments: e
                        .plan
                        .iter()
                        .map(|p| Assignment {
                            cart_id: p.cart_id.clone(),
                            datasets: p.datasets.clone(),
                            share: Share::Waiting,
                        })
                        .collect(),
                    failed: vec![],
                    reason: None,
                };
            }
            DispatchEvent::RequestReplanned(e) => {
                if let Some(a) = self.assignment_mut(&e.cart_id, &[Share::Waiting, Share::Reserved])
                {
                    a.share = Share::Lost;
                }
                self.assignments.extend(e.plan.iter().map(|p| Assignment {
                    cart_id: p.cart_id.clone(),
                    datasets: p.datasets.clone(),
                    share: Share::Waiting,
                }));
                self.failed.extend(e.failed.iter().cloned());
                if e.reason.is_some() {
                    self.reason.clone_from(&e.reason);
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The model: every aggregate folded, with the indexes the dispatcher needs.

/// The fold of the whole stream (or, in the read-model projection, of the aggregates one batch
/// touches: whatever is missing is skipped).
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Last stream sequence applied.
    pub seq: u64,
    pub facility: Option<Arc<Graph>>,
    pub facility_seq: u64,
    pub carts: HashMap<String, Cart>,
    /// Stream sequence of each cart's last event (the expected sequence of its next append).
    pub cart_seq: HashMap<String, u64>,
    pub ssds: HashMap<String, Ssd>,
    /// Stream sequence of each SSD's last event.
    pub ssd_seq: HashMap<String, u64>,
    pub requests: HashMap<String, Request>,
    pub request_seq: HashMap<String, u64>,
    /// cart -> its SSDs.
    pub cart_ssds: HashMap<String, BTreeSet<String>>,
    /// dataset -> SSDs holding it.
    pub datasets: HashMap<String, BTreeSet<String>>,
    /// cart -> requests waiting for it, first come first served.
    pub queues: HashMap<String, VecDeque<String>>,
}

/// Why a dataset cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unservable {
    /// No SSD holds it.
    Unknown(String),
    /// Only failed SSDs or faulted carts hold it.
    NoWorkingCopy(String),
}

impl Model {
    /// Folds one stored event.
    pub fn apply(&mut self, seq: u64, event: &DispatchEvent) {
        self.seq = self.seq.max(seq);
        match event {
            DispatchEvent::FacilitySet(e) => {
                self.facility = Some(Arc::new(Graph::build(e.nodes.clone(), e.edges.clone())));
                self.facility_seq = seq;
            }
            DispatchEvent::CartRegistered(e) => self.cart_event(&e.cart_id, seq, event),
            DispatchEvent::CartReserved(e) => {
                if let Some(r) = self.requests.get_mut(&e.request_id) {
                    if let Some(a) = r.assignment_mut(&e.cart_id, &[Share::Waiting]) {
                        a.share = Share::Reserved;
                    }
                }
                if let Some(q) = self.queues.get_mut(&e.cart_id) {
                    q.retain(|r| r != &e.request_id);
                }
                self.cart_event(&e.cart_id, seq, event);
            }
            DispatchEvent::CartReported(e) => {
                let job = self.carts.get(&e.cart_id).and_then(|c| c.job.clone());
                if let (Some(job), Some(r)) = (
                    &job,
                    e.request_id.as_ref().and_then(|r| self.requests.get_mut(r)),
                ) {
                    match e.report {
                        Report::TransferCompleted => {
                            if let Some(a) = r.assignment_mut(&e.cart_id, &[Share::Reserved]) {
                                a.share = Share::Delivered;
                            }
                        }
                        Report::Returned if !job.delivered => {
                            // Came back without delivering: the request is first in line again.
                            if let Some(a) = r.assignment_mut(&e.cart_id, &[Share::Reserved]) {
                                a.share = Share::Waiting;
                                self.queues
                                    .entry(e.cart_id.clone())
                                    .or_default()
                                    .push_front(job.request_id.clone());
                            }
                        }
                        _ => {}
                    }
                }
                self.cart_event(&e.cart_id, seq, event);
            }
            DispatchEvent::SsdRegistered(e) => {
                self.cart_ssds
                    .entry(e.cart_id.clone())
                    .or_default()
                    .insert(e.ssd_id.clone());
                for d in &e.datasets {
                    self.datasets
                        .entry(d.dataset.clone())
                        .or_default()
                        .insert(e.ssd_id.clone());
                }
                self.ssds.entry(e.ssd_id.clone()).or_default().apply(event);
                self.ssd_seq.insert(e.ssd_id.clone(), seq);
            }
            DispatchEvent::SsdHealthChanged(e) => {
                if let Some(s) = self.ssds.get_mut(&e.ssd_id) {
                    s.apply(event);
                }
                self.ssd_seq.insert(e.ssd_id.clone(), seq);
            }
            DispatchEvent::DatasetPut(e) => {
                self.datasets
                    .entry(e.dataset.clone())
                    .or_default()
                    .insert(e.ssd_id.clone());
                if let Some(s) = self.ssds.get_mut(&e.ssd_id) {
                    s.apply(event);
                }
                self.ssd_seq.insert(e.ssd_id.clone(), seq);
            }
            DispatchEvent::DatasetsRequested(e) => {
                for p in &e.plan {
                    self.queues
                        .entry(p.cart_id.clone())
                        .or_default()
                        .push_back(e.request_id.clone());
                }
                self.requests
                    .entry(e.request_id.clone())
                    .or_default()
                    .apply(event);
                self.request_seq.insert(e.request_id.clone(), seq);
            }
            DispatchEvent::RequestReplanned(e) => {
                if let Some(q) = self.queues.get_mut(&e.cart_id) {
                    q.retain(|r| r != &e.request_id);
                }
                for p in &e.plan {
                    self.queues
                        .entry(p.cart_id.clone())
                        .or_default()
                        .push_back(e.request_id.clone());
                }
                if let Some(r) = self.requests.get_mut(&e.request_id) {
                    r.apply(event);
                }
                self.request_seq.insert(e.request_id.clone(), seq);
            }
        }
    }

    fn cart_event(&mut self, cart_id: &str, seq: u64, event: &DispatchEvent) {
        self.carts
            .entry(cart_id.to_string())
            .or_default()
            .apply(event);
        self.cart_seq.insert(cart_id.to_string(), seq);
    }

    /// The cart as the contract shows it.
    #[must_use]
    pub fn cart_info(&self, cart_id: &str) -> Option<w::CartInfo> {
        let cart = self.carts.get(cart_id).filter(|c| c.registered)?;
        let ssds: Vec<&Ssd> = self
            .cart_ssds
            .get(cart_id)
            .into_iter()
            .flatten()
            .filter_map(|s| self.ssds.get(s))
            .collect();
        Some(cart_info(
            cart,
            &ssds,
            self.cart_seq.get(cart_id).copied().unwrap_or(0),
        ))
    }

    /// The healthy SSDs of working carts that hold `dataset`, as (ssd, cart).
    fn working_copies<'a>(
        &'a self,
        dataset: &'a str,
        exclude: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = (&'a Ssd, &'a Cart)> + 'a {
        self.datasets
            .get(dataset)
            .into_iter()
            .flatten()
            .filter_map(|s| self.ssds.get(s))
            .filter(|s| s.healthy() && s.datasets.contains_key(dataset))
            .filter_map(|s| self.carts.get(&s.cart_id).map(|c| (s, c)))
            .filter(move |(_, c)| {
                c.registered && c.status != CartStatus::Fault && !exclude.contains(&c.cart_id)
            })
    }

    /// Chooses carts for `datasets` delivered to `server_id`: the nearest free cart first (busy
    /// carts by shortest queue, then distance), each carrying every remaining dataset it holds.
    /// Returns the plan and the datasets that cannot be served.
    #[must_use]
    ///
    /// Ties (equally near, equally busy carts) are broken by a hash of `salt` (the request id) and
    /// the cart id, so a burst of concurrent requests planned on the same view spreads over the
    /// equivalent carts instead of piling onto one.
    pub fn plan(
        &self,
        server_id: &str,
        datasets: &[String],
        exclude: &BTreeSet<String>,
        salt: &str,
    ) -> (Vec<w::PlannedCart>, Vec<Unservable>) {
        let dist = self
            .facility
            .as_ref()
            .and_then(|f| f.distances(server_id))
            .unwrap_or_default();
        let mut unservable = Vec::new();
        // dataset -> candidate carts.
        let mut remaining: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for d in datasets {
            let carts: BTreeSet<&str> = self
                .working_copies(d, exclude)
                .map(|(_, c)| c.cart_id.as_str())
                .collect();
            if carts.is_empty() {
                let known = self.datasets.get(d).is_some_and(|s| {
                    s.iter()
                        .any(|s| self.ssds.get(s).is_some_and(|s| s.datasets.contains_key(d)))
                });
                unservable.push(if known {
                    Unservable::NoWorkingCopy(d.clone())
                } else {
                    Unservable::Unknown(d.clone())
                });
            } else {
                remaining.insert(d.as_str(), carts);
            }
        }
        let mut plan = Vec::new();
        while !remaining.is_empty() {
            let candidates: BTreeSet<&str> = remaining.values().flatten().copied().collect();
            let best = candidates
                .into_iter()
                .filter_map(|c| self.carts.get(c))
                .min_by(|a, b| {
                    let key = |c: &Cart| {
                        let busy = c.status != CartStatus::Free
                            || self.queues.get(&c.cart_id).is_some_and(|q| !q.is_empty());
                        let queue = self.queues.get(&c.cart_id).map_or(0, VecDeque::len)
                            + usize::from(c.status != CartStatus::Free);
                        let d = dist
                            .get(c.location.as_str())
                            .copied()
                            .unwrap_or(f64::INFINITY);
                        let cover = remaining
                            .values()
                            .filter(|cs| cs.contains(c.cart_id.as_str()))
                            .count();
                        (busy, queue, d, cover)
                    };
                    let (ka, kb) = (key(a), key(b));
                    ka.0.cmp(&kb.0)
                        .then(ka.1.cmp(&kb.1))
                        .then(ka.2.total_cmp(&kb.2))
                        .then(kb.3.cmp(&ka.3))
                        .then(tie_break(salt, &a.cart_id).cmp(&tie_break(salt, &b.cart_id)))
                        .then(a.cart_id.cmp(&b.cart_id))
                });
            let Some(best) = best else { break };
            let carried: Vec<String> = remaining
                .iter()
                .filter(|(_, cs)| cs.contains(best.cart_id.as_str()))
                .map(|(d, _)| (*d).to_string())
                .collect();
            for d in &carried {
                remaining.remove(d.as_str());
            }
            plan.push(w::PlannedCart {
                cart_id: best.cart_id.clone(),
                datasets: carried,
            });
        }
        (plan, unservable)
    }

    /// `request-datasets`: validates and plans a new request.
    ///
    /// # Errors
    /// Bad input (`Invalid`); unknown server or dataset (`NotFound`); datasets only on failed SSDs
    /// or faulted carts (`Conflict`).
    pub fn request(
        &self,
        cmd: &w::RequestDatasets,
        request_id: &str,
    ) -> Result<w::DatasetsRequested, DomainError> {
        check_id("server_id", &cmd.server_id)?;
        if cmd.datasets.is_empty() || cmd.datasets.len() > 1000 {
            return Err(DomainError::Invalid(
                "`datasets` must name 1 to 1000 datasets".into(),
            ));
        }
        let mut datasets: Vec<String> = Vec::with_capacity(cmd.datasets.len());
        for d in &cmd.datasets {
            check_id("datasets[]", d)?;
            if !datasets.contains(d) {
                datasets.push(d.clone());
            }
        }
        if self.facility.as_ref().and_then(|f| f.kind(&cmd.server_id)) != Some(NodeKind::Dock) {
            return Err(DomainError::NotFound(format!(
                "server {:?} has no dock in the facility",
                cmd.server_id
            )));
        }
        let (plan, unservable) = self.plan(&cmd.server_id, &datasets, &BTreeSet::new(), request_id);
        let unknown: Vec<&str> = unservable
            .iter()
            .filter_map(|u| {
                if let Unservable::Unknown(d) = u {
                    Some(d.as_str())
                } else {
                    None
                }
            })
            .collect();
        if !unknown.is_empty() {
            return Err(DomainError::NotFound(format!(
                "no SSD holds dataset(s) {unknown:?}"
            )));
        }
        if !unservable.is_empty() {
            let names: Vec<&str> = unservable
                .iter()
                .map(|u| match u {
                    Unservable::Unknown(d) | Unservable::NoWorkingCopy(d) => d.as_str(),
                })
                .collect();
            return Err(DomainError::Conflict(format!(
                "dataset(s) {names:?} are only on failed SSDs or faulted carts"
            )));
        }
        Ok(w::DatasetsRequested {
            request_id: request_id.to_string(),
            server_id: cmd.server_id.clone(),
            datasets,
            plan,
        })
    }

    /// The reservation the dispatcher makes for `cart_id` now: a free cart takes the first request
    /// of its queue, with the shortest route from where it is to the server's dock.
    #[must_use]
    pub fn next_reservation(&self, cart_id: &str) -> Option<w::CartReserved> {
        let cart = self
            .carts
            .get(cart_id)
            .filter(|c| c.registered && c.status == CartStatus::Free)?;
        let request_id = self.queues.get(cart_id)?.front()?;
        let req = self.requests.get(request_id)?;
        let a = req
            .assignments
            .iter()
            .find(|a| a.cart_id == cart_id && a.share == Share::Waiting)?;
        let (route, seconds) = self
            .facility
            .as_ref()
            .and_then(|f| f.route(&cart.location, &req.server_id))
            .unwrap_or_else(|| (vec![cart.location.clone(), req.server_id.clone()], 0.0));
        let bytes = self
            .cart_ssds
            .get(cart_id)
            .into_iter()
            .flatten()
            .filter_map(|s| self.ssds.get(s))
            .filter(|s| s.healthy())
            .flat_map(|s| a.datasets.iter().filter_map(|d| s.datasets.get(d)))
            .sum();
        Some(w::CartReserved {
            cart_id: cart_id.to_string(),
            request_id: request_id.clone(),
            server_id: req.server_id.clone(),
            datasets: a.datasets.clone(),
            route,
            seconds,
            bytes,
        })
    }

    /// Free carts with a waiting request.
    #[must_use]
    pub fn ready_carts(&self) -> Vec<String> {
        self.queues
            .iter()
            .filter(|(c, q)| {
                !q.is_empty()
                    && self
                        .carts
                        .get(*c)
                        .is_some_and(|c| c.registered && c.status == CartStatus::Free)
            })
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Shares of requests held by faulted carts, as (request, cart): each needs a re-plan.
    #[must_use]
    pub fn lost_shares(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .carts
            .keys()
            .flat_map(|c| self.lost_shares_of(c))
            .collect();
        out.sort();
        out
    }

    /// [`Model::lost_shares`] of one cart.
    #[must_use]
    pub fn lost_shares_of(&self, cart_id: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let Some(cart) = self.carts.get(cart_id) else {
            return out;
        };
        let queued = self.queues.get(cart_id).into_iter().flatten();
        if cart.status != CartStatus::Fault {
            // A waiting share whose data this cart no longer holds on a healthy SSD.
            for r in queued {
                let stale = self.requests.get(r).is_some_and(|r| {
                    r.assignments.iter().any(|a| {
                        a.cart_id == cart_id
                            && a.share == Share::Waiting
                            && a.datasets.iter().any(|d| !self.holds(cart_id, d))
                    })
                });
                if stale {
                    out.push((r.clone(), cart_id.to_string()));
                }
            }
        } else {
            let mut ids: Vec<&String> = queued.collect();
            if let Some(j) = &cart.job {
                if !j.delivered {
                    ids.push(&j.request_id);
                }
            }
            for r in ids {
                let active = self.requests.get(r).is_some_and(|r| {
                    r.assignments.iter().any(|a| {
                        a.cart_id == cart_id && matches!(a.share, Share::Waiting | Share::Reserved)
                    })
                });
                if active {
                    out.push((r.clone(), cart_id.to_string()));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Whether `cart_id` holds `dataset` on a healthy SSD.
    #[must_use]
    pub fn holds(&self, cart_id: &str, dataset: &str) -> bool {
        self.cart_ssds
            .get(cart_id)
            .into_iter()
            .flatten()
            .filter_map(|s| self.ssds.get(s))
            .any(|s| s.healthy() && s.datasets.contains_key(dataset))
    }

    /// The re-plan of `cart_id`'s undelivered share of `request_id` on other working carts.
    #[must_use]
    pub fn replan(&self, request_id: &str, cart_id: &str) -> Option<w::RequestReplanned> {
        let req = self.requests.get(request_id)?;
        let a = req.assignments.iter().find(|a| {
            a.cart_id == cart_id && matches!(a.share, Share::Waiting | Share::Reserved)
        })?;
        // A faulted cart is out; a working cart that lost a healthy copy may keep what it still has.
        let faulted = self
            .carts
            .get(cart_id)
            .is_none_or(|c| c.status == CartStatus::Fault);
        let exclude: BTreeSet<String> = if faulted {
            [cart_id.to_string()].into()
        } else {
            BTreeSet::new()
        };
        let (plan, unservable) = self.plan(&req.server_id, &a.datasets, &exclude, request_id);
        let failed: Vec<String> = unservable
            .into_iter()
            .map(|u| match u {
                Unservable::Unknown(d) | Unservable::NoWorkingCopy(d) => d,
            })
            .collect();
        let reason = (!failed.is_empty()).then(|| {
            let why = if faulted { "faulted before delivering" } else { "lost its healthy copy" };
            format!("cart {cart_id:?} {why} and no other working cart holds a healthy copy of {failed:?}")
        });
        Some(w::RequestReplanned {
            request_id: request_id.to_string(),
            cart_id: cart_id.to_string(),
            datasets: a.datasets.clone(),
            plan,
            failed,
            reason,
        })
    }

    /// The request as the contract shows it.
    #[must_use]
    pub fn request_info(&self, request_id: &str) -> Option<w::RequestInfo> {
        let r = self.requests.get(request_id)?;
        Some(request_info(
            r,
            |c| self.carts.get(c).map(|c| c.status),
            self.request_seq.get(request_id).copied().unwrap_or(0),
        ))
    }
}

/// FNV-1a of `salt` and `id`: a tie-breaker that is the same in every process.
fn tie_break(salt: &str, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.bytes().chain([0]).chain(id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A cart with its SSDs, as the contract shows it.
#[must_use]
pub fn cart_info(cart: &Cart, ssds: &[&Ssd], seq: u64) -> w::CartInfo {
    let mut ssds: Vec<w::SsdInfo> = ssds.iter().map(|s| s.info()).collect();
    ssds.sort_by(|a, b| a.ssd_id.cmp(&b.ssd_id));
    w::CartInfo {
        cart_id: cart.cart_id.clone(),
        status: cart.status,
        location: cart.location.clone(),
        home: cart.home.clone(),
        ssds,
        request_id: cart.job.as_ref().map(|j| j.request_id.clone()),
        server_id: cart.job.as_ref().map(|j| j.server_id.clone()),
        route: cart.job.as_ref().map(|j| j.route.clone()),
        eta: cart.eta,
        seq,
    }
}

/// A request as the contract shows it; `status_of` gives a cart's current status.
pub fn request_info(
    r: &Request,
    status_of: impl Fn(&str) -> Option<CartStatus>,
    seq: u64,
) -> w::RequestInfo {
    w::RequestInfo {
        request_id: r.request_id.clone(),
        server_id: r.server_id.clone(),
        datasets: r.datasets.clone(),
        state: r.state(),
        carts: r
            .assignments
            .iter()
            .filter(|a| a.share != Share::Lost)
            .map(|a| w::RequestCart {
                cart_id: a.cart_id.clone(),
                datasets: a.datasets.clone(),
                status: status_of(&a.cart_id).unwrap_or(CartStatus::Free),
                delivered: a.share == Share::Delivered,
            })
            .collect(),
        failed: r.failed.clone(),
        reason: r.reason.clone(),
        seq,
    }
}

#[cfg(test)]
mod tests;
