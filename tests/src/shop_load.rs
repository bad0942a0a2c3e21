//! Shop load for the runtime's fault and work-sharing tests: many adds, each with its own msg id
//! and retried until done, and the carts as the read model has them.

use crate::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// An add-item body: one unit of `item` at 1.00 in `customer`'s cart.
pub fn add(customer: &str, item: &str) -> Value {
    json!({"customer_id": customer, "item_id": item, "offered_price": 1.0, "item_count": 1,
           "special_sale": null, "sale_expiration": null})
}

/// Sends `n` adds (item i of cart i % carts), `par` at a time, each with its own msg id, retried
/// until done. Returns the highest seq.
pub async fn send_adds(
    c: &Client,
    prefix: &str,
    n: usize,
    carts: usize,
    par: usize,
) -> anyhow::Result<u64> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(par));
    let mut tasks = Vec::new();
    for i in 0..n {
        let c = c.clone();
        let permit = sem.clone().acquire_owned().await?;
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let _p = permit;
            let body = add(&format!("cart-{}", i % carts), &format!("{prefix}-{i}"));
            c.command_until_done(
                "shop.cmd.add-item",
                &format!("{prefix}-{i}"),
                &body,
                Duration::from_secs(60),
            )
            .await
        }));
    }
    let mut max = 0;
    for t in tasks {
        max = max.max(t.await??["seq"].as_u64().unwrap_or(0));
    }
    Ok(max)
}

/// Every cart's items as the read model has them, once it has projected `seq`.
pub async fn read_model(
    c: &Client,
    carts: usize,
    seq: u64,
) -> anyhow::Result<BTreeMap<String, Vec<(String, i64)>>> {
    let mut out = BTreeMap::new();
    for i in 0..carts {
        let id = format!("cart-{i}");
        let v = c
            .request(
                "shop.query.cart",
                &json!({"customer_id": id, "min_seq": seq}),
            )
            .await?
            .ok();
        let mut items: Vec<(String, i64)> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["item_id"].as_str().unwrap().to_string(),
                    i["item_count"].as_i64().unwrap(),
                )
            })
            .collect();
        items.sort();
        out.insert(id, items);
    }
    Ok(out)
}
