//! What happened to a cart (the contract's events, section 3).

use super::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One line of an order, priced at checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub item_id: String,
    pub item_count: i64,
    pub unit_price: Money,
}

/// What happened to a cart. JSON: `{"type": "ItemAdded", "data": {...}}` (contract section 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    ItemAdded {
        customer_id: String,
        item_id: String,
        item_count: i64,
        offered_price: Money,
        special_sale: Option<Money>,
        sale_expiration: Option<DateTime<Utc>>,
    },
    ItemCountChanged {
        customer_id: String,
        item_id: String,
        new_count: i64,
    },
    ItemRemoved {
        customer_id: String,
        item_id: String,
    },
    CartCheckedOut {
        customer_id: String,
        order_id: String,
        items: Vec<OrderLine>,
        total: Money,
    },
}

impl Event {
    /// The cart the event belongs to.
    #[must_use]
    pub fn customer_id(&self) -> &str {
        match self {
            Self::ItemAdded { customer_id, .. }
            | Self::ItemCountChanged { customer_id, .. }
            | Self::ItemRemoved { customer_id, .. }
            | Self::CartCheckedOut { customer_id, .. } => customer_id,
        }
    }
}
