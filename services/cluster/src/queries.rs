//! Queries on the read model: `cluster.query.tree` and `cluster.query.managers`.

use runtime::codec::Codec;
use runtime::projector::ProjectionHandle;
use runtime::service::Request;
use runtime::ServiceError;
use schemas::cluster as wire;
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// The tree reply: the stored JSON as it is, or typed for postcard.
#[derive(Serialize)]
#[serde(untagged)]
pub enum TreeReply {
    Json(Box<RawValue>),
    Typed(wire::Tree),
}

/// Read-side handles.
pub struct Queries {
    pub pool: PgPool,
    pub projection: ProjectionHandle,
    pub wait: Duration,
}

impl Queries {
    /// The tree of one manager.
    ///
    /// # Errors
    /// `not_found` for an unknown manager, `unavailable` when the `min_seq` wait times out.
    pub async fn tree(&self, q: wire::TreeQuery, codec: Codec) -> Result<TreeReply, ServiceError> {
        schemas::check_id("manager_id", &q.manager_id).map_err(ServiceError::invalid)?;
        self.projection.wait_for(q.min_seq, self.wait).await?;
        let row: Option<(String,)> =
            sqlx::query_as("SELECT tree FROM cluster.managers WHERE manager_id = $1")
                .bind(runtime::sqltext::esc(&q.manager_id).as_ref())
                .fetch_optional(&self.pool)
                .await?;
        let Some((tree,)) = row else {
            return Err(ServiceError::not_found(format!(
                "manager {:?} does not exist",
                q.manager_id
            )));
        };
        let bad = |e: serde_json::Error| {
            ServiceError::internal(format!("the stored tree does not match its schema: {e}"))
        };
        match codec {
            Codec::Json => RawValue::from_string(tree)
                .map(TreeReply::Json)
                .map_err(bad),
            Codec::Postcard => serde_json::from_str(&tree)
                .map(TreeReply::Typed)
                .map_err(bad),
        }
    }

    /// Every manager with its state.
    ///
    /// # Errors
    /// `unavailable` when the database is down or the `min_seq` wait times out.
    pub async fn managers(&self, q: wire::ManagersQuery) -> Result<wire::Managers, ServiceError> {
        self.projection.wait_for(q.min_seq, self.wait).await?;
        let rows: Vec<(String, i16, String)> = sqlx::query_as(
            "SELECT manager_id, state_code, state_name FROM cluster.managers ORDER BY manager_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(wire::Managers {
            managers: rows
                .into_iter()
                .map(|(manager_id, state, state_name)| wire::ManagerSummary {
                    manager_id: runtime::sqltext::unesc(manager_id),
                    state: state.clamp(0, 5) as u8,
                    state_name,
                })
                .collect(),
        })
    }
}

/// `cluster.query.tree`.
pub(crate) async fn tree(
    q: Arc<Queries>,
    body: wire::TreeQuery,
    req: Request,
) -> Result<TreeReply, ServiceError> {
    q.tree(body, req.codec).await
}

/// `cluster.query.managers`.
pub(crate) async fn managers(
    q: Arc<Queries>,
    body: wire::ManagersQuery,
    _: Request,
) -> Result<wire::Managers, ServiceError> {
    q.managers(body).await
}
