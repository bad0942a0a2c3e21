//! The validated commands, parsed from the wire bodies.

use super::{Money, ShopError, MAX_COUNT};
use chrono::{DateTime, Utc};

/// A validated command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    AddItem {
        customer_id: String,
        item_id: String,
        offered: Money,
        count: i64,
        sale: Option<Money>,
        sale_expiration: Option<DateTime<Utc>>,
    },
    UpdateItem {
        customer_id: String,
        item_id: String,
        new_count: i64,
    },
    RemoveItem {
        customer_id: String,
        item_id: String,
    },
    Checkout {
        customer_id: String,
    },
}

fn id(field: &str, v: &str) -> Result<String, ShopError> {
    schemas::check_id(field, v).map_err(ShopError::Invalid)?;
    Ok(v.to_string())
}

impl Command {
    /// Parses `shop.cmd.add-item`.
    ///
    /// # Errors
    /// `Invalid` naming the field.
    pub fn add_item(w: &schemas::shop::AddItem) -> Result<Self, ShopError> {
        if !(1..=MAX_COUNT).contains(&w.item_count) {
            return Err(ShopError::Invalid(format!(
                "`item_count` must be an integer from 1 to {MAX_COUNT}, got {}",
                w.item_count
            )));
        }
        Ok(Self::AddItem {
            customer_id: id("customer_id", &w.customer_id)?,
            item_id: id("item_id", &w.item_id)?,
            offered: Money::parse("offered_price", w.offered_price)?,
            count: w.item_count,
            sale: w
                .special_sale
                .map(|s| Money::parse("special_sale", s))
                .transpose()?,
            // Microseconds: the precision the read model (and RFC 3339 in practice) keeps.
            sale_expiration: w
                .sale_expiration
                .map(|t| chrono::SubsecRound::trunc_subsecs(t, 6)),
        })
    }

    /// Parses `shop.cmd.update-item`.
    ///
    /// # Errors
    /// `Invalid` naming the field.
    pub fn update_item(w: &schemas::shop::UpdateItem) -> Result<Self, ShopError> {
        if !(0..=MAX_COUNT).contains(&w.new_count) {
            return Err(ShopError::Invalid(format!(
                "`new_count` must be an integer from 0 to {MAX_COUNT}, got {}",
                w.new_count
            )));
        }
        Ok(Self::UpdateItem {
            customer_id: id("customer_id", &w.customer_id)?,
            item_id: id("item_id", &w.item_id)?,
            new_count: w.new_count,
        })
    }

    /// Parses `shop.cmd.remove-item`.
    ///
    /// # Errors
    /// `Invalid` naming the field.
    pub fn remove_item(w: &schemas::shop::RemoveItem) -> Result<Self, ShopError> {
        Ok(Self::RemoveItem {
            customer_id: id("customer_id", &w.customer_id)?,
            item_id: id("item_id", &w.item_id)?,
        })
    }

    /// Parses `shop.cmd.checkout`.
    ///
    /// # Errors
    /// `Invalid` naming the field.
    pub fn checkout(w: &schemas::shop::Checkout) -> Result<Self, ShopError> {
        Ok(Self::Checkout {
            customer_id: id("customer_id", &w.customer_id)?,
        })
    }

    /// The cart the command is for.
    #[must_use]
    pub fn customer_id(&self) -> &str {
        match self {
            Self::AddItem { customer_id, .. }
            | Self::UpdateItem { customer_id, .. }
            | Self::RemoveItem { customer_id, .. }
            | Self::Checkout { customer_id } => customer_id,
        }
    }
}
