//! The shop cart on `cqrs-es` 0.5 with `postgres-es` 0.5, the way their documentation shows: an
//! `Aggregate` whose `handle` writes events to the `EventSink`, `postgres_cqrs` over a
//! `PostgresEventRepository` (the `events` table of `db/init.sql`; optimistic concurrency by its
//! primary key (aggregate_type, aggregate_id, sequence), refused as `AggregateConflict`, which the
//! caller retries), and the read model as a `View` kept by a `GenericQuery` over a
//! `PostgresViewRepository`, updated in the same `execute` call after the commit. Replay:
//! `QueryReplay::replay_all`.

use crate::stores::{is_pg_conflict, Ack, CartStore, Cmd, Order, Outcome, MAX_ATTEMPTS};
use async_trait::async_trait;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{
    GenericQuery, PersistedEventRepository, PersistenceError, QueryReplay, SerializedEvent,
    ViewRepository,
};
use cqrs_es::{Aggregate, AggregateError, DomainEvent, EventEnvelope, View};
use postgres_es::{postgres_cqrs, PostgresCqrs, PostgresEventRepository, PostgresViewRepository};
use serde::{Deserialize, Serialize};
use shop::domain::{self, ShopError};
use sqlx08::postgres::PgPoolOptions;
use sqlx08::{PgPool, Row};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The aggregate: Switchyard's cart state and rules (`shop::domain`), in cqrs-es' trait.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CqrsCart(domain::Cart);

/// The events: Switchyard's cart events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CqrsEvent(pub domain::Event);

impl DomainEvent for CqrsEvent {
    fn event_type(&self) -> String {
        match self.0 {
            domain::Event::ItemAdded { .. } => "ItemAdded",
            domain::Event::ItemCountChanged { .. } => "ItemCountChanged",
            domain::Event::ItemRemoved { .. } => "ItemRemoved",
            domain::Event::CartCheckedOut { .. } => "CartCheckedOut",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

impl Aggregate for CqrsCart {
    const TYPE: &'static str = "cart";
    type Command = domain::Command;
    type Event = CqrsEvent;
    type Error = ShopError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ShopError> {
        let event = domain::decide(&self.0, &command, chrono::Utc::now(), uuid::Uuid::now_v7())?;
        sink.write(CqrsEvent(event), self).await;
        Ok(())
    }

    fn apply(&mut self, event: CqrsEvent) {
        runtime::store::Aggregate::apply(&mut self.0, &event.0);
    }
}

/// The read model: the cart by customer (view id = aggregate id = customer).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CartView {
    lines: Vec<domain::Line>,
}

impl View<CqrsCart> for CartView {
    fn update(&mut self, event: &EventEnvelope<CqrsCart>) {
        let mut cart = domain::Cart {
            lines: std::mem::take(&mut self.lines),
        };
        runtime::store::Aggregate::apply(&mut cart, &event.payload.0);
        self.lines = cart.lines;
    }
}

type Views = PostgresViewRepository<CartView, CqrsCart>;

/// The framework, its view repository and pool.
pub struct Cqrs {
    cqrs: PostgresCqrs<CqrsCart>,
    views: Arc<Views>,
    pool: PgPool,
    /// Failed view updates reported to the query's error handler (optimistic lock on the view row).
    pub view_errors: Arc<AtomicU64>,
}

/// The tables of postgres-es' `db/init.sql` (events, snapshots) and one view table.
const SCHEMA: &[&str] = &[
    "CREATE TABLE events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL, event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    "CREATE TABLE snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL, last_sequence bigint CHECK (last_sequence >= 0) NOT NULL, current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL, payload json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))",
    "CREATE TABLE cart_query (view_id text NOT NULL, version bigint CHECK (version >= 0) NOT NULL, payload json NOT NULL, PRIMARY KEY (view_id))",
];

/// A pool like Switchyard's (16 connections; postgres-es' `default_postgress_pool` has 10).
pub async fn pool(url: &str) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(16)
        .connect(url)
        .await?)
}

fn query(views: &Arc<Views>, errors: &Arc<AtomicU64>) -> GenericQuery<Views, CartView, CqrsCart> {
    let mut q = GenericQuery::new(views.clone());
    let errors = errors.clone();
    q.use_error_handler(Box::new(move |e: PersistenceError| {
        errors.fetch_add(1, Ordering::Relaxed);
        if errors.load(Ordering::Relaxed) <= 3 {
            eprintln!("peers: cqrs-es view update failed: {e}");
        }
    }));
    q
}

