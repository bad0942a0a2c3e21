//! The DHT read model: each cart is the value of the key `customer_id`, sharded by `hash_key`.
//!
//! A batch loads the carts it touches in one query, folds the events in memory with the same
//! `Aggregate::apply` the command side uses, and writes them back with one UNNEST upsert and one
//! delete (checked-out carts leave the DHT).

use crate::domain::{hash_key, shard_of, Cart, Event, Line, Money};
use runtime::projector::Projection;
use runtime::store::{Aggregate, Stored};
use sqlx::types::Json;
use sqlx::PgConnection;
use std::collections::HashMap;

/// Projection `shop_dht`.
pub struct DhtProjection {
    pub shards: u32,
}

fn from_wire(c: schemas::shop::Cart) -> Cart {
    Cart {
        lines: c
            .items
            .into_iter()
            .map(|i| Line {
                item_id: i.item_id,
                count: i.item_count,
                offered: Money((i.offered_price * 100.0).round() as i64),
                sale: i.special_sale.map(|s| Money((s * 100.0).round() as i64)),
                sale_expiration: i.sale_expiration,
            })
            .collect(),
    }
}

impl Projection for DhtProjection {
    type Event = Event;
    const NAME: &'static str = "shop_dht";

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[Stored<Event>],
    ) -> Result<(), sqlx::Error> {
        let keys: Vec<String> = {
            let mut k: Vec<String> = events
                .iter()
                .map(|e| e.event.customer_id().to_string())
                .collect();
            k.sort();
            k.dedup();
            k
        };
        let rows: Vec<(String, Json<schemas::shop::Cart>)> =
            sqlx::query_as("SELECT key, value FROM shop.dht WHERE key = ANY($1)")
                .bind(&keys)
                .fetch_all(&mut *tx)
                .await?;
        // key -> (cart, present after the batch, last seq)
        let mut carts: HashMap<String, (Cart, bool, u64)> = rows
            .into_iter()
            .map(|(k, v)| (k, (from_wire(v.0), true, 0)))
            .collect();
        for e in events {
            let entry = carts
                .entry(e.event.customer_id().to_string())
                .or_insert_with(|| (Cart::default(), false, 0));
            entry.0.apply(&e.event);
            entry.1 = !matches!(e.event, Event::CartCheckedOut { .. });
            entry.2 = e.seq;
        }
        let (mut k, mut h, mut s, mut v, mut q) = (vec![], vec![], vec![], vec![], vec![]);
        let mut gone = vec![];
        for (key, (cart, present, seq)) in carts {
            if seq == 0 {
                continue; // loaded but untouched
            }
            if !present {
                gone.push(key);
                continue;
            }
            let hk = hash_key(&key);
            let value = Json(crate::wire::cart(&key, &cart, seq));
            k.push(key);
            h.push(hk as i64);
            s.push(shard_of(hk, self.shards) as i32);
            v.push(value);
            q.push(seq as i64);
        }
        if !k.is_empty() {
            sqlx::query(
                "INSERT INTO shop.dht (key, hash_key, shard, value, seq) \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::int[], $4::jsonb[], $5::bigint[]) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, seq = EXCLUDED.seq, shard = EXCLUDED.shard",
            )
            .bind(&k)
            .bind(&h)
            .bind(&s)
            .bind(&v)
            .bind(&q)
            .execute(&mut *tx)
            .await?;
        }
        if !gone.is_empty() {
            sqlx::query("DELETE FROM shop.dht WHERE key = ANY($1)")
                .bind(&gone)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("TRUNCATE shop.dht").execute(&mut *tx).await?;
        Ok(())
    }
}
