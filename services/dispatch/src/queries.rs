//! Queries: carts, requests and datasets from the PostgreSQL read model (with `min_seq` on the
//! projection); routes and the facility from the in-memory view (with `min_seq` on the view).

use crate::domain::{self, Cart, Request, Ssd};
use crate::Dispatch;
use runtime::service::Request as Req;
use runtime::sqltext::{esc, esc_all, unesc, unesc_json};
use runtime::ServiceError;
use schemas::dispatch as w;
use std::collections::HashMap;
use std::sync::Arc;

fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ServiceError> {
    unesc_json(v)
        .map_err(|e| ServiceError::internal(format!("a stored document does not decode: {e}")))
}

impl Dispatch {
    async fn carts_with_ssds(
        &self,
        rows: Vec<(serde_json::Value, i64)>,
    ) -> Result<Vec<w::CartInfo>, ServiceError> {
        let mut carts = Vec::with_capacity(rows.len());
        for (doc, seq) in rows {
            carts.push((parse::<Cart>(doc)?, seq.max(0) as u64));
        }
        let ids: Vec<String> = carts.iter().map(|(c, _)| c.cart_id.clone()).collect();
        let rows: Vec<serde_json::Value> =
            sqlx::query_scalar("SELECT doc FROM dispatch.ssds WHERE cart_id = ANY($1)")
                .bind(esc_all(&ids))
                .fetch_all(&self.pool)
                .await?;
        let mut by_cart: HashMap<String, Vec<Ssd>> = HashMap::new();
        for doc in rows {
            let s: Ssd = parse(doc)?;
            by_cart.entry(s.cart_id.clone()).or_default().push(s);
        }
        Ok(carts
            .iter()
            .filter(|(c, _)| c.registered)
            .map(|(c, seq)| {
                let ssds: Vec<&Ssd> = by_cart
                    .get(&c.cart_id)
                    .map(|v| v.iter().collect())
                    .unwrap_or_default();
                domain::cart_info(c, &ssds, *seq)
            })
            .collect())
    }

    pub(crate) async fn query_cart(
        self: Arc<Self>,
        q: w::DispatchCartQuery,
        _: Req,
    ) -> Result<w::CartInfo, ServiceError> {
        schemas::check_id("cart_id", &q.cart_id).map_err(ServiceError::invalid)?;
        self.read_model.wait_for(q.min_seq, self.wait).await?;
        let rows: Vec<(serde_json::Value, i64)> =
            sqlx::query_as("SELECT doc, seq FROM dispatch.carts WHERE cart_id = $1")
                .bind(esc(&q.cart_id).as_ref())
                .fetch_all(&self.pool)
                .await?;
        self.carts_with_ssds(rows).await?.pop().ok_or_else(|| {
            ServiceError::not_found(format!("cart {:?} is not registered", q.cart_id))
        })
    }

