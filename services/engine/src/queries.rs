//! The engine's queries: the read model (after `min_seq`) and the live instances.

use crate::domain::{self, Place};
use crate::instance::Engine;
use crate::Api;
use runtime::service::Request;
use runtime::sqltext::{esc, unesc, unesc_json, unesc_value};
use runtime::ServiceError;
use schemas::engine as wire;
use serde_json::{Map, Value};
use sqlx::types::Json;
use std::sync::Arc;
use std::time::Duration;

fn wait(e: &Engine) -> Duration {
    e.ctx.config.min_seq_wait
}

pub(crate) async fn lookup(
    api: Arc<Api>,
    q: wire::Lookup,
    _: Request,
) -> Result<wire::LookupReply, ServiceError> {
    let (e, rm) = (&*api.engine, &api.read_model);
    domain::check_id("system_id", &q.system_id)?;
    let place = Place::parse(&q.module, q.index)?;
    rm.wait_for(q.min_seq, wait(e)).await?;
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT module_id FROM engine.places WHERE system_id = $1 AND name = $2 AND idx = $3",
    )
    .bind(esc(&q.system_id).as_ref())
    .bind(esc(&place.name).as_ref())
    .bind(i32::try_from(place.index).unwrap_or(i32::MAX))
    .fetch_optional(&e.ctx.pool)
    .await?;
    match row {
        Some((module_id,)) => Ok(wire::LookupReply {
            module_id: unesc(module_id),
        }),
        None => Err(not_in_system(e, &q.system_id, &place).await),
    }
}

async fn not_in_system(e: &Engine, system_id: &str, place: &Place) -> ServiceError {
    let exists: Result<Option<(i64,)>, _> =
        sqlx::query_as("SELECT seq FROM engine.systems WHERE system_id = $1")
            .bind(esc(system_id).as_ref())
            .fetch_optional(&e.ctx.pool)
            .await;
    match exists {
        Ok(Some(_)) => {
            ServiceError::not_found(format!("system {system_id:?} has no module at {place}"))
        }
        Ok(None) => ServiceError::not_found(format!("no system {system_id:?}")),
        Err(err) => err.into(),
    }
}

pub(crate) async fn status(
    api: Arc<Api>,
    q: wire::StatusQuery,
    _: Request,
) -> Result<wire::StatusReply, ServiceError> {
    let (e, rm) = (&*api.engine, &api.read_model);
    domain::check_id("module_id", &q.module_id)?;
    domain::check_status_name(&q.name)?;
    rm.wait_for(q.min_seq, wait(e)).await?;
    let row: Option<(Json<Value>,)> =
        sqlx::query_as("SELECT value FROM engine.statuses WHERE module_id = $1 AND name = $2")
            .bind(esc(&q.module_id).as_ref())
            .bind(esc(&q.name).as_ref())
            .fetch_optional(&e.ctx.pool)
            .await?;
    if let Some((Json(value),)) = row {
        return Ok(wire::StatusReply {
            value: unesc_value(value),
        });
    }
    let module: Option<(String,)> =
        sqlx::query_as("SELECT module_id FROM engine.modules WHERE module_id = $1")
            .bind(esc(&q.module_id).as_ref())
            .fetch_optional(&e.ctx.pool)
            .await?;
    Err(match module {
        Some(_) => ServiceError::not_found(format!(
            "module {:?} has not reported status {:?}",
            q.module_id, q.name
        )),
        None => ServiceError::not_found(format!("no module {:?}", q.module_id)),
    })
}

pub(crate) async fn module(
    api: Arc<Api>,
    q: wire::ModuleQuery,
    _: Request,
) -> Result<wire::Module, ServiceError> {
    let (e, rm) = (&*api.engine, &api.read_model);
    domain::check_id("module_id", &q.module_id)?;
    rm.wait_for(q.min_seq, wait(e)).await?;
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT driver_id, name FROM engine.modules WHERE module_id = $1")
            .bind(esc(&q.module_id).as_ref())
            .fetch_optional(&e.ctx.pool)
            .await?;
    let Some((driver_id, name)) = row else {
        return Err(ServiceError::not_found(format!(
            "no module {:?}",
            q.module_id
        )));
    };
    let rows: Vec<(String, Json<Value>)> = sqlx::query_as(
        "SELECT name, value FROM engine.statuses WHERE module_id = $1 ORDER BY name",
    )
    .bind(esc(&q.module_id).as_ref())
    .fetch_all(&e.ctx.pool)
    .await?;
    let status: Map<String, Value> = rows
        .into_iter()
        .map(|(n, Json(v))| (unesc(n), unesc_value(v)))
        .collect();
    Ok(wire::Module {
        module_id: q.module_id,
        driver_id: unesc(driver_id),
        name: unesc(name),
        status,
    })
}

