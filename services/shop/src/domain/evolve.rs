//! `evolve`: folding an event into the cart (`Aggregate::apply`; total, an event is a fact).

use super::{Cart, Event, Line};

impl runtime::store::Aggregate for Cart {
    type Event = Event;

    fn apply(&mut self, event: &Event) {
        match event {
            Event::ItemAdded {
                item_id,
                item_count,
                offered_price,
                special_sale,
                sale_expiration,
                ..
            } => {
                if let Some(l) = self.lines.iter_mut().find(|l| &l.item_id == item_id) {
                    l.count += item_count;
                    l.offered = *offered_price;
                    l.sale = *special_sale;
                    l.sale_expiration = *sale_expiration;
                } else {
                    self.lines.push(Line {
                        item_id: item_id.clone(),
                        count: *item_count,
                        offered: *offered_price,
                        sale: *special_sale,
                        sale_expiration: *sale_expiration,
                    });
                }
            }
            Event::ItemCountChanged {
                item_id, new_count, ..
            } => {
                if let Some(l) = self.lines.iter_mut().find(|l| &l.item_id == item_id) {
                    l.count = *new_count;
                }
            }
            Event::ItemRemoved { item_id, .. } => self.lines.retain(|l| &l.item_id != item_id),
            Event::CartCheckedOut { .. } => self.lines.clear(),
        }
    }
}
