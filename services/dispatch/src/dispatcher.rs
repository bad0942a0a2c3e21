//! The dispatcher: a process manager on its own durable consumer `dispatcher` over the `DISPATCH`
//! stream (shared by every process that runs dispatch).
//!
//! For each batch of events it waits until this process's view has folded them, then:
//! - reconciles the carts those events touch: every free cart with a waiting request is reserved
//!   for the first request of its FIFO queue (`CartReserved` appended with the cart's expected
//!   last sequence and a deterministic `Nats-Msg-Id`, so however many dispatchers race, a cart is
//!   reserved once), and every share held by a faulted cart (or waiting on a cart whose SSD with
//!   the data failed) is re-planned (`RequestReplanned`, expected sequence of the request);
//! - publishes the job of each `CartReserved` it was handed that is still the cart's current
//!   reservation, flushes, and only then acks. A dispatcher killed between the reservation and
//!   the job leaves the `CartReserved` unacknowledged: JetStream hands it to the next dispatcher,
//!   which publishes the job (the reservation in the stream is the outbox).
//!
//! A timer reconciles every cart every second as well, so nothing waits on a lost wake-up.

use crate::{cart_subject, job_subject, request_subject, Dispatch, STREAM_SUBJECTS};
use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use runtime::store::{decode_event, stamp, AppendError};
use schemas::dispatch::{self as w, DispatchEvent};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

/// Name of the durable consumer.
pub const CONSUMER: &str = "dispatcher";
/// How long a delivered event stays with one dispatcher before another gets it.
pub const ACK_WAIT: Duration = Duration::from_secs(4);
/// Appends one dispatcher makes at once.
const CONCURRENCY: usize = 256;

struct Dispatcher {
    d: Arc<Dispatch>,
    /// Aggregate subject -> the expected sequence already tried (tried once per state).
    attempted: Mutex<HashMap<String, u64>>,
}

enum Action {
    Reserve(w::CartReserved, u64),
    Replan(w::RequestReplanned, u64),
}