pub(crate) async fn system(
    api: Arc<Api>,
    q: wire::SystemQuery,
    _: Request,
) -> Result<wire::System, ServiceError> {
    let (e, rm) = (&*api.engine, &api.read_model);
    domain::check_id("system_id", &q.system_id)?;
    rm.wait_for(q.min_seq, wait(e)).await?;
    let row: Option<(Json<Vec<String>>, i64)> =
        sqlx::query_as("SELECT modules, seq FROM engine.systems WHERE system_id = $1")
            .bind(esc(&q.system_id).as_ref())
            .fetch_optional(&e.ctx.pool)
            .await?;
    let Some((Json(modules), seq)) = row else {
        return Err(ServiceError::not_found(format!(
            "no system {:?}",
            q.system_id
        )));
    };
    let rows: Vec<(String, i32, String)> =
        sqlx::query_as("SELECT name, idx, module_id FROM engine.places WHERE system_id = $1")
            .bind(esc(&q.system_id).as_ref())
            .fetch_all(&e.ctx.pool)
            .await?;
    let places = rows
        .into_iter()
        .map(|(n, i, m)| (format!("{}_{i}", unesc(n)), unesc(m)))
        .collect();
    Ok(wire::System {
        system_id: q.system_id,
        modules: runtime::sqltext::unesc_all(modules),
        places,
        seq: u64::try_from(seq).unwrap_or(0),
    })
}

type AuditRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Json<Value>,
    String,
    Json<Value>,
    String,
    Option<String>,
    i64,
    chrono::DateTime<chrono::Utc>,
);

/// `engine.query.audit`: the exec audit trail of a module, or of a system (and place), newest first.
pub(crate) async fn audit_query(
    api: Arc<Api>,
    q: wire::AuditQuery,
    _: Request,
) -> Result<wire::AuditReply, ServiceError> {
    let (e, rm) = (&*api.engine, &api.read_model);
    let limit = i64::from(q.limit.unwrap_or(100));
    if !(1..=1000).contains(&limit) {
        return Err(ServiceError::invalid("`limit` must be 1 to 1000"));
    }
    const COLUMNS: &str = "SELECT seq, system_id, module, module_id, who, roles, method, args, outcome, message, duration_ms, at FROM engine.audit";
    let query = match (&q.module_id, &q.system_id) {
        (Some(m), None) => {
            domain::check_id("module_id", m)?;
            if q.module.is_some() {
                return Err(ServiceError::invalid(
                    "`module` (a place) needs `system_id`",
                ));
            }
            rm.wait_for(q.min_seq, wait(e)).await?;
            sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(format!(
                "{COLUMNS} WHERE module_id = $1 ORDER BY seq DESC LIMIT $2"
            )))
            .bind(esc(m).into_owned())
            .bind(limit)
        }
        (None, Some(s)) => {
            domain::check_id("system_id", s)?;
            rm.wait_for(q.min_seq, wait(e)).await?;
            match &q.module {
                Some(place) => sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE system_id = $1 AND module = $3 ORDER BY seq DESC LIMIT $2"
                )))
                .bind(esc(s).into_owned())
                .bind(limit)
                .bind(esc(place).into_owned()),
                None => sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE system_id = $1 ORDER BY seq DESC LIMIT $2"
                )))
                .bind(esc(s).into_owned())
                .bind(limit),
            }
        }
        _ => return Err(ServiceError::invalid(
            "give `module_id`, or `system_id` (and optionally `module`, a place such as Display_1)",
        )),
    };
    let rows = query.fetch_all(&e.ctx.pool).await?;
    let entries = rows
        .into_iter()
        .map(
            |(
                seq,
                system_id,
                module,
                module_id,
                who,
                Json(roles),
                method,
                Json(args),
                outcome,
                message,
                duration_ms,
                at,
            )| {
                wire::AuditRecord {
                    seq: u64::try_from(seq).unwrap_or(0),
                    entry: wire::AuditEntry {
                        who: who.map(unesc),
                        roles: unesc_json(roles).unwrap_or_default(),
                        system_id: unesc(system_id),
                        module: unesc(module),
                        module_id: module_id.map(unesc),
                        method: unesc(method),
                        args: match unesc_value(args) {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        },
                        outcome: unesc(outcome),
                        message: message.map(unesc),
                        duration_ms: u64::try_from(duration_ms).unwrap_or(0),
                        at,
                    },
                }
            },
        )
        .collect();
    Ok(wire::AuditReply { entries })
}

pub(crate) async fn driver(
    api: Arc<Api>,
    q: wire::DriverQuery,
    _: Request,
) -> Result<wire::Driver, ServiceError> {
    let (e, rm) = (&*api.engine, &api.read_model);
    domain::check_id("driver_id", &q.driver_id)?;
    rm.wait_for(q.min_seq, wait(e)).await?;
    let row: Option<(Json<Value>, i64)> =
        sqlx::query_as("SELECT metadata, seq FROM engine.drivers WHERE driver_id = $1")
            .bind(esc(&q.driver_id).as_ref())
            .fetch_optional(&e.ctx.pool)
            .await?;
    let Some((Json(metadata), seq)) = row else {
        return Err(ServiceError::not_found(format!(
            "no driver {:?}",
            q.driver_id
        )));
    };
    let metadata: wire::DriverMetadata = unesc_json(metadata).map_err(|err| {
        ServiceError::internal(format!("a stored driver's metadata does not decode: {err}"))
    })?;
    Ok(wire::Driver {
        driver_id: q.driver_id,
        metadata,
        seq: u64::try_from(seq).unwrap_or(0),
    })
}

pub(crate) async fn instances(
    api: Arc<Api>,
    _: wire::InstancesQuery,
    _: Request,
) -> Result<wire::Instances, ServiceError> {
    let e = &api.engine;
    let live = e.live_now();
    let leader = domain::leader(&live).map(str::to_string);
    Ok(wire::Instances {
        instances: e
            .ownership()
            .into_iter()
            .map(|(instance_id, modules)| wire::Instance {
                leader: Some(&instance_id) == leader.as_ref(),
                instance_id,
                modules,
            })
            .collect(),
    })
}