    pub(crate) async fn query_carts(
        self: Arc<Self>,
        q: w::CartsQuery,
        _: Req,
    ) -> Result<w::CartsReply, ServiceError> {
        self.read_model.wait_for(q.min_seq, self.wait).await?;
        let rows: Vec<(serde_json::Value, i64)> = match q.status {
            Some(s) => {
                sqlx::query_as(
                    "SELECT doc, seq FROM dispatch.carts WHERE status = $1 ORDER BY cart_id",
                )
                .bind(s.as_str())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as("SELECT doc, seq FROM dispatch.carts ORDER BY cart_id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(w::CartsReply {
            carts: self.carts_with_ssds(rows).await?,
        })
    }

    pub(crate) async fn query_request(
        self: Arc<Self>,
        q: w::RequestQuery,
        _: Req,
    ) -> Result<w::RequestInfo, ServiceError> {
        schemas::check_id("request_id", &q.request_id).map_err(ServiceError::invalid)?;
        self.read_model.wait_for(q.min_seq, self.wait).await?;
        let row: Option<(serde_json::Value, i64)> =
            sqlx::query_as("SELECT doc, seq FROM dispatch.requests WHERE request_id = $1")
                .bind(esc(&q.request_id).as_ref())
                .fetch_optional(&self.pool)
                .await?;
        let (doc, seq) =
            row.ok_or_else(|| ServiceError::not_found(format!("no request {:?}", q.request_id)))?;
        let r: Request = parse(doc)?;
        let ids: Vec<String> = r.assignments.iter().map(|a| a.cart_id.clone()).collect();
        let statuses: Vec<(String, String)> =
            sqlx::query_as("SELECT cart_id, status FROM dispatch.carts WHERE cart_id = ANY($1)")
                .bind(esc_all(&ids))
                .fetch_all(&self.pool)
                .await?;
        let statuses: HashMap<String, w::CartStatus> = statuses
            .into_iter()
            .filter_map(|(c, s)| {
                serde_json::from_value(serde_json::Value::String(s))
                    .ok()
                    .map(|s| (unesc(c), s))
            })
            .collect();
        Ok(domain::request_info(
            &r,
            |c| statuses.get(c).copied(),
            seq.max(0) as u64,
        ))
    }

    pub(crate) async fn query_dataset(
        self: Arc<Self>,
        q: w::DatasetQuery,
        _: Req,
    ) -> Result<w::DatasetInfo, ServiceError> {
        schemas::check_id("dataset", &q.dataset).map_err(ServiceError::invalid)?;
        self.read_model.wait_for(q.min_seq, self.wait).await?;
        let rows: Vec<(String, i64, serde_json::Value)> = sqlx::query_as(
            "SELECT d.ssd_id, d.size_bytes, s.doc FROM dispatch.ssd_datasets d JOIN dispatch.ssds s USING (ssd_id) WHERE d.dataset = $1 ORDER BY d.ssd_id",
        )
        .bind(esc(&q.dataset).as_ref())
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(ServiceError::not_found(format!(
                "no SSD holds dataset {:?}",
                q.dataset
            )));
        }
        let mut ssds = Vec::with_capacity(rows.len());
        for (ssd_id, size, doc) in rows {
            let s: Ssd = parse(doc)?;
            ssds.push(w::DatasetSsd {
                ssd_id: unesc(ssd_id),
                cart_id: s.cart_id.clone(),
                health: s.health.unwrap_or(w::SsdHealth::Ok),
                size_bytes: size.max(0) as u64,
            });
        }
        Ok(w::DatasetInfo {
            dataset: q.dataset,
            ssds,
        })
    }

    pub(crate) async fn query_route(
        self: Arc<Self>,
        q: w::RouteQuery,
        _: Req,
    ) -> Result<w::RouteReply, ServiceError> {
        schemas::check_id("from", &q.from).map_err(ServiceError::invalid)?;
        schemas::check_id("to", &q.to).map_err(ServiceError::invalid)?;
        self.view.wait_min_seq(q.min_seq, self.wait).await?;
        let facility = self
            .view
            .read_fresh(
                |f: &Option<Arc<domain::Graph>>| {
                    f.as_ref()
                        .is_some_and(|f| f.contains(&q.from) && f.contains(&q.to))
                },
                |m| m.facility.clone(),
            )
            .await?
            .ok_or_else(|| {
                ServiceError::not_found("there is no facility yet: send dispatch.cmd.set-facility")
            })?;
        for n in [&q.from, &q.to] {
            if !facility.contains(n) {
                return Err(ServiceError::not_found(format!(
                    "node {n:?} is not in the facility"
                )));
            }
        }
        let (path, seconds) = facility.route(&q.from, &q.to).ok_or_else(|| {
            ServiceError::not_found(format!("no route from {:?} to {:?}", q.from, q.to))
        })?;
        Ok(w::RouteReply { path, seconds })
    }

    pub(crate) async fn query_facility(
        self: Arc<Self>,
        q: w::FacilityQuery,
        _: Req,
    ) -> Result<w::Facility, ServiceError> {
        self.view.wait_min_seq(q.min_seq, self.wait).await?;
        Ok(self.view.read(|m| match &m.facility {
            Some(f) => w::Facility {
                nodes: f.nodes.clone(),
                edges: f.edges.clone(),
                seq: m.facility_seq,
            },
            None => w::Facility {
                nodes: vec![],
                edges: vec![],
                seq: 0,
            },
        }))
    }
}
