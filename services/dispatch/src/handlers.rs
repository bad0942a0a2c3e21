//! The dispatch commands: wire body in, decided on the view's state (carts, SSDs) or the
//! repository's (requests, facility), one event appended, the reply out; and the cart's live
//! subject.

use crate::domain::{self, Cart, DomainError, Ssd};
use crate::view::ViewState;
use crate::{
    cart_subject, request_subject, ssd_subject, status_subject, Dispatch, FACILITY_SUBJECT,
};
use runtime::service::Request;
use runtime::ServiceError;
use schemas::dispatch::{self as w, DispatchEvent};
use std::sync::Arc;
use std::time::Duration;

fn read_cart(m: &domain::Model, cart_id: &str) -> (Cart, u64) {
    (
        m.carts.get(cart_id).cloned().unwrap_or_default(),
        m.cart_seq.get(cart_id).copied().unwrap_or(0),
    )
}

fn new_event_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

impl Dispatch {
    /// Publishes the cart on its live subject once the view has folded `seq`.
    pub async fn publish_cart(&self, cart_id: &str, seq: u64) {
        self.view.wait_for(seq, Duration::from_secs(2)).await;
        if let Some(info) = self.view.read(|m| m.cart_info(cart_id)) {
            self.publish_info(&info).await;
        }
    }

    /// Publishes `info` on its cart's live subject. Callers publish before they reply, so one
    /// cart's changes reach the subject in the order they were made.
    pub async fn publish_info(&self, info: &w::CartInfo) {
        match serde_json::to_vec(info) {
            Ok(body) => {
                if let Err(e) = self
                    .client
                    .publish(status_subject(&info.cart_id), body.into())
                    .await
                {
                    tracing::warn!(error = %e, cart_id = %info.cart_id, "could not publish the cart's status");
                }
            }
            Err(e) => tracing::error!(error = %e, "encoding a cart"),
        }
    }

    /// The cart with its SSDs from the view, with the cart state just returned by a command.
    fn cart_reply(&self, cart: &Cart, seq: u64) -> w::CartInfo {
        self.view.read(|m| {
            let ssds: Vec<&Ssd> = m
                .cart_ssds
                .get(&cart.cart_id)
                .into_iter()
                .flatten()
                .filter_map(|s| m.ssds.get(s))
                .collect();
            domain::cart_info(cart, &ssds, seq)
        })
    }

    pub(crate) async fn set_facility(
        self: Arc<Self>,
        cmd: w::SetFacility,
        req: Request,
    ) -> Result<w::Facility, ServiceError> {
        let graph = domain::Graph::new(cmd.nodes, cmd.edges)?;
        let (nodes, edges) = (graph.nodes.clone(), graph.edges.clone());
        let event = DispatchEvent::FacilitySet(w::FacilitySet {
            nodes: nodes.clone(),
            edges: edges.clone(),
        });
        let seq = self
            .facility
            .execute(
                FACILITY_SUBJECT,
                req.msg_id(),
                |_, _| Ok::<_, DomainError>(event.clone()),
                |_, _, seq| seq,
            )
            .await?;
        Ok(w::Facility { nodes, edges, seq })
    }

    pub(crate) async fn register_cart(
        self: Arc<Self>,
        cmd: w::RegisterCart,
        req: Request,
    ) -> Result<w::CartInfo, ServiceError> {
        schemas::check_id("cart_id", &cmd.cart_id).map_err(ServiceError::invalid)?;
        let facility = self
            .view
            .read_fresh(
                |f: &Option<Arc<domain::Graph>>| f.as_ref().is_some_and(|f| f.contains(&cmd.home)),
                |m| m.facility.clone(),
            )
            .await?;
        self.cart_command(&req, &cmd.cart_id, |cart, _| {
            domain::register_cart(cart, &cmd, facility.as_deref())
                .map(DispatchEvent::CartRegistered)
        })
        .await
    }

