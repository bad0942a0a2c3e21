//! `dispatch.query.queue` (an addition for the dashboard, `schemas::live::QueueQuery`): the
//! requests waiting in each cart's FIFO queue, first in line first, from this process's view (the
//! same queues the dispatcher reserves from), with `min_seq` on the view.

use crate::domain::{Model, Share};
use crate::Dispatch;
use runtime::service::Request as Req;
use runtime::ServiceError;
use schemas::live as w;
use std::sync::Arc;

/// The queue of `cart_id` as the view holds it (empty when nothing waits).
fn cart_queue(m: &Model, cart_id: &str) -> w::CartQueue {
    let requests = m
        .queues
        .get(cart_id)
        .into_iter()
        .flatten()
        .filter_map(|rid| {
            let r = m.requests.get(rid)?;
            let datasets = r
                .assignments
                .iter()
                .filter(|a| a.cart_id == cart_id && a.share == Share::Waiting)
                .flat_map(|a| a.datasets.iter().cloned())
                .collect();
            Some(w::QueuedRequest {
                request_id: rid.clone(),
                server_id: r.server_id.clone(),
                datasets,
            })
        })
        .collect();
    w::CartQueue {
        cart_id: cart_id.to_string(),
        requests,
    }
}

impl Dispatch {
    pub(crate) async fn query_queue(
        self: Arc<Self>,
        q: w::QueueQuery,
        _: Req,
    ) -> Result<w::Queues, ServiceError> {
        if let Some(c) = &q.cart_id {
            schemas::check_id("cart_id", c).map_err(ServiceError::invalid)?;
        }
        self.view.wait_min_seq(q.min_seq, self.wait).await?;
        self.view.read(|m| {
            let queues = match &q.cart_id {
                Some(c) => {
                    if !m.carts.get(c).is_some_and(|c| c.registered) {
                        return Err(ServiceError::not_found(format!(
                            "cart {c:?} is not registered"
                        )));
                    }
                    vec![cart_queue(m, c)]
                }
                None => {
                    let mut ids: Vec<&String> = m
                        .queues
                        .iter()
                        .filter(|(_, q)| !q.is_empty())
                        .map(|(c, _)| c)
                        .collect();
                    ids.sort();
                    ids.into_iter()
                        .map(|c| cart_queue(m, c))
                        .filter(|q| !q.requests.is_empty())
                        .collect()
                }
            };
            Ok(w::Queues { queues, seq: m.seq })
        })
    }
}
