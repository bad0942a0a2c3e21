//! The one interface the measurements drive, and Switchyard behind it (through NATS, as a client).

use async_trait::async_trait;
use serde_json::{json, Value};
use shop::domain::{Command, Money, ShopError};

/// One command of the workload, in the contract's terms (contract section 3).
#[derive(Debug, Clone)]
pub enum Cmd {
    Add {
        customer: String,
        item: String,
        /// Cents.
        price: i64,
        count: i64,
        /// A sale price (cents) valid for one hour.
        sale: Option<i64>,
    },
    Update {
        customer: String,
        item: String,
        count: i64,
    },
    Remove {
        customer: String,
        item: String,
    },
    Checkout {
        customer: String,
    },
}

impl Cmd {
    /// The validated command of Switchyard's shop domain (the peers run the same `decide`).
    ///
    /// # Errors
    /// A value the contract refuses.
    pub fn to_domain(&self) -> Result<Command, ShopError> {
        match self {
            Self::Add {
                customer,
                item,
                price,
                count,
                sale,
            } => Command::add_item(&schemas::shop::AddItem {
                customer_id: customer.clone(),
                item_id: item.clone(),
                offered_price: Money(*price).to_f64(),
                item_count: *count,
                special_sale: sale.map(|s| Money(s).to_f64()),
                sale_expiration: sale.map(|_| sale_until()),
            }),
            Self::Update {
                customer,
                item,
                count,
            } => Command::update_item(&schemas::shop::UpdateItem {
                customer_id: customer.clone(),
                item_id: item.clone(),
                new_count: *count,
            }),
            Self::Remove { customer, item } => Command::remove_item(&schemas::shop::RemoveItem {
                customer_id: customer.clone(),
                item_id: item.clone(),
            }),
            Self::Checkout { customer } => Command::checkout(&schemas::shop::Checkout {
                customer_id: customer.clone(),
            }),
        }
    }

    fn to_wire(&self) -> (&'static str, Value) {
        match self {
            Self::Add {
                customer,
                item,
                price,
                count,
                sale,
            } => (
                "shop.cmd.add-item",
                json!({"customer_id": customer, "item_id": item, "offered_price": Money(*price).to_f64(),
                       "item_count": count, "special_sale": sale.map(|s| Money(s).to_f64()),
                       "sale_expiration": sale.map(|_| sale_until())}),
            ),
            Self::Update {
                customer,
                item,
                count,
            } => (
                "shop.cmd.update-item",
                json!({"customer_id": customer, "item_id": item, "new_count": count}),
            ),
            Self::Remove { customer, item } => (
                "shop.cmd.remove-item",
                json!({"customer_id": customer, "item_id": item}),
            ),
            Self::Checkout { customer } => ("shop.cmd.checkout", json!({"customer_id": customer})),
        }
    }
}

/// Sales in the workload run for an hour from now (whole seconds, so every store keeps it exactly).
fn sale_until() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now().timestamp();
    chrono::DateTime::from_timestamp(now - now % 60 + 3600, 0).unwrap_or_default()
}

/// What a store answered to a command.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ack {
    /// Conflicts the client retried before the command went through (the framework refused it
    /// because another writer changed the cart first).
    pub retries: u32,
    /// Switchyard's `seq` (for `min_seq`); the peers' own position of the event where they have one.
    pub seq: u64,
}

/// How a command ended.
#[derive(Debug)]
pub enum Outcome {
    Done(Ack),
    /// Refused by the cart's rules (`not_found`, `conflict`, `invalid`).
    Refused(String),
}

impl Outcome {
    /// The ack of a command that must succeed.
    ///
    /// # Errors
    /// It was refused.
    pub fn done(self) -> anyhow::Result<Ack> {
        match self {
            Self::Done(a) => Ok(a),
            Self::Refused(e) => anyhow::bail!("refused: {e}"),
        }
    }
}

/// An order as the write side priced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub lines: usize,
    pub total_cents: i64,
}

/// A cart store: Switchyard (through NATS) or a peer framework (in-process).
#[async_trait]
pub trait CartStore: Send + Sync {
    fn name(&self) -> &'static str;
    /// Runs one command; retries the framework's concurrency conflicts as its documentation tells
    /// a caller to, and counts them.
    async fn execute(&self, cmd: &Cmd) -> anyhow::Result<Outcome>;
    /// The cart as the read model has it now: (item, count) in cart order. `after` is the ack of
    /// the command the caller waits for (Switchyard's query takes it as `min_seq`).
    async fn read(&self, customer: &str, after: Option<Ack>) -> anyhow::Result<Vec<(String, i64)>>;
    /// The last order of `customer` as stored on the write side (for checking, not timed).
    async fn last_order(&self, customer: &str) -> anyhow::Result<Option<Order>>;
}

/// Switchyard's shop, driven through NATS as any client does.
pub struct Switchyard {
    pub client: e2e::Client,
}

#[async_trait]
impl CartStore for Switchyard {
    fn name(&self) -> &'static str {
        "Switchyard"
    }

    async fn execute(&self, cmd: &Cmd) -> anyhow::Result<Outcome> {
        let (subject, body) = cmd.to_wire();
        let reply = self.client.request(subject, &body).await?;
        if let Some(code) = reply.code() {
            return Ok(Outcome::Refused(format!("{code}: {}", reply.body)));
        }
        Ok(Outcome::Done(Ack {
            retries: 0,
            seq: reply.body["seq"].as_u64().unwrap_or(0),
        }))
    }

    async fn read(&self, customer: &str, after: Option<Ack>) -> anyhow::Result<Vec<(String, i64)>> {
        let body = match after {
            Some(a) => json!({"customer_id": customer, "min_seq": a.seq}),
            None => json!({"customer_id": customer}),
        };
        let reply = self.client.request("shop.query.cart", &body).await?;
        if let Some(code) = reply.code() {
            anyhow::bail!("shop.query.cart: {code}: {}", reply.body);
        }
        Ok(reply.body["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        (
                            i["item_id"].as_str().unwrap_or_default().to_string(),
                            i["item_count"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn last_order(&self, _customer: &str) -> anyhow::Result<Option<Order>> {
        // Switchyard's checkout replies with the order; the measurements read it from there.
        Ok(None)
    }
}

impl Switchyard {
    /// Checkout, returning the order of the reply.
    ///
    /// # Errors
    /// No reply or refused.
    pub async fn checkout(&self, customer: &str) -> anyhow::Result<Order> {
        let reply = self
            .client
            .request("shop.cmd.checkout", &json!({"customer_id": customer}))
            .await?;
        if let Some(code) = reply.code() {
            anyhow::bail!("shop.cmd.checkout: {code}: {}", reply.body);
        }
        let v = reply.body;
        Ok(Order {
            lines: v["items"].as_array().map_or(0, Vec::len),
            total_cents: (v["total"].as_f64().unwrap_or(-1.0) * 100.0).round() as i64,
        })
    }
}

/// Whether a framework's error is its optimistic-concurrency refusal, by PostgreSQL's code
/// (`40001` serialization failure, `40P01` deadlock, `23505` unique violation).
#[must_use]
pub fn is_pg_conflict(e: &sqlx08::Error) -> bool {
    matches!(e, sqlx08::Error::Database(d) if matches!(d.code().as_deref(), Some("40001" | "40P01" | "23505")))
}

/// Most attempts of one command before the client gives up on it (reported as failed, not lost).
pub const MAX_ATTEMPTS: u32 = 100_000;
