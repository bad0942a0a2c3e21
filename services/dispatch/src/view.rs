//! The in-memory [`Model`] of this process: every event of the `DISPATCH` stream folded in order by
//! an ordered consumer. Command handlers validate and plan against it, the dispatcher decides
//! reservations from it (and appends them with the cart's expected sequence, so a stale view can
//! never double-book), the live subject and the route/facility queries read it.

use crate::domain::Model;
use crate::STREAM_SUBJECTS;
use runtime::follow::Follower;
use runtime::store::EventStore;
use runtime::ServiceError;
use schemas::dispatch::DispatchEvent;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// A shared, continuously updated model.
#[derive(Clone)]
pub struct View {
    model: Arc<RwLock<Model>>,
    seq: watch::Sender<u64>,
    store: EventStore,
    /// request id -> woken when a cart is reserved for that request.
    waiters: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl View {
    /// Starts following the stream from its first event and returns once the view has reached the
    /// stream as it stood at the call.
    ///
    /// # Errors
    /// JetStream unreachable, or the catch-up took more than 60 s.
    pub async fn start(store: EventStore) -> anyhow::Result<Self> {
        let (tx, _) = watch::channel(0);
        let view = Self {
            model: Arc::new(RwLock::new(Model::default())),
            seq: tx,
            store,
            waiters: Arc::new(Mutex::new(HashMap::new())),
        };
        let runner = view.clone();
        tokio::spawn(async move { runner.follow().await });
        view.catch_up(Duration::from_secs(60))
            .await
            .map_err(|e| anyhow::anyhow!("the dispatch view did not catch up: {}", e.message))?;
        Ok(view)
    }

    async fn follow(self) {
        let mut follower =
            Follower::new(self.store.jetstream(), self.store.name(), "dispatch view")
                .subjects(STREAM_SUBJECTS)
                .from(self.seq() + 1);
        loop {
            let chunk = follower.next(1000).await;
            let decoded: Vec<(u64, Option<DispatchEvent>)> = chunk
                .iter()
                .map(|m| match m.event::<DispatchEvent>() {
                    Ok((_, e)) => (m.seq, Some(e)),
                    Err(reason) => {
                        tracing::error!(seq = m.seq, %reason, "the dispatch view skips an event it cannot read");
                        (m.seq, None)
                    }
                })
                .collect();
            if let Err(e) = self.fold(&decoded) {
                tracing::error!(error = %e, "the dispatch view stopped");
                return;
            }
        }
    }

    /// Folds events into the model, wakes the waiters of reserved requests, moves the sequence on.
    fn fold(&self, decoded: &[(u64, Option<DispatchEvent>)]) -> anyhow::Result<()> {
        let last = {
            let Ok(mut model) = self.model.write() else {
                anyhow::bail!("the view's lock is poisoned")
            };
            for (seq, e) in decoded {
                if *seq <= model.seq {
                    continue;
                }
                match e {
                    Some(e) => model.apply(*seq, e),
                    None => model.seq = *seq,
                }
            }
            model.seq
        };
        if let Ok(waiters) = self.waiters.lock() {
            if !waiters.is_empty() {
                for (_, e) in decoded {
                    if let Some(DispatchEvent::CartReserved(e)) = e {
                        if let Some(n) = waiters.get(&e.request_id) {
                            n.notify_waiters();
                        }
                    }
                }
            }
        }
        self.seq.send_if_modified(|s| {
            if last > *s {
                *s = last;
                true
            } else {
                false
            }
        });
        Ok(())
    }

    /// A notifier woken whenever a cart is reserved for `request_id` (until [`View::forget_waiter`]).
    #[must_use]
    pub fn waiter(&self, request_id: &str) -> Arc<Notify> {
        match self.waiters.lock() {
            Ok(mut w) => w.entry(request_id.to_string()).or_default().clone(),
            Err(_) => Arc::new(Notify::new()),
        }
    }

    /// Drops the notifier of `request_id`.
    pub fn forget_waiter(&self, request_id: &str) {
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(request_id);
        }
    }

    /// Reads the model.
    pub fn read<R>(&self, f: impl FnOnce(&Model) -> R) -> R {
        match self.model.read() {
            Ok(m) => f(&m),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// The last stream sequence folded.
    #[must_use]
    pub fn seq(&self) -> u64 {
        *self.seq.borrow()
    }

    /// A receiver that changes whenever the view moves on.
    #[must_use]
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.seq.subscribe()
    }

    /// Waits until the view has folded `seq`; false after `timeout`.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.seq.subscribe();
        let ok = tokio::time::timeout(timeout, rx.wait_for(|s| *s >= seq)).await;
        matches!(ok, Ok(Ok(_)))
    }

