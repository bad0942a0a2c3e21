//! The PostgreSQL read model (schema `dispatch`): carts, SSDs with the dataset lookup table,
//! requests, the facility. A batch loads the documents of the aggregates it touches, folds its
//! events with the same [`Model::apply`] the dispatcher uses, and writes the documents back.

use crate::domain::{Cart, Model, Request, Ssd};
use runtime::projector::Projection;
use runtime::sqltext::{esc_all, esc_json, unesc, unesc_json};
use runtime::store::Stored;
use schemas::dispatch::DispatchEvent;
use sqlx::PgConnection;
use std::collections::BTreeSet;

/// The projection `dispatch`.
pub struct ReadModel;

#[derive(Default)]
struct Keys {
    carts: BTreeSet<String>,
    ssds: BTreeSet<String>,
    requests: BTreeSet<String>,
    facility: bool,
}

fn keys(events: &[Stored<DispatchEvent>]) -> Keys {
    let mut k = Keys::default();
    for e in events {
        match &e.event {
            DispatchEvent::FacilitySet(_) => k.facility = true,
            DispatchEvent::CartRegistered(e) => {
                k.carts.insert(e.cart_id.clone());
            }
            DispatchEvent::SsdRegistered(e) => {
                k.ssds.insert(e.ssd_id.clone());
            }
            DispatchEvent::SsdHealthChanged(e) => {
                k.ssds.insert(e.ssd_id.clone());
            }
            DispatchEvent::DatasetPut(e) => {
                k.ssds.insert(e.ssd_id.clone());
            }
            DispatchEvent::DatasetsRequested(e) => {
                k.requests.insert(e.request_id.clone());
            }
            DispatchEvent::RequestReplanned(e) => {
                k.requests.insert(e.request_id.clone());
            }
            DispatchEvent::CartReserved(e) => {
                k.carts.insert(e.cart_id.clone());
                k.requests.insert(e.request_id.clone());
            }
            DispatchEvent::CartReported(e) => {
                k.carts.insert(e.cart_id.clone());
                if let Some(r) = &e.request_id {
                    k.requests.insert(r.clone());
                }
            }
        }
    }
    k
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, sqlx::Error> {
    esc_json(v).map_err(|e| sqlx::Error::Protocol(format!("encoding a document: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, sqlx::Error> {
    unesc_json(v)
        .map_err(|e| sqlx::Error::Protocol(format!("a stored document does not decode: {e}")))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl ReadModel {
    async fn load(tx: &mut PgConnection, k: &Keys) -> Result<Model, sqlx::Error> {
        let mut m = Model::default();
        let ids: Vec<String> = esc_all(&k.carts);
        let rows: Vec<(String, serde_json::Value, i64)> =
            sqlx::query_as("SELECT cart_id, doc, seq FROM dispatch.carts WHERE cart_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
        for (id, doc, seq) in rows {
            let id = unesc(id);
            m.carts.insert(id.clone(), parse::<Cart>(doc)?);
            m.cart_seq.insert(id, seq.max(0) as u64);
        }
        let ids: Vec<String> = esc_all(&k.ssds);
        let rows: Vec<(String, serde_json::Value)> =
            sqlx::query_as("SELECT ssd_id, doc FROM dispatch.ssds WHERE ssd_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
        for (id, doc) in rows {
            m.ssds.insert(unesc(id), parse::<Ssd>(doc)?);
        }
        let ids: Vec<String> = esc_all(&k.requests);
        let rows: Vec<(String, serde_json::Value, i64)> = sqlx::query_as(
            "SELECT request_id, doc, seq FROM dispatch.requests WHERE request_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        for (id, doc, seq) in rows {
            let id = unesc(id);
            m.requests.insert(id.clone(), parse::<Request>(doc)?);
            m.request_seq.insert(id, seq.max(0) as u64);
        }
        Ok(m)
    }

    async fn save(tx: &mut PgConnection, k: &Keys, m: &Model) -> Result<(), sqlx::Error> {
        if k.facility {
            if let Some(f) = &m.facility {
                let doc = json(&serde_json::json!({"nodes": f.nodes, "edges": f.edges}))?;
                sqlx::query("INSERT INTO dispatch.facility (id, doc, seq) VALUES (TRUE, $1::jsonb, $2) ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc, seq = EXCLUDED.seq")
                    .bind(doc)
                    .bind(to_i64(m.facility_seq))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let (mut ids, mut statuses, mut docs, mut seqs) = (vec![], vec![], vec![], vec![]);
        for id in &k.carts {
            if let Some(c) = m.carts.get(id) {
                ids.push(id.clone());
                statuses.push(c.status.as_str().to_string());
                docs.push(json(c)?);
                seqs.push(to_i64(m.cart_seq.get(id).copied().unwrap_or(0)));
            }
        }
        if !ids.is_empty() {
            sqlx::query(
                "INSERT INTO dispatch.carts (cart_id, status, doc, seq) SELECT i, s, d::jsonb, q FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) AS t(i, s, d, q) \
                 ON CONFLICT (cart_id) DO UPDATE SET status = EXCLUDED.status, doc = EXCLUDED.doc, seq = EXCLUDED.seq",
            )
            .bind(esc_all(&ids))
            .bind(&statuses)
            .bind(&docs)
            .bind(&seqs)
            .execute(&mut *tx)
            .await?;
        }
        let (mut ids, mut carts, mut docs) = (vec![], vec![], vec![]);
        let (mut d_names, mut d_ssds, mut d_sizes) = (vec![], vec![], vec![]);
        for id in &k.ssds {
            if let Some(s) = m.ssds.get(id) {
                ids.push(id.clone());
                carts.push(s.cart_id.clone());
                docs.push(json(s)?);
                for (name, size) in &s.datasets {
                    d_names.push(name.clone());
                    d_ssds.push(id.clone());
                    d_sizes.push(to_i64(*size));
                }
            }
        }
        if !ids.is_empty() {
            sqlx::query(
                "INSERT INTO dispatch.ssds (ssd_id, cart_id, doc) SELECT i, c, d::jsonb FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(i, c, d) \
                 ON CONFLICT (ssd_id) DO UPDATE SET cart_id = EXCLUDED.cart_id, doc = EXCLUDED.doc",
            )
            .bind(esc_all(&ids))
            .bind(esc_all(&carts))
            .bind(&docs)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM dispatch.ssd_datasets WHERE ssd_id = ANY($1)")
                .bind(esc_all(&ids))
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO dispatch.ssd_datasets (dataset, ssd_id, size_bytes) SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[])")
                .bind(esc_all(&d_names))
                .bind(esc_all(&d_ssds))
                .bind(&d_sizes)
                .execute(&mut *tx)
                .await?;
        }
        let (mut ids, mut states, mut docs, mut seqs) = (vec![], vec![], vec![], vec![]);
        for id in &k.requests {
            if let Some(r) = m.requests.get(id) {
                ids.push(id.clone());
                states.push(json(&r.state())?.trim_matches('"').to_string());
                docs.push(json(r)?);
                seqs.push(to_i64(m.request_seq.get(id).copied().unwrap_or(0)));
            }
        }
        if !ids.is_empty() {
            sqlx::query(
                "INSERT INTO dispatch.requests (request_id, state, doc, seq) SELECT i, s, d::jsonb, q FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) AS t(i, s, d, q) \
                 ON CONFLICT (request_id) DO UPDATE SET state = EXCLUDED.state, doc = EXCLUDED.doc, seq = EXCLUDED.seq",
            )
            .bind(esc_all(&ids))
            .bind(&states)
            .bind(&docs)
            .bind(&seqs)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

impl Projection for ReadModel {
    type Event = DispatchEvent;
    const NAME: &'static str = "dispatch";

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[Stored<DispatchEvent>],
    ) -> Result<(), sqlx::Error> {
        let k = keys(events);
        let mut m = Self::load(tx, &k).await?;
        for e in events {
            m.apply(e.seq, &e.event);
        }
        Self::save(tx, &k, &m).await
    }

    async fn reset(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("TRUNCATE dispatch.facility, dispatch.carts, dispatch.ssds, dispatch.ssd_datasets, dispatch.requests")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
