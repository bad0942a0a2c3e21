//! The subject catalogue: every subject of the contract with its kind and payload schemas.
//! `gen-schemas` turns it into `schemas/asyncapi.json` and `schemas/json/*.schema.json`.

use schemars::Schema;

/// What a subject is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Request-reply that may append an event.
    Command,
    /// Request-reply that reads a read model.
    Query,
    /// JetStream event subject (one per aggregate).
    Event,
    /// Plain publish for dashboards.
    Live,
}

impl Kind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::Query => "query",
            Kind::Event => "event",
            Kind::Live => "live",
        }
    }
}

/// One subject of the contract.
pub struct SubjectDoc {
    /// The subject, with `{placeholders}` for encoded id tokens.
    pub subject: &'static str,
    pub kind: Kind,
    pub summary: &'static str,
    /// Name and schema of the request (or published message).
    pub request: (&'static str, Schema),
    /// Name and schema of the reply, for request-reply subjects.
    pub reply: Option<(&'static str, Schema)>,
}

/// Builds a [`SubjectDoc`]: `doc!(subject, Kind, "summary", Request => Reply)`.
#[macro_export]
macro_rules! doc {
    ($subject:expr, $kind:expr, $summary:expr, $req:ty) => {
        $crate::catalogue::SubjectDoc {
            subject: $subject,
            kind: $kind,
            summary: $summary,
            request: (stringify!($req), schemars::schema_for!($req)),
            reply: None,
        }
    };
    ($subject:expr, $kind:expr, $summary:expr, $req:ty => $rep:ty) => {
        $crate::catalogue::SubjectDoc {
            subject: $subject,
            kind: $kind,
            summary: $summary,
            request: (stringify!($req), schemars::schema_for!($req)),
            reply: Some((stringify!($rep), schemars::schema_for!($rep))),
        }
    };
}

/// Every documented subject.
#[must_use]
pub fn all() -> Vec<SubjectDoc> {
    use crate::{shop::*, sys::*, ErrorBody, MinSeq};
    use Kind::*;
    let mut all = vec![
        doc!("shop.cmd.add-item", Command, "Add units of an item to a cart (adds to the count, takes the new prices).", AddItem => Cart),
        doc!("shop.cmd.update-item", Command, "Set an item's count; 0 removes it; unknown item is not_found.", UpdateItem => Cart),
        doc!("shop.cmd.remove-item", Command, "Remove an item; unknown item is not_found.", RemoveItem => Cart),
        doc!("shop.cmd.checkout", Command, "Check the cart out; empty cart is conflict; the cart is then empty.", Checkout => CheckoutReply),
        doc!("shop.query.cart", Query, "The cart (an unknown customer has an empty cart).", CartQuery => Cart),
        doc!("shop.query.dht-get", Query, "One DHT entry with its hash_key and shard.", DhtGet => DhtGetReply),
        doc!("shop.query.dht-stats", Query, "Shard count and keys per shard.", DhtStats => DhtStatsReply),
        doc!("shop.query.shard-carts", Query, "The carts of one shard by customer id (an addition).", ShardCarts => ShardCartsReply),
        doc!("shop.events.cart.{customer_id}", Event, "Cart events: ItemAdded, ItemCountChanged, ItemRemoved, CartCheckedOut (envelope data).", ShopEvent),
        doc!("sys.query.health", Query, "Readiness of every service and the lag of each projection.", MinSeq => Health),
        doc!("_errors", Live, "The body of every error reply (with Nats-Service-Error-Code / Nats-Service-Error headers).", ErrorBody),
    ];
    all.extend(crate::dispatch::subjects());
    all.extend(crate::engine::subjects());
    all.extend(crate::cluster::subjects());
    all.extend(crate::dfs::subjects());
    all.extend(crate::live::subjects());
    all
}

/// Every generated file, as (path relative to the `schemas/` folder, contents).
#[must_use]
pub fn render() -> Vec<(String, String)> {
    use serde_json::{json, Map, Value};
    let mut files = std::collections::BTreeMap::new();
    let mut channels = Map::new();
    for d in all() {
        let mut ch = Map::new();
        ch.insert("x-kind".into(), json!(d.kind.as_str()));
        ch.insert("description".into(), json!(d.summary));
        let (rn, rs) = &d.request;
        files.insert(format!("json/{rn}.schema.json"), rs.clone());
        ch.insert(
            "message".into(),
            json!({ "$ref": format!("json/{rn}.schema.json") }),
        );
        if let Some((pn, ps)) = &d.reply {
            files.insert(format!("json/{pn}.schema.json"), ps.clone());
            ch.insert(
                "x-reply".into(),
                json!({ "$ref": format!("json/{pn}.schema.json") }),
            );
        }
        channels.insert(d.subject.to_string(), Value::Object(ch));
    }
    let doc = json!({
        "asyncapi": "2.6.0",
        "info": {
            "title": "Switchyard",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Subjects of the Switchyard control plane. Ids in subjects are encoded as one token: ASCII letters, digits, '-' and '_' stay; every other UTF-8 byte becomes %XX (upper-case hex). Errors: {\"error\": {\"code\", \"message\"}} with headers Nats-Service-Error-Code and Nats-Service-Error. Request bodies are JSON (or postcard with Content-Type: application/postcard); command bodies are limited to 1 MiB (payload_too_large)."
        },
        "defaultContentType": "application/json",
        "channels": Value::Object(channels),
    });
    let mut out: Vec<(String, String)> = files
        .into_iter()
        .map(|(k, v)| (k, pretty(&serde_json::to_value(v).unwrap_or_default())))
        .collect();
    out.push(("asyncapi.json".into(), pretty(&doc)));
    out
}

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    /// Two different payloads never share one schema file name.
    #[test]
    fn schema_names_are_unique() {
        let mut seen: std::collections::BTreeMap<&str, String> = Default::default();
        for d in super::all() {
            let mut pairs = vec![(d.request.0, &d.request.1)];
            if let Some((n, sch)) = &d.reply {
                pairs.push((n, sch));
            }
            for (name, schema) in pairs {
                let text = serde_json::to_string(schema).unwrap_or_default();
                if let Some(prev) = seen.insert(name, text.clone()) {
                    assert_eq!(prev, text, "two different payloads are both named {name}");
                }
            }
        }
    }

    /// The checked-in files are exactly what the types generate.
    #[test]
    fn checked_in_schemas_are_current() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for (name, body) in super::render() {
            let on_disk = std::fs::read_to_string(root.join(&name)).unwrap_or_default();
            assert!(
                on_disk == body,
                "schemas/{name} is stale: run `cargo run -p schemas --bin gen-schemas`"
            );
        }
    }
}
