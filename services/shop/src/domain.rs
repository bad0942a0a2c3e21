//! The cart aggregate: commands, events, state, `decide` and `evolve` (`Aggregate::apply`).
//!
//! Pure: no I/O, time and new ids are passed in. Money is integer minor units (cents) inside and a
//! decimal number on the wire.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest count of one item in a cart.
pub const MAX_COUNT: i64 = 1_000_000_000;
/// Largest price, in cents (one hundred billion units).
pub const MAX_CENTS: i64 = 10_000_000_000_000;

/// An amount of money in cents; a decimal number with at most two places on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Money(pub i64);

impl Money {
    /// Parses a wire price.
    ///
    /// # Errors
    /// Negative, not finite, too large, or more than two decimal places; the message names `field`.
    pub fn parse(field: &str, value: f64) -> Result<Self, ShopError> {
        if !value.is_finite() || value < 0.0 {
            return Err(ShopError::Invalid(format!(
                "`{field}` must be a number >= 0, got {value}"
            )));
        }
        let cents = value * 100.0;
        if cents > MAX_CENTS as f64 {
            return Err(ShopError::Invalid(format!(
                "`{field}` is too large (at most {})",
                MAX_CENTS / 100
            )));
        }
        let rounded = cents.round();
        if (cents - rounded).abs() > 1e-6 * rounded.max(1.0) {
            return Err(ShopError::Invalid(format!(
                "`{field}` has more than two decimal places: {value}"
            )));
        }
        Ok(Self(rounded as i64))
    }

    /// The decimal value for the wire.
    #[must_use]
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.to_f64())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Ok(Self((v * 100.0).round() as i64))
    }
}

/// A user error of the shop context (`Invalid`, `NotFound`, `Conflict`).
pub type ShopError = runtime::DomainError;

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
    fn line(&self, item_id: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.item_id == item_id)
    }
}

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

/// The contract's `hash_key`: SHA-1 of the key's UTF-8 bytes read as a big-endian integer, modulo 2^63
/// (that is, its low 63 bits).
#[must_use]
pub fn hash_key(key: &str) -> u64 {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(key.as_bytes());
    let mut low = [0u8; 8];
    low.copy_from_slice(&digest[12..20]);
    u64::from_be_bytes(low) & (u64::MAX >> 1)
}