/// Starts the dispatcher.
///
/// # Errors
/// JetStream unreachable.
pub async fn spawn(d: Arc<Dispatch>) -> anyhow::Result<()> {
    let stream = d
        .store
        .jetstream()
        .get_stream(d.store.name())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let consumer = stream
        .get_or_create_consumer(
            CONSUMER,
            pull::Config {
                durable_name: Some(CONSUMER.into()),
                description: Some("dispatch process manager: reservations, re-plans, jobs".into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: 20_000,
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                filter_subject: STREAM_SUBJECTS.into(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating the dispatcher's consumer: {e}"))?;
    let pm = Arc::new(Dispatcher {
        d,
        attempted: Mutex::new(HashMap::new()),
    });
    let me = pm.clone();
    tokio::spawn(async move {
        loop {
            match consumer
                .stream()
                .max_messages_per_batch(500)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
            {
                Ok(messages) => {
                    let mut chunks = messages.ready_chunks(500);
                    while let Some(chunk) = chunks.next().await {
                        let mut batch = Vec::with_capacity(chunk.len());
                        let mut broken = false;
                        for m in chunk {
                            match m {
                                Ok(m) => batch.push(m),
                                Err(e) => {
                                    tracing::warn!(error = %e, "dispatcher pull error");
                                    broken = true;
                                }
                            }
                        }
                        if !batch.is_empty() {
                            me.handle(batch).await;
                        }
                        if broken {
                            break;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the dispatcher cannot pull; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            pm.reconcile(None).await;
        }
    });
    Ok(())
}

impl Dispatcher {
    async fn handle(&self, batch: Vec<jetstream::Message>) {
        let span = tracing::info_span!("dispatcher_batch", size = batch.len());
        self.handle_batch(batch).instrument(span).await;
    }

    async fn handle_batch(&self, batch: Vec<jetstream::Message>) {
        let max = batch
            .iter()
            .filter_map(|m| m.info().ok().map(|i| i.stream_sequence))
            .max()
            .unwrap_or(0);
        let t = std::time::Instant::now();
        if !self.d.view.wait_for(max, Duration::from_secs(5)).await {
            tracing::warn!(
                max,
                at = self.d.view.seq(),
                "the view is behind; handing the batch back"
            );
            for m in &batch {
                let _ = m
                    .ack_with(AckKind::Nak(Some(Duration::from_millis(200))))
                    .await;
            }
            return;
        }
        let mut published = 0usize;
        for m in &batch {
            let Ok((_, DispatchEvent::CartReserved(e))) = decode_event::<DispatchEvent>(&m.payload)
            else {
                continue;
            };
            let current = self.d.view.read(|v| {
                v.carts.get(&e.cart_id).is_some_and(|c| {
                    c.status == w::CartStatus::Queue
                        && c.job.as_ref().is_some_and(|j| j.request_id == e.request_id)
                })
            });
            if !current {
                continue;
            }
            let job = w::Job {
                request_id: e.request_id.clone(),
                server_id: e.server_id.clone(),
                route: e.route.clone(),
                seconds: e.seconds,
                cart_id: e.cart_id.clone(),
                datasets: e.datasets.clone(),
                bytes: e.bytes,
            };
            match serde_json::to_vec(&job) {
                Ok(body) => {
                    if let Err(e) = self
                        .d
                        .client
                        .publish(job_subject(&job.cart_id), body.into())
                        .await
                    {
                        tracing::warn!(error = %e, "publishing a job");
                    }
                    published += 1;
                }
                Err(e) => tracing::error!(error = %e, "encoding a job"),
            }
        }
        if published > 0 {
            if let Err(e) = self.d.client.flush().await {
                tracing::warn!(error = %e, "jobs not flushed; the batch will be redelivered");
                return;
            }
        }
        let waited = t.elapsed();
        let affected = affected_carts(&batch);
        self.reconcile(affected.as_ref()).await;
        tracing::debug!(?waited, total = ?t.elapsed(), published, "dispatcher batch handled");
        for m in &batch {
            let _ = m.ack().await;
        }
    }

    /// Makes the reservations and re-plans the view calls for now: for `only` these carts, or all.
    async fn reconcile(&self, only: Option<&BTreeSet<String>>) {
        let actions: Vec<Action> = self.d.view.read(|m| {
            let mut out = Vec::new();
            let (lost, mut carts) = match only {
                Some(carts) => (
                    carts
                        .iter()
                        .flat_map(|c| m.lost_shares_of(c))
                        .collect::<Vec<_>>(),
                    carts.iter().cloned().collect::<Vec<_>>(),
                ),
                None => (m.lost_shares(), m.ready_carts()),
            };
            for (request_id, cart_id) in lost {
                if let Some(p) = m.replan(&request_id, &cart_id) {
                    out.push(Action::Replan(
                        p,
                        m.request_seq.get(&request_id).copied().unwrap_or(0),
                    ));
                }
            }
            carts.sort();
            for c in carts {
                if let Some(r) = m.next_reservation(&c) {
                    out.push(Action::Reserve(r, m.cart_seq.get(&c).copied().unwrap_or(0)));
                }
            }
            out
        });
        let actions: Vec<Action> = {
            let Ok(mut attempted) = self.attempted.lock() else {
                return;
            };
            if attempted.len() > 100_000 {
                attempted.clear();
            }
            actions
                .into_iter()
                .filter(|a| {
                    let (key, expected) = match a {
                        Action::Reserve(r, e) => (cart_subject(&r.cart_id), *e),
                        Action::Replan(p, e) => (request_subject(&p.request_id), *e),
                    };
                    attempted.insert(key, expected) != Some(expected)
                })
                .collect()
        };
        if actions.is_empty() {
            return;
        }
        futures::stream::iter(actions)
            .for_each_concurrent(CONCURRENCY, |a| self.act(a))
            .await;
    }

    async fn act(&self, action: Action) {
        let (subject, expected, msg_id, event, cart) = match action {
            Action::Reserve(r, expected) => {
                let subject = cart_subject(&r.cart_id);
                let msg_id = format!(
                    "dispatch-reserve:{}:{expected}",
                    schemas::encode_token(&r.cart_id)
                );
                let cart = r.cart_id.clone();
                (
                    subject,
                    expected,
                    msg_id,
                    DispatchEvent::CartReserved(r),
                    Some(cart),
                )
            }
            Action::Replan(p, expected) => {
                let subject = request_subject(&p.request_id);
                let msg_id = format!(
                    "dispatch-replan:{}:{}:{expected}",
                    schemas::encode_token(&p.request_id),
                    schemas::encode_token(&p.cart_id)
                );
                (
                    subject,
                    expected,
                    msg_id,
                    DispatchEvent::RequestReplanned(p),
                    None,
                )
            }
        };
        let payload = match stamp(&event) {
            Ok(new) => new.payload,
            Err(e) => {
                tracing::error!(error = %e.message, "encoding a dispatcher event");
                return;
            }
        };
        match self
            .d
            .store
            .append(&subject, payload, expected, &msg_id)
            .await
        {
            Ok(ack) => {
                tracing::debug!(
                    subject,
                    seq = ack.sequence,
                    duplicate = ack.duplicate,
                    "dispatcher appended"
                );
                if let (Some(cart), false) = (cart, ack.duplicate) {
                    self.d.publish_cart(&cart, ack.sequence).await;
                }
            }
            Err(AppendError::WrongLastSequence) => {
                tracing::debug!(
                    subject,
                    expected,
                    "another dispatcher or a report came first"
                );
            }
            Err(AppendError::Unacknowledged(e)) => {
                tracing::warn!(subject, error = %e, "the store did not acknowledge; will try again");
                if let Ok(mut a) = self.attempted.lock() {
                    a.remove(&subject);
                }
            }
        }
    }
}

/// The carts whose reservations or re-plans a batch of events can change (`None`: all of them).
fn affected_carts(batch: &[jetstream::Message]) -> Option<BTreeSet<String>> {
    let mut carts = BTreeSet::new();
    for m in batch {
        let Ok((_, e)) = decode_event::<DispatchEvent>(&m.payload) else {
            continue;
        };
        match e {
            DispatchEvent::FacilitySet(_) => return None,
            DispatchEvent::CartRegistered(e) => {
                carts.insert(e.cart_id);
            }
            DispatchEvent::CartReported(e) => {
                carts.insert(e.cart_id);
            }
            DispatchEvent::CartReserved(_) => {}
            DispatchEvent::SsdRegistered(e) => {
                carts.insert(e.cart_id);
            }
            DispatchEvent::SsdHealthChanged(e) => {
                carts.insert(e.cart_id);
            }
            DispatchEvent::DatasetPut(e) => {
                carts.insert(e.cart_id);
            }
            DispatchEvent::DatasetsRequested(e) => {
                carts.extend(e.plan.into_iter().map(|p| p.cart_id))
            }
            DispatchEvent::RequestReplanned(e) => {
                carts.insert(e.cart_id);
                carts.extend(e.plan.into_iter().map(|p| p.cart_id));
            }
        }
    }
    Some(carts)
}
