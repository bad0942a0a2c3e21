//! Contract section 3: shopping carts on a sharded DHT.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `shop.cmd.add-item`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItem {
    pub customer_id: String,
    pub item_id: String,
    /// Unit price, a decimal with at most 2 places, >= 0.
    pub offered_price: f64,
    /// Units to add, >= 1.
    pub item_count: i64,
    /// Sale unit price valid until `sale_expiration` (for ever when that is null).
    #[serde(default)]
    pub special_sale: Option<f64>,
    #[serde(default)]
    pub sale_expiration: Option<DateTime<Utc>>,
}

/// `shop.cmd.update-item`: `new_count` 0 removes the item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateItem {
    pub customer_id: String,
    pub item_id: String,
    pub new_count: i64,
}

/// `shop.cmd.remove-item`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveItem {
    pub customer_id: String,
    pub item_id: String,
}

/// `shop.cmd.checkout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkout {
    pub customer_id: String,
}

/// One line of a cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CartItem {
    pub item_id: String,
    pub item_count: i64,
    pub offered_price: f64,
    pub special_sale: Option<f64>,
    pub sale_expiration: Option<DateTime<Utc>>,
}

/// The cart: reply of add/update/remove and of `shop.query.cart` (without `seq` there unless known).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cart {
    pub customer_id: String,
    pub items: Vec<CartItem>,
    /// Stream sequence of the last event this cart reflects (0: none).
    pub seq: u64,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    pub item_id: String,
    pub item_count: i64,
    pub unit_price: f64,
}

/// Reply of `shop.cmd.checkout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckoutReply {
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<OrderLine>,
    pub total: f64,
    pub seq: u64,
}

/// `shop.query.cart`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CartQuery {
    pub customer_id: String,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// `shop.query.dht-get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DhtGet {
    pub key: String,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// Reply of `shop.query.dht-get`. `value` is the stored cart as JSON text in postcard bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DhtGetReply {
    pub key: String,
    /// SHA-1 of the key's UTF-8 bytes, big-endian, modulo 2^63.
    pub hash_key: u64,
    /// `hash_key % shards`.
    pub shard: u32,
    pub value: Option<Cart>,
}

/// `shop.query.dht-stats` (the body may be empty or `{}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DhtStats {
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// Reply of `shop.query.dht-stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DhtStatsReply {
    pub shards: u32,
    pub keys_per_shard: Vec<u64>,
}

/// `shop.query.shard-carts` (an addition): the carts one shard holds, by customer id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShardCarts {
    /// `0..shards`.
    pub shard: u32,
    /// At most this many carts (1..=10000, default 1000), in customer id order.
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub min_seq: Option<u64>,
}

/// Reply of `shop.query.shard-carts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShardCartsReply {
    pub shard: u32,
    pub carts: Vec<ShardCart>,
}

/// One cart of a shard: its key, `hash_key` and the sequence of its last event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShardCart {
    pub customer_id: String,
    pub hash_key: u64,
    pub seq: u64,
}

/// Event data on `shop.events.cart.<customer>`, tagged by the envelope's `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum ShopEvent {
    ItemAdded(ItemAdded),
    ItemCountChanged(ItemCountChanged),
    ItemRemoved(ItemRemoved),
    CartCheckedOut(CartCheckedOut),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ItemAdded {
    pub customer_id: String,
    pub item_id: String,
    /// Units added by this event (the cart's count is the sum).
    pub item_count: i64,
    pub offered_price: f64,
    pub special_sale: Option<f64>,
    pub sale_expiration: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ItemCountChanged {
    pub customer_id: String,
    pub item_id: String,
    pub new_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ItemRemoved {
    pub customer_id: String,
    pub item_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CartCheckedOut {
    pub customer_id: String,
    pub order_id: String,
    pub items: Vec<OrderLine>,
    pub total: f64,
}

/// HTTP body of `POST /item/{customerId}/{itemId}` (camelCase, as the original service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpAddItem {
    pub offered_price: f64,
    #[serde(alias = "unitCount")]
    pub item_count: i64,
    #[serde(default)]
    pub special_sale: Option<f64>,
    #[serde(default)]
    pub sale_expiration: Option<DateTime<Utc>>,
}

/// HTTP body of `PUT /item/{customerId}/{itemId}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpUpdateItem {
    pub new_count: i64,
}