/// The shard that holds a key: `hash_key(key) % shards`.
#[must_use]
pub fn shard_of(hash_key: u64, shards: u32) -> u32 {
    (hash_key % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use runtime::store::Aggregate;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }
    fn oid() -> uuid::Uuid {
        uuid::Uuid::nil()
    }
    fn given(events: &[Event]) -> Cart {
        let mut c = Cart::default();
        for e in events {
            c.apply(e);
        }
        c
    }
    fn added(item: &str, count: i64, price: i64) -> Event {
        Event::ItemAdded {
            customer_id: "c".into(),
            item_id: item.into(),
            item_count: count,
            offered_price: Money(price),
            special_sale: None,
            sale_expiration: None,
        }
    }
    fn add(item: &str, count: i64, price: f64) -> Command {
        Command::add_item(&schemas::shop::AddItem {
            customer_id: "c".into(),
            item_id: item.into(),
            offered_price: price,
            item_count: count,
            special_sale: None,
            sale_expiration: None,
        })
        .unwrap()
    }

    #[test]
    fn add_item_to_empty_cart_appends_item_added() {
        let e = decide(&given(&[]), &add("apple", 2, 1.25), now(), oid()).unwrap();
        assert_eq!(e, added("apple", 2, 125));
    }

    #[test]
    fn adding_an_item_again_adds_to_its_count_and_takes_new_prices() {
        let mut c = given(&[added("apple", 2, 125)]);
        let e = decide(&c, &add("apple", 3, 2.0), now(), oid()).unwrap();
        c.apply(&e);
        assert_eq!(c.lines.len(), 1);
        assert_eq!(c.lines[0].count, 5);
        assert_eq!(c.lines[0].offered, Money(200));
    }

    #[test]
    fn add_item_rejects_bad_values() {
        let w = |count: i64, price: f64, sale: Option<f64>| schemas::shop::AddItem {
            customer_id: "c".into(),
            item_id: "i".into(),
            offered_price: price,
            item_count: count,
            special_sale: sale,
            sale_expiration: None,
        };
        for bad in [
            w(0, 1.0, None),
            w(-1, 1.0, None),
            w(1, -0.01, None),
            w(1, 1.001, None),
            w(1, f64::NAN, None),
            w(1, 1.0, Some(-1.0)),
        ] {
            assert!(
                matches!(Command::add_item(&bad), Err(ShopError::Invalid(_))),
                "{bad:?}"
            );
        }
        let mut empty_id = w(1, 1.0, None);
        empty_id.customer_id = String::new();
        assert!(matches!(
            Command::add_item(&empty_id),
            Err(ShopError::Invalid(_))
        ));
    }

    #[test]
    fn add_item_refuses_a_count_overflow() {
        let c = given(&[added("apple", MAX_COUNT, 1)]);
        assert!(matches!(
            decide(&c, &add("apple", 1, 1.0), now(), oid()),
            Err(ShopError::Invalid(_))
        ));
    }

    #[test]
    fn update_item_sets_the_count_and_zero_removes() {
        let c = given(&[added("apple", 2, 125)]);
        let upd = |n| Command::UpdateItem {
            customer_id: "c".into(),
            item_id: "apple".into(),
            new_count: n,
        };
        assert_eq!(
            decide(&c, &upd(7), now(), oid()).unwrap(),
            Event::ItemCountChanged {
                customer_id: "c".into(),
                item_id: "apple".into(),
                new_count: 7
            }
        );
        assert_eq!(
            decide(&c, &upd(0), now(), oid()).unwrap(),
            Event::ItemRemoved {
                customer_id: "c".into(),
                item_id: "apple".into()
            }
        );
        let neg = schemas::shop::UpdateItem {
            customer_id: "c".into(),
            item_id: "apple".into(),
            new_count: -1,
        };
        assert!(matches!(
            Command::update_item(&neg),
            Err(ShopError::Invalid(_))
        ));
    }

    #[test]
    fn update_or_remove_of_an_unknown_item_is_not_found() {
        let c = given(&[added("apple", 2, 125)]);
        let upd = Command::UpdateItem {
            customer_id: "c".into(),
            item_id: "pear".into(),
            new_count: 1,
        };
        let rm = Command::RemoveItem {
            customer_id: "c".into(),
            item_id: "pear".into(),
        };
        assert!(matches!(
            decide(&c, &upd, now(), oid()),
            Err(ShopError::NotFound(_))
        ));
        assert!(matches!(
            decide(&c, &rm, now(), oid()),
            Err(ShopError::NotFound(_))
        ));
    }

    #[test]
    fn remove_item_removes_it() {
        let mut c = given(&[added("apple", 2, 125), added("pear", 1, 50)]);
        let e = decide(
            &c,
            &Command::RemoveItem {
                customer_id: "c".into(),
                item_id: "apple".into(),
            },
            now(),
            oid(),
        )
        .unwrap();
        c.apply(&e);
        assert_eq!(
            c.lines
                .iter()
                .map(|l| l.item_id.as_str())
                .collect::<Vec<_>>(),
            vec!["pear"]
        );
    }

    #[test]
    fn checkout_of_an_empty_cart_is_conflict() {
        let c = given(&[
            added("apple", 1, 1),
            Event::CartCheckedOut {
                customer_id: "c".into(),
                order_id: "o".into(),
                items: vec![],
                total: Money(0),
            },
        ]);
        assert!(matches!(
            decide(
                &c,
                &Command::Checkout {
                    customer_id: "c".into()
                },
                now(),
                oid()
            ),
            Err(ShopError::Conflict(_))
        ));
    }

    #[test]
    fn checkout_prices_running_sales_and_empties_the_cart() {
        let sale = |item: &str, until: Option<DateTime<Utc>>| Event::ItemAdded {
            customer_id: "c".into(),
            item_id: item.into(),
            item_count: 2,
            offered_price: Money(1000),
            special_sale: Some(Money(700)),
            sale_expiration: until,
        };
        let mut c = given(&[
            sale("running", Some(now() + chrono::Duration::hours(1))),
            sale("expired", Some(now() - chrono::Duration::seconds(1))),
            sale("forever", None),
            added("plain", 3, 250),
        ]);
        let e = decide(
            &c,
            &Command::Checkout {
                customer_id: "c".into(),
            },
            now(),
            oid(),
        )
        .unwrap();
        let Event::CartCheckedOut { items, total, .. } = &e else {
            panic!("{e:?}")
        };
        let prices: Vec<i64> = items.iter().map(|l| l.unit_price.0).collect();
        assert_eq!(prices, vec![700, 1000, 700, 250]);
        assert_eq!(*total, Money(2 * 700 + 2 * 1000 + 2 * 700 + 3 * 250));
        c.apply(&e);
        assert!(c.lines.is_empty());
    }

    #[test]
    fn hash_key_is_sha1_big_endian_mod_2_63() {
        // SHA-1("jea-265") computed independently; check against the full-width arithmetic.
        use sha1::{Digest, Sha1};
        for key in ["jea-265", "", "jane.doe@example.com", "ünï"] {
            let d = Sha1::digest(key.as_bytes());
            let mut acc: u128 = 0; // (x mod 2^63) folded byte by byte
            for b in d.iter() {
                acc = ((acc << 8) | u128::from(*b)) % (1u128 << 63);
            }
            assert_eq!(u128::from(hash_key(key)), acc, "{key}");
        }
        assert_eq!(shard_of(10, 3), 1);
        assert_eq!(shard_of(10, 1), 0);
    }

    #[test]
    fn events_serialise_as_the_contract_schema() {
        let e = added("apple", 2, 125);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "ItemAdded");
        assert_eq!(v["data"]["offered_price"], 1.25);
        let wire: schemas::shop::ShopEvent = serde_json::from_value(v).unwrap();
        assert!(matches!(wire, schemas::shop::ShopEvent::ItemAdded(_)));
    }
}
