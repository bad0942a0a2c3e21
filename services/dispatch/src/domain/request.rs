//! Requests: the carts' shares and where each is.

use super::*;

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

    pub(super) fn assignment_mut(
        &mut self,
        cart_id: &str,
        shares: &[Share],
    ) -> Option<&mut Assignment> {
        self.assignments
            .iter_mut()
            .find(|a| a.cart_id == cart_id && shares.contains(&a.share))
    }

    pub(super) fn apply(&mut self, event: &DispatchEvent) {
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
