//! `decide`: what a command does to a cart (one event, or a refusal).

use super::{Cart, Command, Event, Money, OrderLine, ShopError, MAX_COUNT};
use chrono::{DateTime, Utc};

/// Decides what a command does to a cart.
///
/// # Errors
/// `NotFound` for an unknown item, `Conflict` for checking out an empty cart, `Invalid` when a count
/// would overflow.
pub fn decide(
    cart: &Cart,
    cmd: &Command,
    now: DateTime<Utc>,
    order_id: uuid::Uuid,
) -> Result<Event, ShopError> {
    match cmd {
        Command::AddItem {
            customer_id,
            item_id,
            offered,
            count,
            sale,
            sale_expiration,
        } => {
            let existing = cart.line(item_id).map_or(0, |l| l.count);
            if existing + count > MAX_COUNT {
                return Err(ShopError::Invalid(format!(
                    "the cart would hold {} of {item_id:?}; at most {MAX_COUNT}",
                    existing + count
                )));
            }
            Ok(Event::ItemAdded {
                customer_id: customer_id.clone(),
                item_id: item_id.clone(),
                item_count: *count,
                offered_price: *offered,
                special_sale: *sale,
                sale_expiration: *sale_expiration,
            })
        }
        Command::UpdateItem {
            customer_id,
            item_id,
            new_count,
        } => {
            if cart.line(item_id).is_none() {
                return Err(ShopError::NotFound(format!(
                    "item {item_id:?} is not in the cart of {customer_id:?}"
                )));
            }
            if *new_count == 0 {
                Ok(Event::ItemRemoved {
                    customer_id: customer_id.clone(),
                    item_id: item_id.clone(),
                })
            } else {
                Ok(Event::ItemCountChanged {
                    customer_id: customer_id.clone(),
                    item_id: item_id.clone(),
                    new_count: *new_count,
                })
            }
        }
        Command::RemoveItem {
            customer_id,
            item_id,
        } => {
            if cart.line(item_id).is_none() {
                return Err(ShopError::NotFound(format!(
                    "item {item_id:?} is not in the cart of {customer_id:?}"
                )));
            }
            Ok(Event::ItemRemoved {
                customer_id: customer_id.clone(),
                item_id: item_id.clone(),
            })
        }
        Command::Checkout { customer_id } => {
            if cart.lines.is_empty() {
                return Err(ShopError::Conflict(format!(
                    "the cart of {customer_id:?} is empty: add items before checking out"
                )));
            }
            let items: Vec<OrderLine> = cart
                .lines
                .iter()
                .map(|l| OrderLine {
                    item_id: l.item_id.clone(),
                    item_count: l.count,
                    unit_price: l.unit_price(now),
                })
                .collect();
            let total = Money(items.iter().map(|l| l.unit_price.0 * l.item_count).sum());
            Ok(Event::CartCheckedOut {
                customer_id: customer_id.clone(),
                order_id: order_id.to_string(),
                items,
                total,
            })
        }
    }
}
