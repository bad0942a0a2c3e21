//! Running a command on a cart or SSD aggregate against the view.
//!
//! Carts are written by two kinds of writers (commands and the dispatcher's reservations, in any
//! process), so a per-process cache of the aggregate can be stale. Here the state comes from the
//! view, which folds every process's events: decide on it, append with the aggregate's last
//! sequence as the view knows it; when the decision fails or the append loses a race, catch the
//! view up with the stream and decide again (bounded). Replies of commands sent with
//! `Nats-Msg-Id` are remembered in the runtime's idempotency bucket for the duplicate window.

use crate::domain::Model;
use crate::Dispatch;
use runtime::store::{encode_event, AppendError};
use runtime::ServiceError;
use schemas::dispatch::DispatchEvent;
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

const ATTEMPTS: usize = 10;

fn key(msg_id: &str) -> String {
    runtime::store::Idempotency::key("dispatch-view", msg_id)
}

impl Dispatch {
    /// Runs one command on the aggregate at `subject`: `read` takes its state and last sequence
    /// from the model, `decide` returns the one event, `reply` builds the reply from the state
    /// after the event and the event's sequence.
    ///
    /// # Errors
    /// The decision's error; `conflict` after too many lost races; `unavailable` without an ack.
    pub async fn execute_on_view<S, R>(
        &self,
        subject: &str,
        msg_id: Option<&str>,
        read: impl Fn(&Model) -> (S, u64),
        decide: impl Fn(&S) -> Result<DispatchEvent, ServiceError>,
        reply: impl Fn(&S, &DispatchEvent, u64) -> R,
    ) -> Result<R, ServiceError>
    where
        R: Serialize + DeserializeOwned,
        S: Clone + Apply,
    {
        let key = msg_id.map(key);
        if let Some(k) = &key {
            if let Some(r) = self.idem.recall::<R>(k).await {
                return r;
            }
        }
        let mut result = self
            .execute_inner(subject, msg_id, key.as_deref(), &read, &decide, &reply)
            .await;
        // Sent again after an unanswered first attempt that was stored: the refusal was decided
        // on a state holding the command's own event; answer as the first time instead.
        if let (Err(e), Some(m)) = (&result, msg_id) {
            if !e.is_transient() {
                match self.first_reply(subject, m, &read, &reply).await {
                    Ok(Some(first)) => result = Ok(first),
                    Ok(None) => {}
                    Err(e) => result = Err(e),
                }
            }
        }
        if let Some(k) = &key {
            self.idem.record(k, &result).await;
        }
        result
    }

    /// The reply to the command stored on `subject` with `msg_id`, if one was (see
    /// `runtime::store::EventStore::find_msg_id`).
    async fn first_reply<S, R>(
        &self,
        subject: &str,
        msg_id: &str,
        read: &impl Fn(&Model) -> (S, u64),
        reply: &impl Fn(&S, &DispatchEvent, u64) -> R,
    ) -> Result<Option<R>, ServiceError> {
        let cannot_tell = || {
            ServiceError::unavailable(
                "the event store did not answer whether this command was stored already: retry with the same Nats-Msg-Id",
            )
        };
        let Some(seq) = self
            .store
            .find_msg_id(subject, msg_id)
            .await
            .map_err(|()| cannot_tell())?
        else {
            return Ok(None);
        };
        let (events, _) = self.store.load::<DispatchEvent>(subject).await?;
        let Some(stored) = events.iter().find(|e| e.seq == seq) else {
            return Err(cannot_tell());
        };
        self.view.wait_for(seq, Duration::from_secs(5)).await;
        let (state, _) = self.view.read(read);
        Ok(Some(reply(&state, &stored.event, seq)))
    }

    async fn execute_inner<S, R>(
        &self,
        subject: &str,
        msg_id: Option<&str>,
        key: Option<&str>,
        read: &impl Fn(&Model) -> (S, u64),
        decide: &impl Fn(&S) -> Result<DispatchEvent, ServiceError>,
        reply: &impl Fn(&S, &DispatchEvent, u64) -> R,
    ) -> Result<R, ServiceError>
    where
        R: Serialize + DeserializeOwned,
        S: Clone + Apply,
    {
        let mut fresh = false;
        for attempt in 0..ATTEMPTS {
            let (state, seq) = self.view.read(read);
            let event = match decide(&state) {
                Ok(e) => e,
                Err(e) if !fresh && !e.is_transient() => {
                    // Maybe the view has not seen the latest event yet: look again.
                    self.view.catch_up(Duration::from_secs(5)).await?;
                    fresh = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let id = uuid::Uuid::now_v7();
            let payload = encode_event(id, chrono::Utc::now(), &event)?;
            let id_text = id.to_string();
            match self
                .store
                .append(subject, payload, seq, msg_id.unwrap_or(&id_text))
                .await
            {
                Ok(ack) if ack.duplicate => {
                    if let Some(k) = key {
                        for _ in 0..40 {
                            if let Some(r) = self.idem.recall::<R>(k).await {
                                return r;
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    self.view
                        .wait_for(ack.sequence, Duration::from_secs(5))
                        .await;
                    let (state, _) = self.view.read(read);
                    return Ok(reply(&state, &event, ack.sequence));
                }
                Ok(ack) => {
                    // Read-your-writes: the next command on this aggregate sees this event.
                    self.view
                        .wait_for(ack.sequence, Duration::from_secs(2))
                        .await;
                    let mut after = state.clone();
                    after.apply_event(&event);
                    return Ok(reply(&after, &event, ack.sequence));
                }
                Err(AppendError::WrongLastSequence) => {
                    tracing::debug!(subject, attempt, "lost a race; catching up");
                    self.view.catch_up(Duration::from_secs(5)).await?;
                    fresh = true;
                }
                Err(AppendError::Unacknowledged(e)) => {
                    return Err(ServiceError::unavailable(format!(
                        "the event store did not acknowledge the event ({e}); it may have been stored: retry with the same Nats-Msg-Id"
                    )));
                }
            }
        }
        Err(ServiceError::conflict(format!(
            "too many concurrent writers on {subject}; retry"
        )))
    }
}

/// A state that folds events.
pub trait Apply {
    fn apply_event(&mut self, event: &DispatchEvent);
}

impl Apply for crate::domain::Cart {
    fn apply_event(&mut self, event: &DispatchEvent) {
        self.apply(event);
    }
}

impl Apply for crate::domain::Ssd {
    fn apply_event(&mut self, event: &DispatchEvent) {
        self.apply(event);
    }
}