    /// Runs a command on the cart `cart_id` (its state from the view), publishes the cart on its
    /// live subject and answers with it.
    async fn cart_command(
        &self,
        req: &Request,
        cart_id: &str,
        decide: impl Fn(&Cart, chrono::DateTime<chrono::Utc>) -> Result<DispatchEvent, DomainError>
            + Send
            + Sync,
    ) -> Result<w::CartInfo, ServiceError> {
        let (cart, seq): (Cart, u64) = self
            .carts
            .execute_on(
                ViewState::new(&self.view, |m| read_cart(m, cart_id)),
                &cart_subject(cart_id),
                req.msg_id(),
                decide,
                |cart, _, seq| (cart.clone(), seq),
            )
            .await?;
        let info = self.cart_reply(&cart, seq);
        self.publish_info(&info).await;
        Ok(info)
    }

    pub(crate) async fn cart_report(
        self: Arc<Self>,
        cmd: w::CartReport,
        req: Request,
    ) -> Result<w::CartInfo, ServiceError> {
        schemas::check_id("cart_id", &cmd.cart_id).map_err(ServiceError::invalid)?;
        let facility = self
            .view
            .read_fresh(
                |f: &Option<Arc<domain::Graph>>| {
                    cmd.location
                        .as_ref()
                        .is_none_or(|l| f.as_ref().is_some_and(|f| f.contains(l)))
                },
                |m| m.facility.clone(),
            )
            .await?;
        self.cart_command(&req, &cmd.cart_id, |cart, now| {
            domain::report(cart, &cmd, facility.as_deref(), now).map(DispatchEvent::CartReported)
        })
        .await
    }

    fn ssd_reply(ssd: &Ssd, seq: u64) -> w::SsdReply {
        let info = ssd.info();
        w::SsdReply {
            ssd_id: info.ssd_id,
            cart_id: ssd.cart_id.clone(),
            health: info.health,
            capacity_bytes: info.capacity_bytes,
            used_bytes: info.used_bytes,
            datasets: info.datasets,
            seq,
        }
    }

    async fn ssd_command(
        self: &Arc<Self>,
        req: &Request,
        ssd_id: &str,
        decide: impl Fn(&Ssd) -> Result<DispatchEvent, DomainError> + Send + Sync,
    ) -> Result<w::SsdReply, ServiceError> {
        schemas::check_id("ssd_id", ssd_id).map_err(ServiceError::invalid)?;
        let read = |m: &domain::Model| {
            (
                m.ssds.get(ssd_id).cloned().unwrap_or_default(),
                m.ssd_seq.get(ssd_id).copied().unwrap_or(0),
            )
        };
        let (ssd, seq): (Ssd, u64) = self
            .ssds
            .execute_on(
                ViewState::new(&self.view, read),
                &ssd_subject(ssd_id),
                req.msg_id(),
                |s, _| decide(s),
                |s, _, seq| (s.clone(), seq),
            )
            .await?;
        self.publish_cart(&ssd.cart_id, seq).await;
        Ok(Self::ssd_reply(&ssd, seq))
    }

    pub(crate) async fn register_ssd(
        self: Arc<Self>,
        cmd: w::RegisterSsd,
        req: Request,
    ) -> Result<w::SsdReply, ServiceError> {
        schemas::check_id("cart_id", &cmd.cart_id).map_err(ServiceError::invalid)?;
        let cart_exists = self
            .view
            .read_fresh(
                |b: &bool| *b,
                |m| m.carts.get(&cmd.cart_id).is_some_and(|c| c.registered),
            )
            .await?;
        self.ssd_command(&req, &cmd.ssd_id, |s| {
            Ok(DispatchEvent::SsdRegistered(domain::register_ssd(
                s,
                &cmd,
                cart_exists,
            )?))
        })
        .await
    }

    pub(crate) async fn set_ssd_health(
        self: Arc<Self>,
        cmd: w::SetSsdHealth,
        req: Request,
    ) -> Result<w::SsdReply, ServiceError> {
        self.ssd_command(&req, &cmd.ssd_id, |s| {
            Ok(DispatchEvent::SsdHealthChanged(domain::set_ssd_health(
                s, &cmd,
            )?))
        })
        .await
    }

