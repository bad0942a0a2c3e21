//! The shop cart on `disintegrate` 4 with `disintegrate-postgres` 4, the way their documentation
//! shows: events derived with `#[derive(Event)]` and the customer as `#[id]`, a `StateQuery` (the
//! cart of one customer) mutated by the events, one `Decision` per command made by the
//! `decision_maker(PgEventStore, NoSnapshot)` (optimistic concurrency: the append checks, in a
//! SERIALIZABLE transaction, that no event of the state query was appended since the state was
//! read, else `Concurrency`, which the caller retries), and the read model as an `EventListener`
//! run by `PgEventListener` (poller + notifier, as in the `courses` example), writing its own table
//! asynchronously. Replay: a listener with a new id starts from the first event.

use crate::stores::{is_pg_conflict, Ack, CartStore, Cmd, Order, Outcome, MAX_ATTEMPTS};
use async_trait::async_trait;
use disintegrate::serde::json::Json;
use disintegrate::{
    query, Decision, DecisionError, EventListener, EventStore as _, NoSnapshot, PersistedEvent,
    StateMutate, StateQuery, StreamQuery,
};
use disintegrate_postgres::{
    decision_maker, PgDecisionMaker, PgEventId, PgEventListener, PgEventListenerConfig,
    PgEventStore,
};
use serde::{Deserialize, Serialize};
use shop::domain::{self, Money, OrderLine, ShopError};
use sqlx08::{PgPool, Row};
use std::time::Duration;

/// Switchyard's cart events, with the customer as the domain id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, disintegrate::Event)]
pub enum DisEvent {
    ItemAdded {
        #[id]
        customer_id: String,
        item_id: String,
        item_count: i64,
        offered_price: Money,
        special_sale: Option<Money>,
        sale_expiration: Option<chrono::DateTime<chrono::Utc>>,
    },
    ItemCountChanged {
        #[id]
        customer_id: String,
        item_id: String,
        new_count: i64,
    },
    ItemRemoved {
        #[id]
        customer_id: String,
        item_id: String,
    },
    CartCheckedOut {
        #[id]
        customer_id: String,
        order_id: String,
        items: Vec<OrderLine>,
        total: Money,
    },
}

impl From<domain::Event> for DisEvent {
    fn from(e: domain::Event) -> Self {
        match e {
            domain::Event::ItemAdded {
                customer_id,
                item_id,
                item_count,
                offered_price,
                special_sale,
                sale_expiration,
            } => Self::ItemAdded {
                customer_id,
                item_id,
                item_count,
                offered_price,
                special_sale,
                sale_expiration,
            },
            domain::Event::ItemCountChanged {
                customer_id,
                item_id,
                new_count,
            } => Self::ItemCountChanged {
                customer_id,
                item_id,
                new_count,
            },
            domain::Event::ItemRemoved {
                customer_id,
                item_id,
            } => Self::ItemRemoved {
                customer_id,
                item_id,
            },
            domain::Event::CartCheckedOut {
                customer_id,
                order_id,
                items,
                total,
            } => Self::CartCheckedOut {
                customer_id,
                order_id,
                items,
                total,
            },
        }
    }
}

impl From<DisEvent> for domain::Event {
    fn from(e: DisEvent) -> Self {
        match e {
            DisEvent::ItemAdded {
                customer_id,
                item_id,
                item_count,
                offered_price,
                special_sale,
                sale_expiration,
            } => Self::ItemAdded {
                customer_id,
                item_id,
                item_count,
                offered_price,
                special_sale,
                sale_expiration,
            },
            DisEvent::ItemCountChanged {
                customer_id,
                item_id,
                new_count,
            } => Self::ItemCountChanged {
                customer_id,
                item_id,
                new_count,
            },
            DisEvent::ItemRemoved {
                customer_id,
                item_id,
            } => Self::ItemRemoved {
                customer_id,
                item_id,
            },
            DisEvent::CartCheckedOut {
                customer_id,
                order_id,
                items,
                total,
            } => Self::CartCheckedOut {
                customer_id,
                order_id,
                items,
                total,
            },
        }
    }
}

/// The decision state: the cart of one customer.
#[derive(Debug, Default, Clone, Serialize, Deserialize, StateQuery)]
#[state_query(DisEvent)]
pub struct CartState {
    #[id]
    customer_id: String,
    cart: domain::Cart,
}

impl StateMutate for CartState {
    fn mutate(&mut self, event: Self::Event) {
        runtime::store::Aggregate::apply(&mut self.cart, &event.into());
    }
}

/// One command as a decision: Switchyard's `decide` on the loaded cart.
pub struct CartDecision {
    command: domain::Command,
    now: chrono::DateTime<chrono::Utc>,
    order_id: uuid::Uuid,
}