    /// The contract's `min_seq` on this view.
    ///
    /// # Errors
    /// `unavailable` after `timeout`.
    pub async fn wait_min_seq(
        &self,
        min_seq: Option<u64>,
        timeout: Duration,
    ) -> Result<(), ServiceError> {
        let Some(min) = min_seq else { return Ok(()) };
        if self.wait_for(min, timeout).await {
            Ok(())
        } else {
            Err(ServiceError::unavailable(format!(
                "the dispatch view has not reached min_seq {min} within {} ms (it is at {}); retry later",
                timeout.as_millis(),
                self.seq()
            )))
        }
    }

    /// Waits until the view has folded everything the stream holds now.
    ///
    /// # Errors
    /// `unavailable` when JetStream does not answer or the view does not get there in `timeout`.
    pub async fn catch_up(&self, timeout: Duration) -> Result<(), ServiceError> {
        let last = self.store.last_seq().await.map_err(|e| {
            ServiceError::unavailable(format!("the event store is unavailable: {e}"))
        })?;
        if self.wait_for(last, timeout).await {
            Ok(())
        } else {
            Err(ServiceError::unavailable(format!(
                "the dispatch view is behind the stream ({} of {last})",
                self.seq()
            )))
        }
    }

    /// Reads the model; when `ok` says the answer may be stale (say, an id it does not know yet),
    /// catches up with the stream first and reads again.
    ///
    /// # Errors
    /// `unavailable` when the catch-up fails.
    pub async fn read_fresh<R>(
        &self,
        ok: impl Fn(&R) -> bool,
        f: impl Fn(&Model) -> R,
    ) -> Result<R, ServiceError> {
        let r = self.read(&f);
        if ok(&r) {
            return Ok(r);
        }
        self.catch_up(Duration::from_secs(5)).await?;
        Ok(self.read(&f))
    }
}

/// The state of one aggregate as the view knows it, for the command pipeline
/// (`Repository::execute_on`). Carts are written by two kinds of writers (commands and the
/// dispatcher's reservations, in any process), so a per-process cache of the aggregate could be
/// stale: here every attempt reads the view, which folds every process's events; a refusal or a
/// lost race catches the view up with the stream before deciding again.
pub struct ViewState<'a, S, F> {
    view: &'a View,
    read: F,
    state: S,
    seq: u64,
    fresh: bool,
}

impl<'a, S: Default, F: Fn(&Model) -> (S, u64)> ViewState<'a, S, F> {
    /// The aggregate `read` picks out of the model (its state and last sequence).
    pub fn new(view: &'a View, read: F) -> Self {
        Self {
            view,
            read,
            state: S::default(),
            seq: 0,
            fresh: false,
        }
    }
}

impl<S, F> runtime::store::StateSource<S> for ViewState<'_, S, F>
where
    S: runtime::store::Aggregate<Event = DispatchEvent>,
    F: Fn(&Model) -> (S, u64) + Send + Sync,
{
    async fn load(&mut self) -> Result<(), ServiceError> {
        (self.state, self.seq) = self.view.read(&self.read);
        Ok(())
    }
    fn state(&self) -> &S {
        &self.state
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn fresh(&self) -> bool {
        self.fresh
    }
    async fn catch_up(&mut self) -> Result<bool, ServiceError> {
        // Maybe the view has not seen the latest event yet: look again.
        self.view.catch_up(Duration::from_secs(5)).await?;
        self.fresh = true;
        Ok(true)
    }
    async fn appended(&mut self, event: &DispatchEvent, seq: u64) {
        // Read-your-writes: the next command on this aggregate sees this event.
        self.view.wait_for(seq, Duration::from_secs(2)).await;
        self.state.apply(event);
    }
    fn forget(&mut self) {}
    async fn settle(&mut self, seq: u64) -> Result<(), ServiceError> {
        self.view.wait_for(seq, Duration::from_secs(5)).await;
        self.load().await
    }
    async fn after(&mut self, _folded: S, seq: u64) -> S {
        self.view.wait_for(seq, Duration::from_secs(5)).await;
        self.view.read(&self.read).0
    }
}
