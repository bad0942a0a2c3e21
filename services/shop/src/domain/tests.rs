//! The cart's rules, given / when / then (`runtime::testing`).

use super::*;
use chrono::{DateTime, TimeZone, Utc};
use runtime::testing::given;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}
fn oid() -> uuid::Uuid {
    uuid::Uuid::nil()
}
/// Decides `cmd` at [`now`] with order id [`oid`].
fn run(cmd: &Command) -> impl FnOnce(&Cart) -> Result<Event, ShopError> + '_ {
    move |cart| decide(cart, cmd, now(), oid())
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
fn update(item: &str, new_count: i64) -> Command {
    Command::UpdateItem {
        customer_id: "c".into(),
        item_id: item.into(),
        new_count,
    }
}
fn remove(item: &str) -> Command {
    Command::RemoveItem {
        customer_id: "c".into(),
        item_id: item.into(),
    }
}
fn checkout() -> Command {
    Command::Checkout {
        customer_id: "c".into(),
    }
}

#[test]
fn add_item_to_empty_cart_appends_item_added() {
    given::<Cart>([])
        .when(run(&add("apple", 2, 1.25)))
        .then(added("apple", 2, 125));
}

#[test]
fn adding_an_item_again_adds_to_its_count_and_takes_new_prices() {
    let c = given::<Cart>([added("apple", 2, 125)])
        .when(run(&add("apple", 3, 2.0)))
        .then(added("apple", 3, 200));
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
    assert_eq!(
        Command::add_item(&w(0, 1.0, None)),
        Err(ShopError::Invalid(format!(
            "`item_count` must be an integer from 1 to {MAX_COUNT}, got 0"
        )))
    );
    let mut empty_id = w(1, 1.0, None);
    empty_id.customer_id = String::new();
    assert!(matches!(
        Command::add_item(&empty_id),
        Err(ShopError::Invalid(_))
    ));
}

#[test]
fn add_item_refuses_a_count_overflow() {
    given::<Cart>([added("apple", MAX_COUNT, 1)])
        .when(run(&add("apple", 1, 1.0)))
        .then_err(ShopError::Invalid(format!(
            "the cart would hold {} of \"apple\"; at most {MAX_COUNT}",
            MAX_COUNT + 1
        )));
}

#[test]
fn update_item_sets_the_count_and_zero_removes() {
    let cart = [added("apple", 2, 125)];
    given::<Cart>(cart.clone())
        .when(run(&update("apple", 7)))
        .then(Event::ItemCountChanged {
            customer_id: "c".into(),
            item_id: "apple".into(),
            new_count: 7,
        });
    given::<Cart>(cart)
        .when(run(&update("apple", 0)))
        .then(Event::ItemRemoved {
            customer_id: "c".into(),
            item_id: "apple".into(),
        });
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
    let not_found = || ShopError::NotFound("item \"pear\" is not in the cart of \"c\"".into());
    given::<Cart>([added("apple", 2, 125)])
        .when(run(&update("pear", 1)))
        .then_err(not_found());
    given::<Cart>([added("apple", 2, 125)])
        .when(run(&remove("pear")))
        .then_err(not_found());
}

#[test]
fn remove_item_removes_it() {
    let c = given::<Cart>([added("apple", 2, 125), added("pear", 1, 50)])
        .when(run(&remove("apple")))
        .then(Event::ItemRemoved {
            customer_id: "c".into(),
            item_id: "apple".into(),
        });
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
    given::<Cart>([
        added("apple", 1, 1),
        Event::CartCheckedOut {
            customer_id: "c".into(),
            order_id: "o".into(),
            items: vec![],
            total: Money(0),
        },
    ])
    .when(run(&checkout()))
    .then_err(ShopError::Conflict(
        "the cart of \"c\" is empty: add items before checking out".into(),
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
    let line = |item: &str, item_count: i64, cents: i64| OrderLine {
        item_id: item.into(),
        item_count,
        unit_price: Money(cents),
    };
    let c = given::<Cart>([
        sale("running", Some(now() + chrono::Duration::hours(1))),
        sale("expired", Some(now() - chrono::Duration::seconds(1))),
        sale("forever", None),
        added("plain", 3, 250),
    ])
    .when(run(&checkout()))
    .then(Event::CartCheckedOut {
        customer_id: "c".into(),
        order_id: oid().to_string(),
        items: vec![
            line("running", 2, 700),
            line("expired", 2, 1000),
            line("forever", 2, 700),
            line("plain", 3, 250),
        ],
        total: Money(2 * 700 + 2 * 1000 + 2 * 700 + 3 * 250),
    });
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

/// Domain events and the wire's `ShopEvent` mirror each other: every variant round-trips through
/// the wire type unchanged.
#[test]
fn every_domain_event_is_the_wire_event() {
    let events = [
        Event::ItemAdded {
            customer_id: "c".into(),
            item_id: "apple".into(),
            item_count: 2,
            offered_price: Money(125),
            special_sale: Some(Money(99)),
            sale_expiration: Some(now()),
        },
        added("pear", 1, 50),
        update("apple", 3).into_event(),
        remove("apple").into_event(),
        Event::CartCheckedOut {
            customer_id: "c".into(),
            order_id: oid().to_string(),
            items: vec![OrderLine {
                item_id: "pear".into(),
                item_count: 1,
                unit_price: Money(50),
            }],
            total: Money(50),
        },
    ];
    for e in events {
        let v = serde_json::to_value(&e).unwrap();
        let wire: schemas::shop::ShopEvent = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(wire).unwrap(), v, "{e:?}");
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), e);
    }
}

impl Command {
    /// The event `decide` makes of an update or removal on a cart holding the item.
    fn into_event(self) -> Event {
        decide(
            &runtime::testing::given::<Cart>([added("apple", 1, 1)])
                .state()
                .clone(),
            &self,
            now(),
            oid(),
        )
        .unwrap()
    }
}
