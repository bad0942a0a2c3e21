//! `engine.query.systems` (an addition for the dashboard, `schemas::live::SystemsQuery`): every
//! system id with its module count, sorted by id, from the PostgreSQL read model.

use crate::Api;
use runtime::service::Request;
use runtime::sqltext::unesc;
use runtime::ServiceError;
use schemas::live as wire;
use std::sync::Arc;

/// Most systems one answer lists, and the default.
const MAX: u32 = 5000;
const DEFAULT: u32 = 1000;

/// `engine.query.systems`.
///
/// # Errors
/// `invalid_request` for a limit out of 1..=5000; the read model unreachable or behind `min_seq`.
pub(crate) async fn systems(
    api: Arc<Api>,
    q: wire::SystemsQuery,
    _: Request,
) -> Result<wire::Systems, ServiceError> {
    let (e, rm) = (&*api.engine, &api.read_model);
    let limit = q.limit.unwrap_or(DEFAULT);
    if !(1..=MAX).contains(&limit) {
        return Err(ServiceError::invalid(format!(
            "`limit` must be 1..={MAX}, not {limit}"
        )));
    }
    rm.wait_for(q.min_seq, e.ctx.config.min_seq_wait).await?;
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        r#"SELECT system_id, jsonb_array_length(modules), seq FROM engine.systems ORDER BY system_id COLLATE "C" LIMIT $1"#,
    )
    .bind(i64::from(limit))
    .fetch_all(&e.ctx.pool)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM engine.systems")
        .fetch_one(&e.ctx.pool)
        .await?;
    let mut systems: Vec<wire::SystemSummary> = rows
        .into_iter()
        .map(|(id, n, seq)| wire::SystemSummary {
            system_id: unesc(id),
            modules: u32::try_from(n).unwrap_or(0),
            seq: u64::try_from(seq).unwrap_or(0),
        })
        .collect();
    // The escaped ids sort as stored; the answer is sorted by the ids themselves.
    systems.sort_by(|a, b| a.system_id.cmp(&b.system_id));
    Ok(wire::Systems {
        systems,
        total: u64::try_from(total).unwrap_or(0),
    })
}