impl Decision for CartDecision {
    type Event = DisEvent;
    type StateQuery = CartState;
    type Error = ShopError;

    fn state_query(&self) -> CartState {
        CartState {
            customer_id: self.command.customer_id().to_string(),
            ..Default::default()
        }
    }

    fn process(&self, state: &CartState) -> Result<Vec<DisEvent>, ShopError> {
        Ok(vec![domain::decide(
            &state.cart,
            &self.command,
            self.now,
            self.order_id,
        )?
        .into()])
    }
}

/// The read model: one row per cart line, written by the listener.
pub struct CartProjection {
    id: &'static str,
    table: &'static str,
    query: StreamQuery<PgEventId, DisEvent>,
    pool: PgPool,
}

impl CartProjection {
    /// Creates the read-model table `table` if needed.
    ///
    /// # Errors
    /// PostgreSQL refused.
    pub async fn try_new(
        pool: PgPool,
        id: &'static str,
        table: &'static str,
    ) -> anyhow::Result<Self> {
        sqlx08::query(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (customer_id text NOT NULL, item_id text NOT NULL, position bigint NOT NULL, item_count bigint NOT NULL, event_id bigint NOT NULL, PRIMARY KEY (customer_id, item_id))"
        ))
        .execute(&pool)
        .await?;
        Ok(Self {
            id,
            table,
            query: query!(DisEvent),
            pool,
        })
    }
}

#[async_trait]
impl EventListener<PgEventId, DisEvent> for CartProjection {
    type Error = sqlx08::Error;

