//! Explicit conversions between the domain and the wire types of `schemas::shop`.

use crate::domain::{Cart, Event};
use schemas::shop as w;

/// The wire cart of a domain cart.
#[must_use]
pub fn cart(customer_id: &str, cart: &Cart, seq: u64) -> w::Cart {
    w::Cart {
        customer_id: customer_id.to_string(),
        items: cart
            .lines
            .iter()
            .map(|l| w::CartItem {
                item_id: l.item_id.clone(),
                item_count: l.count,
                offered_price: l.offered.to_f64(),
                special_sale: l.sale.map(|m| m.to_f64()),
                sale_expiration: l.sale_expiration,
            })
            .collect(),
        seq,
    }
}

/// The checkout reply from its event.
#[must_use]
pub fn checkout(event: &Event, seq: u64) -> Option<w::CheckoutReply> {
    match event {
        Event::CartCheckedOut {
            customer_id,
            order_id,
            items,
            total,
        } => Some(w::CheckoutReply {
            order_id: order_id.clone(),
            customer_id: customer_id.clone(),
            items: items
                .iter()
                .map(|l| w::OrderLine {
                    item_id: l.item_id.clone(),
                    item_count: l.item_count,
                    unit_price: l.unit_price.to_f64(),
                })
                .collect(),
            total: total.to_f64(),
            seq,
        }),
        _ => None,
    }
}