impl Cqrs {
    /// Creates the schema in the (fresh) database at `url` and the framework over it.
    ///
    /// # Errors
    /// PostgreSQL unreachable.
    pub async fn start(url: &str) -> anyhow::Result<Self> {
        let pool = pool(url).await?;
        for sql in SCHEMA {
            sqlx08::query(sql).execute(&pool).await?;
        }
        let views = Arc::new(PostgresViewRepository::new("cart_query", pool.clone()));
        let view_errors = Arc::new(AtomicU64::new(0));
        let q = query(&views, &view_errors);
        let cqrs = postgres_cqrs(pool.clone(), vec![Box::new(q)], ());
        Ok(Self {
            cqrs,
            views,
            pool,
            view_errors,
        })
    }

    /// Writes `carts` x `per_cart` `ItemAdded` events straight through the event repository (one
    /// `persist` per cart), for the replay measurement; returns the number written.
    ///
    /// # Errors
    /// PostgreSQL refused.
    pub async fn seed(&self, carts: usize, per_cart: usize) -> anyhow::Result<u64> {
        let repo = PostgresEventRepository::new(self.pool.clone());
        for c in 0..carts {
            let customer = format!("replay-{c}");
            let events: Vec<SerializedEvent> = (0..per_cart)
                .map(|i| {
                    let e = CqrsEvent(crate::replay_event(&customer, i));
                    Ok(SerializedEvent::new(
                        customer.clone(),
                        i + 1,
                        CqrsCart::TYPE.into(),
                        e.event_type(),
                        e.event_version(),
                        serde_json::to_value(&e)?,
                        serde_json::json!({}),
                    ))
                })
                .collect::<anyhow::Result<_>>()?;
            repo.persist::<CqrsCart>(&events, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok((carts * per_cart) as u64)
    }

    /// Replays every event into the (empty) view table with the framework's `QueryReplay`.
    ///
    /// # Errors
    /// The replay failed.
    pub async fn replay_all(&self) -> anyhow::Result<()> {
        let repo = PostgresEventRepository::new(self.pool.clone());
        let q = query(&self.views, &self.view_errors);
        QueryReplay::new(repo, q)
            .replay_all()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Views in the view table, and the lines they hold.
    ///
    /// # Errors
    /// PostgreSQL refused.
    pub async fn view_count(&self) -> anyhow::Result<(i64, i64)> {
        let row = sqlx08::query(
            "SELECT count(*), coalesce(sum(json_array_length(payload->'lines')), 0)::bigint FROM cart_query",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.get(0), row.get(1)))
    }
}

#[async_trait]
impl CartStore for Cqrs {
    fn name(&self) -> &'static str {
        "cqrs-es + postgres-es"
    }

    async fn execute(&self, cmd: &Cmd) -> anyhow::Result<Outcome> {
        let command = match cmd.to_domain() {
            Ok(c) => c,
            Err(e) => return Ok(Outcome::Refused(e.to_string())),
        };
        let customer = command.customer_id().to_string();
        let mut retries = 0;
        loop {
            match self.cqrs.execute(&customer, command.clone()).await {
                Ok(()) => return Ok(Outcome::Done(Ack { retries, seq: 0 })),
                Err(AggregateError::UserError(e)) => return Ok(Outcome::Refused(e.to_string())),
                // "the user should try again" (cqrs-es' documentation of AggregateConflict).
                Err(AggregateError::AggregateConflict) if retries < MAX_ATTEMPTS => retries += 1,
                Err(AggregateError::DatabaseConnectionError(e))
                    if retries < MAX_ATTEMPTS
                        && e.downcast_ref::<sqlx08::Error>()
                            .is_some_and(is_pg_conflict) =>
                {
                    retries += 1;
                }
                Err(e) => anyhow::bail!("cqrs-es: {e} (after {retries} retries)"),
            }
        }
    }

    async fn read(
        &self,
        customer: &str,
        _after: Option<Ack>,
    ) -> anyhow::Result<Vec<(String, i64)>> {
        let view = self
            .views
            .load(customer)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(view
            .map(|v| v.lines.into_iter().map(|l| (l.item_id, l.count)).collect())
            .unwrap_or_default())
    }

    async fn last_order(&self, customer: &str) -> anyhow::Result<Option<Order>> {
        let payload: Option<serde_json::Value> = sqlx08::query_scalar(
            "SELECT payload FROM events WHERE aggregate_type = 'cart' AND aggregate_id = $1 AND event_type = 'CartCheckedOut' ORDER BY sequence DESC LIMIT 1",
        )
        .bind(customer)
        .fetch_optional(&self.pool)
        .await?;
        Ok(payload
            .map(serde_json::from_value::<CqrsEvent>)
            .transpose()?
            .and_then(|e| crate::order_of(&e.0)))
    }
}