    fn id(&self) -> &'static str {
        self.id
    }

    fn query(&self) -> &StreamQuery<PgEventId, DisEvent> {
        &self.query
    }

    async fn handle(&self, event: PersistedEvent<PgEventId, DisEvent>) -> Result<(), Self::Error> {
        let event_id = event.id();
        let t = self.table;
        // Delivery is at least once: every write is guarded by the event id it carries.
        match event.into_inner() {
            DisEvent::ItemAdded {
                customer_id,
                item_id,
                item_count,
                ..
            } => {
                sqlx08::query(&format!(
                    "INSERT INTO {t} AS l (customer_id, item_id, position, item_count, event_id) VALUES ($1, $2, $3, $4, $3) \
                     ON CONFLICT (customer_id, item_id) DO UPDATE SET item_count = l.item_count + excluded.item_count, event_id = excluded.event_id \
                     WHERE l.event_id < excluded.event_id"
                ))
                .bind(customer_id)
                .bind(item_id)
                .bind(event_id)
                .bind(item_count)
                .execute(&self.pool)
                .await?;
            }
            DisEvent::ItemCountChanged {
                customer_id,
                item_id,
                new_count,
            } => {
                sqlx08::query(&format!(
                    "UPDATE {t} SET item_count = $3, event_id = $4 WHERE customer_id = $1 AND item_id = $2 AND event_id < $4"
                ))
                .bind(customer_id)
                .bind(item_id)
                .bind(new_count)
                .bind(event_id)
                .execute(&self.pool)
                .await?;
            }
            DisEvent::ItemRemoved {
                customer_id,
                item_id,
            } => {
                sqlx08::query(&format!(
                    "DELETE FROM {t} WHERE customer_id = $1 AND item_id = $2 AND event_id < $3"
                ))
                .bind(customer_id)
                .bind(item_id)
                .bind(event_id)
                .execute(&self.pool)
                .await?;
            }
            DisEvent::CartCheckedOut { customer_id, .. } => {
                sqlx08::query(&format!(
                    "DELETE FROM {t} WHERE customer_id = $1 AND event_id < $2"
                ))
                .bind(customer_id)
                .bind(event_id)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }
}

type Store = PgEventStore<DisEvent, Json<DisEvent>>;

/// disintegrate-postgres 4's event store and listener schema (its `event_store/sql` and
/// `listener/sql`, plus the column and index its migrator adds for the `customer_id` domain id),
/// with `4294967295` for the hexadecimal literal PostgreSQL 15 does not parse.
const PG15_SCHEMA: &[&str] = &[
    "CREATE SEQUENCE IF NOT EXISTS seq_event_event_id",
    "CREATE TABLE IF NOT EXISTS event (event_id BIGINT PRIMARY KEY DEFAULT nextval('seq_event_event_id'), event_type VARCHAR(255), payload BYTEA, inserted_at TIMESTAMP DEFAULT now())",
    "CREATE INDEX IF NOT EXISTS idx_event_type_btree ON event(event_type)",
    "ALTER TABLE event ADD COLUMN IF NOT EXISTS customer_id TEXT",
    "CREATE INDEX IF NOT EXISTS idx_event_customer_id ON event (customer_id) WHERE customer_id IS NOT NULL",
    r"CREATE OR REPLACE FUNCTION event_store_begin_epoch() RETURNS void AS $$
      DECLARE last_id BIGINT; db INT;
      BEGIN
        SELECT last_value INTO last_id FROM seq_event_event_id;
        SELECT oid INTO db FROM pg_database WHERE datname = current_database();
        PERFORM pg_try_advisory_xact_lock_shared(db, 0);
        PERFORM pg_try_advisory_xact_lock_shared(1, (last_id & 4294967295)::bit(32)::integer);
        PERFORM pg_try_advisory_xact_lock_shared(2, (last_id >> 32)::bit(32)::integer);
      END; $$ LANGUAGE plpgsql",
    r"CREATE OR REPLACE FUNCTION event_store_current_epoch() RETURNS BIGINT AS $$
      DECLARE persisted BIGINT; pending BIGINT; db INT;
      BEGIN
        SELECT COALESCE(MAX(event_id), 0) INTO persisted FROM event;
        SELECT oid INTO db FROM pg_database WHERE datname = current_database();
        SELECT MIN((l3.objid::bigint << 32) + l2.objid::bigint) INTO pending
          FROM pg_locks l1 JOIN pg_locks l2 ON l1.pid = l2.pid JOIN pg_locks l3 ON l1.pid = l3.pid
          WHERE l1.classid = db AND l2.classid = 1 AND l3.classid = 2 AND l1.locktype = 'advisory';
        RETURN LEAST(COALESCE(pending, persisted), persisted);
      END; $$ LANGUAGE plpgsql",
    "CREATE TABLE IF NOT EXISTS event_listener (id TEXT PRIMARY KEY, last_processed_event_id BIGINT, updated_at TIMESTAMP DEFAULT now())",
    r"CREATE OR REPLACE FUNCTION notify_event_listener() RETURNS TRIGGER AS $$
      BEGIN PERFORM pg_notify('new_events', NEW.event_type); RETURN NEW; END; $$ LANGUAGE plpgsql",
    "CREATE OR REPLACE TRIGGER event_insert_trigger AFTER INSERT ON event FOR EACH ROW EXECUTE FUNCTION notify_event_listener()",
];

/// The decision maker, the event store, the read model's pool and the listener's task.
pub struct Disintegrate {
    maker: PgDecisionMaker<DisEvent, Json<DisEvent>, NoSnapshot>,
    store: Store,
    pool: PgPool,
    listener: Option<tokio::task::JoinHandle<()>>,
    stop: tokio_util_stop::Stop,
}

/// A shutdown signal for `start_with_shutdown`.
mod tokio_util_stop {
    #[derive(Clone)]
    pub struct Stop(pub std::sync::Arc<tokio::sync::Notify>);
    impl Stop {
        pub fn new() -> Self {
            Self(std::sync::Arc::new(tokio::sync::Notify::new()))
        }
        pub async fn wait(self) {
            self.0.notified().await;
        }
    }
}

impl Disintegrate {
    /// Initialises the event store in the (fresh) database at `url`; with `listen`, starts the
    /// read-model listener.
    ///
    /// # Errors
    /// PostgreSQL unreachable.
    pub async fn start(url: &str, listen: bool) -> anyhow::Result<Self> {
        let pool = crate::cqrs::pool(url).await?;
        // `PgEventStore::try_new` runs disintegrate-postgres' migrations, whose
        // `event_store_begin_epoch` writes a hexadecimal literal (`0xFFFFFFFF`) that only
        // PostgreSQL 16+ parses; this machine's is 15. So the same schema is created here with a
        // decimal literal, and the store and listener are built uninitialised.
        for sql in PG15_SCHEMA {
            sqlx08::query(sql).execute(&pool).await?;
        }
        let store = PgEventStore::new_uninitialized(pool.clone(), Json::<DisEvent>::default());
        let maker = decision_maker(store.clone(), NoSnapshot);
        let mut me = Self {
            maker,
            store,
            pool,
            listener: None,
            stop: tokio_util_stop::Stop::new(),
        };
        if listen {
            me.listen("carts", "cart_line").await?;
        }
        Ok(me)
    }

    /// Starts a `PgEventListener` with the read model `id` writing `table`.
    ///
    /// # Errors
    /// PostgreSQL refused.
    pub async fn listen(&mut self, id: &'static str, table: &'static str) -> anyhow::Result<()> {
        let projection = CartProjection::try_new(self.pool.clone(), id, table).await?;
        let listener = PgEventListener::builder(self.store.clone())
            .uninitialized()
            .register_listener(
                projection,
                PgEventListenerConfig::poller(Duration::from_secs(5)).with_notifier(),
            );
        let stop = self.stop.clone();
        self.listener = Some(tokio::spawn(async move {
            if let Err(e) = listener.start_with_shutdown(stop.wait()).await {
                eprintln!("peers: disintegrate listener stopped: {e}");
            }
        }));
        Ok(())
    }

    /// The last event id the listener `id` committed.
    ///
    /// # Errors
    /// PostgreSQL refused.
    pub async fn listener_position(&self, id: &str) -> anyhow::Result<i64> {
        Ok(sqlx08::query_scalar(
            "SELECT coalesce(max(last_processed_event_id), 0) FROM event_listener WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The last event id in the store.
    ///
    /// # Errors
    /// PostgreSQL refused.
    pub async fn last_event_id(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx08::query_scalar("SELECT coalesce(max(event_id), 0) FROM event")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Writes `carts` x `per_cart` `ItemAdded` events through the event store's
    /// `append_without_validation` (one append per cart), for the replay measurement.
    ///
    /// # Errors
    /// PostgreSQL refused.
    pub async fn seed(&self, carts: usize, per_cart: usize) -> anyhow::Result<u64> {
        for c in 0..carts {
            let customer = format!("replay-{c}");
            let events: Vec<DisEvent> = (0..per_cart)
                .map(|i| crate::replay_event(&customer, i).into())
                .collect();
            self.store.append_without_validation(events).await?;
        }
        Ok((carts * per_cart) as u64)
    }

    /// Rows and lines in a read-model table.
    ///
    /// # Errors
    /// PostgreSQL refused.
    pub async fn lines_in(&self, table: &str) -> anyhow::Result<i64> {
        Ok(
            sqlx08::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

impl Drop for Disintegrate {
    fn drop(&mut self) {
        self.stop.0.notify_waiters();
        if let Some(l) = self.listener.take() {
            l.abort();
        }
    }
}

fn is_conflict(e: &DecisionError<ShopError>) -> bool {
    match e {
        DecisionError::StateStore(b) | DecisionError::EventStore(b) => {
            match b.downcast_ref::<disintegrate_postgres::Error>() {
                Some(disintegrate_postgres::Error::Concurrency) => true,
                Some(disintegrate_postgres::Error::Database(d)) => is_pg_conflict(d),
                _ => b
                    .downcast_ref::<sqlx08::Error>()
                    .is_some_and(is_pg_conflict),
            }
        }
        DecisionError::Domain(_) => false,
    }
}

#[async_trait]
impl CartStore for Disintegrate {
    fn name(&self) -> &'static str {
        "disintegrate + disintegrate-postgres"
    }

    async fn execute(&self, cmd: &Cmd) -> anyhow::Result<Outcome> {
        let command = match cmd.to_domain() {
            Ok(c) => c,
            Err(e) => return Ok(Outcome::Refused(e.to_string())),
        };
        let mut retries = 0;
        loop {
            let decision = CartDecision {
                command: command.clone(),
                now: chrono::Utc::now(),
                order_id: uuid::Uuid::now_v7(),
            };
            match self.maker.make(decision).await {
                Ok(events) => {
                    let seq = events.last().map_or(0, |e| e.id() as u64);
                    return Ok(Outcome::Done(Ack { retries, seq }));
                }
                Err(DecisionError::Domain(e)) => return Ok(Outcome::Refused(e.to_string())),
                Err(e) if retries < MAX_ATTEMPTS && is_conflict(&e) => retries += 1,
                Err(e) => anyhow::bail!("disintegrate: {e} (after {retries} retries)"),
            }
        }
    }

    async fn read(
        &self,
        customer: &str,
        _after: Option<Ack>,
    ) -> anyhow::Result<Vec<(String, i64)>> {
        let rows = sqlx08::query(
            "SELECT item_id, item_count FROM cart_line WHERE customer_id = $1 ORDER BY position",
        )
        .bind(customer)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn last_order(&self, customer: &str) -> anyhow::Result<Option<Order>> {
        let payload: Option<Vec<u8>> = sqlx08::query_scalar(
            "SELECT payload FROM event WHERE customer_id = $1 AND event_type = 'CartCheckedOut' ORDER BY event_id DESC LIMIT 1",
        )
        .bind(customer)
        .fetch_optional(&self.pool)
        .await?;
        Ok(payload
            .map(|p| serde_json::from_slice::<DisEvent>(&p))
            .transpose()?
            .and_then(|e| crate::order_of(&e.into())))
    }
}
