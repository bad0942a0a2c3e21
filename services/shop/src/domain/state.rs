//! The cart's state: its lines in the order they were first added.

use super::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One line of a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub item_id: String,
    pub count: i64,
    pub offered: Money,
    pub sale: Option<Money>,
    pub sale_expiration: Option<DateTime<Utc>>,
}

impl Line {
    /// The unit price at `now`: the sale price while the sale runs (for ever with no expiration).
    #[must_use]
    pub fn unit_price(&self, now: DateTime<Utc>) -> Money {
        match (self.sale, self.sale_expiration) {
            (Some(sale), None) => sale,
            (Some(sale), Some(until)) if until > now => sale,
            _ => self.offered,
        }
    }
}

/// The cart: lines in the order they were first added.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cart {
    pub lines: Vec<Line>,
}

impl Cart {
    pub(super) fn line(&self, item_id: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.item_id == item_id)
    }
}
