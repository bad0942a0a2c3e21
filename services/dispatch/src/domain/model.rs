//! The model: every aggregate folded, with the indexes the dispatcher needs (queues, planning,
//! reservations, re-plans).

use super::*;

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
pub(super) fn tie_break(salt: &str, id: &str) -> u64 {
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