    pub(crate) async fn put_dataset(
        self: Arc<Self>,
        cmd: w::PutDataset,
        req: Request,
    ) -> Result<w::SsdReply, ServiceError> {
        self.ssd_command(&req, &cmd.ssd_id, |s| {
            Ok(DispatchEvent::DatasetPut(domain::put_dataset(s, &cmd)?))
        })
        .await
    }

    pub(crate) async fn request_datasets(
        self: Arc<Self>,
        cmd: w::RequestDatasets,
        req: Request,
    ) -> Result<w::RequestDatasetsReply, ServiceError> {
        let request_id = new_event_id().to_string();
        // Plan on the view; an unknown server or dataset may just be newer than the view.
        let planned = self
            .view
            .read_fresh(
                |r: &Result<w::DatasetsRequested, DomainError>| r.is_ok(),
                |m| m.request(&cmd, &request_id),
            )
            .await??;
        let event = DispatchEvent::DatasetsRequested(planned.clone());
        let subject = request_subject(&request_id);
        let (stored, seq): (w::DatasetsRequested, u64) = match req.msg_id() {
            // Idempotent: the repository remembers the reply for the duplicate window.
            Some(msg_id) => {
                self.requests
                    .execute(
                        &subject,
                        Some(msg_id),
                        |r, _| {
                            if r.exists {
                                return Err(DomainError::Conflict(format!(
                                    "request {request_id} exists already"
                                )));
                            }
                            Ok(event.clone())
                        },
                        |_, _, seq| (planned.clone(), seq),
                    )
                    .await?
            }
            // A fresh request id: one append to a new aggregate, nothing to load.
            None => {
                let new = runtime::store::stamp(&event)?;
                let ack = self.store.append(&subject, new.payload, 0, &new.id).await.map_err(|e| match e {
                    runtime::store::AppendError::WrongLastSequence => ServiceError::conflict(format!("request {request_id} exists already")),
                    runtime::store::AppendError::Unacknowledged(e) => {
                        ServiceError::unavailable(format!("the event store did not acknowledge the request ({e}); retry (with a Nats-Msg-Id to be safe)"))
                    }
                })?;
                (planned.clone(), ack.sequence)
            }
        };
        // Give the dispatcher a moment to reserve the free carts, so the reply says QUEUE.
        let rid = stored.request_id.clone();
        let settled = |m: &domain::Model| {
            let Some(r) = m.requests.get(&rid) else {
                return false;
            };
            r.assignments.iter().all(|a| {
                a.share != domain::Share::Waiting
                    || m.carts
                        .get(&a.cart_id)
                        .is_none_or(|c| c.status != w::CartStatus::Free)
                    || m.queues
                        .get(&a.cart_id)
                        .and_then(|q| q.front())
                        .is_some_and(|f| f != &rid)
            })
        };
        // Woken by the view when a cart is reserved for this request (not on every change).
        let deadline = tokio::time::Instant::now() + self.reply_wait;
        let notify = self.view.waiter(&rid);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.view.read(settled) || tokio::time::Instant::now() >= deadline {
                break;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
        self.view.forget_waiter(&rid);
        let carts = self.view.read(|m| {
            let info = m.request_info(&rid);
            stored
                .plan
                .iter()
                .map(|p| {
                    let status = info
                        .as_ref()
                        .and_then(|i| i.carts.iter().find(|c| c.cart_id == p.cart_id))
                        .map(|c| c.status)
                        .or_else(|| m.carts.get(&p.cart_id).map(|c| c.status))
                        .unwrap_or(w::CartStatus::Free);
                    w::RequestCart {
                        cart_id: p.cart_id.clone(),
                        datasets: p.datasets.clone(),
                        status,
                        delivered: false,
                    }
                })
                .collect()
        });
        Ok(w::RequestDatasetsReply {
            request_id: stored.request_id,
            server_id: stored.server_id,
            carts,
            seq,
        })
    }
}
