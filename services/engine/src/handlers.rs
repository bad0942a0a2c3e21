//! Wire <-> domain: the `engine` micro service's commands, queries and `engine.exec`.

use crate::domain::{self, Caller, Event, Metadata, Place};
use crate::instance::{Engine, OwnerError, NOT_OWNER_HEADER};
use runtime::projector::ProjectionHandle;
use runtime::service::{Endpoints, Request};
use runtime::sqltext::{esc, unesc, unesc_json, unesc_value};
use runtime::ServiceError;
use schemas::engine as wire;
use schemas::ErrorCode;
use serde_json::{Map, Value};
use sqlx::types::Json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a command or exec waits for the view to show something a client may just have created.
const SYNC_WAIT: Duration = Duration::from_secs(3);
/// How long `exec` keeps looking for a live owner of a module.
const OWNER_WAIT: Duration = Duration::from_secs(5);

impl From<domain::Error> for ServiceError {
    fn from(e: domain::Error) -> Self {
        match e {
            domain::Error::Invalid(m) => ServiceError::invalid(m),
            domain::Error::NotFound(m) => ServiceError::not_found(m),
            domain::Error::Conflict(m) => ServiceError::conflict(m),
            domain::Error::Unauthorized(m) => ServiceError::new(ErrorCode::Unauthorized, m),
            domain::Error::Forbidden(m) => ServiceError::new(ErrorCode::Forbidden, m),
        }
    }
}

/// Serves every subject of the `engine` micro service.
///
/// # Errors
/// NATS unreachable.
pub async fn serve(engine: &Arc<Engine>, read_model: ProjectionHandle) -> anyhow::Result<()> {
    let ep = Endpoints::start(
        &engine.ctx.client,
        "engine",
        "building systems, modules, drivers, status and exec",
    )
    .await?;
    macro_rules! route {
        ($subject:expr, $f:expr) => {{
            let e = engine.clone();
            let rm = read_model.clone();
            ep.add($subject, move |req: Request| {
                let e = e.clone();
                let rm = rm.clone();
                async move {
                    let _ = &rm;
                    $f(e, rm, req).await
                }
            })
            .await?;
        }};
    }
    route!(
        "engine.cmd.register-driver",
        |e: Arc<Engine>, _rm, req: Request| async move { register_driver(&e, req).await }
    );
    route!(
        "engine.cmd.add-module",
        |e: Arc<Engine>, _rm, req: Request| async move { add_module(&e, req).await }
    );
    route!(
        "engine.cmd.set-system",
        |e: Arc<Engine>, _rm, req: Request| async move { set_system(&e, req).await }
    );
    route!(
        "engine.cmd.update-status",
        |e: Arc<Engine>, _rm, req: Request| async move {
            let cmd: wire::UpdateStatus = req.decode()?;
            update_status(&e, cmd, req.msg_id()).await
        }
    );
    route!(
        "engine.query.lookup",
        |e: Arc<Engine>, rm, req: Request| async move { lookup(&e, &rm, req).await }
    );
    route!(
        "engine.query.status",
        |e: Arc<Engine>, rm, req: Request| async move { status(&e, &rm, req).await }
    );
    route!(
        "engine.query.module",
        |e: Arc<Engine>, rm, req: Request| async move { module(&e, &rm, req).await }
    );
    route!(
        "engine.query.system",
        |e: Arc<Engine>, rm, req: Request| async move { system(&e, &rm, req).await }
    );
    route!(
        "engine.query.driver",
        |e: Arc<Engine>, rm, req: Request| async move { driver(&e, &rm, req).await }
    );
    route!(
        "engine.query.instances",
        |e: Arc<Engine>, _rm, req: Request| async move { instances(&e, req) }
    );
    route!(
        "engine.query.audit",
        |e: Arc<Engine>, rm, req: Request| async move { audit_query(&e, &rm, req).await }
    );
    route!(
        "engine.exec",
        |e: Arc<Engine>, _rm, req: Request| async move { exec(&e, req).await }
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Commands

/// `engine.cmd.register-driver`.
///
/// # Errors
/// As the contract says.
pub async fn register_driver(e: &Engine, req: Request) -> Result<wire::Driver, ServiceError> {
    let cmd: wire::RegisterDriver = req.decode()?;
    register(e, cmd, req.msg_id()).await
}

/// Registers a driver (also used at start for the built-in drivers).
///
/// # Errors
/// As the contract says.
pub async fn register(
    e: &Engine,
    cmd: wire::RegisterDriver,
    msg_id: Option<&str>,
) -> Result<wire::Driver, ServiceError> {
    domain::check_id("driver_id", &cmd.driver_id)?;
    let subject = domain::driver_subject(&cmd.driver_id);
    Ok(e.drivers_repo
        .execute(
            &subject,
            msg_id,
            |s, _| domain::register_driver(s, &cmd),
            |_, _, seq| wire::Driver {
                driver_id: cmd.driver_id.clone(),
                metadata: cmd.metadata.clone(),
                seq,
            },
        )
        .await?)
}

async fn add_module(e: &Engine, req: Request) -> Result<wire::ModuleAdded, ServiceError> {
    let cmd: wire::AddModule = req.decode()?;
    domain::check_id("module_id", &cmd.module_id)?;
    domain::check_id("driver_id", &cmd.driver_id)?;
    domain::check_name(&cmd.name)?;
    let mut known = e.read_view(|v| v.drivers.contains_key(&cmd.driver_id));
    if !known {
        e.sync_view(SYNC_WAIT).await?;
        known = e.read_view(|v| v.drivers.contains_key(&cmd.driver_id));
    }
    let subject = domain::module_subject(&cmd.module_id);
    Ok(e.modules_repo
        .execute(
            &subject,
            req.msg_id(),
            |s, _| domain::add_module(s, &cmd, known),
            |_, _, seq| wire::ModuleAdded {
                module_id: cmd.module_id.clone(),
                driver_id: cmd.driver_id.clone(),
                name: cmd.name.clone(),
                seq,
            },
        )
        .await?)
}

async fn set_system(e: &Engine, req: Request) -> Result<wire::System, ServiceError> {
    let cmd: wire::SetSystem = req.decode()?;
    domain::check_set_system(&cmd)?;
    let missing = |e: &Engine| {
        e.read_view(|v| {
            cmd.modules
                .iter()
                .filter(|m| !v.modules.contains_key(*m))
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    let mut unknown = missing(e);
    if !unknown.is_empty() {
        e.sync_view(SYNC_WAIT).await?;
        unknown = missing(e);
    }
    let names: BTreeMap<String, String> = e.read_view(|v| {
        cmd.modules
            .iter()
            .filter_map(|m| v.modules.get(m).map(|x| (m.clone(), x.name.clone())))
            .collect()
    });
    let subject = domain::system_subject(&cmd.system_id);
    Ok(e.systems_repo
        .execute(
            &subject,
            req.msg_id(),
            |s, _| domain::set_system(s, &cmd, &unknown),
            |_, _, seq| wire::System {
                system_id: cmd.system_id.clone(),
                modules: cmd.modules.clone(),
                places: places_map(&cmd.modules, &names),
                seq,
            },
        )
        .await?)
}

fn places_map(modules: &[String], names: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    domain::places(modules, |m| names.get(m).map(String::as_str))
        .into_iter()
        .map(|(p, m)| (p.to_string(), m))
        .collect()
}

/// `engine.cmd.update-status` (also what running drivers call).
///
/// # Errors
/// As the contract says.
pub async fn update_status(
    e: &Engine,
    cmd: wire::UpdateStatus,
    msg_id: Option<&str>,
) -> Result<wire::StatusUpdated, ServiceError> {
    domain::check_id("module_id", &cmd.module_id)?;
    domain::check_status_name(&cmd.name)?;
    // Existence comes from the view (synced on a miss): a process's cached aggregate may be older
    // than the module; the append's expected sequence still guards the aggregate itself.
    let mut exists = e.read_view(|v| v.modules.contains_key(&cmd.module_id));
    if !exists {
        e.sync_view(SYNC_WAIT).await?;
        exists = e.read_view(|v| v.modules.contains_key(&cmd.module_id));
    }
    let state = domain::ModuleState {
        added: exists.then(|| (String::new(), String::new())),
    };
    let event = domain::update_status(&state, &cmd)?;
    // Status reports need no expected sequence (the decision depends only on the module existing,
    // which never changes back), so they go on their own subject and skip the aggregate check:
    // one publish, no reload when several instances report on one module.
    let id = uuid::Uuid::now_v7();
    let payload = runtime::store::encode_event(id, chrono::Utc::now(), &event)?;
    let id_text = id.to_string();
    let ack = e
        .store
        .append_unchecked(
            &domain::status_events_subject(&cmd.module_id),
            payload,
            msg_id.unwrap_or(&id_text),
        )
        .await
        .map_err(|err| {
            ServiceError::unavailable(format!(
                "{err}; it may have been stored: retry with the same Nats-Msg-Id"
            ))
        })?;
    Ok(wire::StatusUpdated {
        module_id: cmd.module_id,
        name: cmd.name,
        value: cmd.value,
        seq: ack.sequence,
    })
}

// ---------------------------------------------------------------------------------------------
// Queries

fn wait(e: &Engine) -> Duration {
    e.ctx.config.min_seq_wait
}

async fn lookup(
    e: &Engine,
    rm: &ProjectionHandle,
    req: Request,
) -> Result<wire::LookupReply, ServiceError> {
    let q: wire::Lookup = req.decode()?;
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

async fn status(
    e: &Engine,
    rm: &ProjectionHandle,
    req: Request,
) -> Result<wire::StatusReply, ServiceError> {
    let q: wire::StatusQuery = req.decode()?;
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

async fn module(
    e: &Engine,
    rm: &ProjectionHandle,
    req: Request,
) -> Result<wire::Module, ServiceError> {
    let q: wire::ModuleQuery = req.decode()?;
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

async fn system(
    e: &Engine,
    rm: &ProjectionHandle,
    req: Request,
) -> Result<wire::System, ServiceError> {
    let q: wire::SystemQuery = req.decode()?;
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
async fn audit_query(
    e: &Engine,
    rm: &ProjectionHandle,
    req: Request,
) -> Result<wire::AuditReply, ServiceError> {
    let q: wire::AuditQuery = req.decode()?;
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

async fn driver(
    e: &Engine,
    rm: &ProjectionHandle,
    req: Request,
) -> Result<wire::Driver, ServiceError> {
    let q: wire::DriverQuery = req.decode()?;
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

fn instances(e: &Engine, req: Request) -> Result<wire::Instances, ServiceError> {
    let _: wire::InstancesQuery = req.decode()?;
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

// ---------------------------------------------------------------------------------------------
// Exec

struct Target {
    module_id: String,
    driver_id: String,
    meta: Arc<Metadata>,
}

fn resolve_in_view(e: &Engine, system_id: &str, place: &Place) -> Result<Target, ServiceError> {
    e.read_view(|v| {
        if !v.systems.contains_key(system_id) {
            return Err(ServiceError::not_found(format!("no system {system_id:?}")));
        }
        let module_id = v.lookup(system_id, place).ok_or_else(|| {
            ServiceError::not_found(format!("system {system_id:?} has no module at {place}"))
        })?;
        let driver_id = v
            .modules
            .get(module_id)
            .map(|m| m.driver_id.clone())
            .unwrap_or_default();
        let meta = v.drivers.get(&driver_id).cloned().ok_or_else(|| {
            ServiceError::not_found(format!(
                "module {module_id:?} runs driver {driver_id:?}, which is not registered"
            ))
        })?;
        Ok(Target {
            module_id: module_id.to_string(),
            driver_id,
            meta,
        })
    })
}

/// `engine.exec`: resolve, check the method, the caller's roles and the arguments, then run the call
/// on the owner instance.
///
/// # Errors
/// As the contract says.
pub async fn exec(e: &Arc<Engine>, req: Request) -> Result<wire::ExecReply, ServiceError> {
    let cmd: wire::Exec = req.decode()?;
    let started = std::time::Instant::now();
    let caller: Caller = crate::auth::caller(
        req.header("Authorization")
            .or_else(|| req.header("authorization")),
        &e.ctx.config.token_secret,
    );
    let mut module_id = None;
    let outcome = exec_call(e, &cmd, &caller, &mut module_id).await;
    let (who, roles) = match &caller {
        Caller::User { sub, roles } => (Some(sub.clone()), roles.clone()),
        Caller::Anonymous | Caller::BadToken(_) => (None, Vec::new()),
    };
    let entry = wire::AuditEntry {
        who,
        roles,
        system_id: cmd.system_id.clone(),
        module: cmd.module.clone(),
        module_id,
        method: cmd.method.clone(),
        args: cmd.args.clone(),
        outcome: match &outcome {
            Ok(_) => "ok".into(),
            Err(err) => err.code.as_str().into(),
        },
        message: outcome.as_ref().err().map(|err| err.message.clone()),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        at: chrono::Utc::now(),
    };
    audit(e, entry).await;
    outcome
}

/// Appends one call to the audit trail (`ExecAudited` on `engine.events.audit.<system_id>`). The
/// call has happened whatever becomes of the record, so a failed append is logged at error, not
/// returned.
async fn audit(e: &Engine, entry: wire::AuditEntry) {
    if schemas::check_id("system_id", &entry.system_id).is_err() {
        // No subject can name it; the reply already says the id is invalid.
        tracing::warn!(
            system_id_len = entry.system_id.len(),
            "exec with an invalid system_id; not audited"
        );
        return;
    }
    let subject = domain::audit_subject(&entry.system_id);
    let id = uuid::Uuid::now_v7();
    let appended = async {
        let payload =
            runtime::store::encode_event(id, chrono::Utc::now(), &Event::ExecAudited(entry))?;
        e.store
            .append_unchecked(&subject, payload, &id.to_string())
            .await
            .map_err(|err| ServiceError::unavailable(err.to_string()))
    }
    .await;
    if let Err(err) = appended {
        tracing::error!(error = %err.message, %subject, "the exec audit record was not appended");
    }
}

async fn exec_call(
    e: &Arc<Engine>,
    cmd: &wire::Exec,
    caller: &Caller,
    module_id: &mut Option<String>,
) -> Result<wire::ExecReply, ServiceError> {
    let cmd = cmd.clone();
    domain::check_id("system_id", &cmd.system_id)?;
    if cmd.method.is_empty() {
        return Err(ServiceError::invalid("`method` must not be empty"));
    }
    let place = Place::parse(&cmd.module, None)?;
    let target = match resolve_in_view(e, &cmd.system_id, &place) {
        Ok(t) => t,
        Err(_) => {
            e.sync_view(SYNC_WAIT).await?;
            resolve_in_view(e, &cmd.system_id, &place)?
        }
    };
    *module_id = Some(target.module_id.clone());
    if !target.meta.functions.contains_key(&cmd.method) {
        return Err(ServiceError::not_found(format!(
            "driver {:?} has no function {:?}; it has: {}",
            target.driver_id,
            cmd.method,
            target
                .meta
                .functions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    domain::authorize(&target.meta, &cmd.method, caller)?;
    let args = target
        .meta
        .check_args(&cmd.method, &cmd.args)
        ?;
    let call = wire::OwnerExec {
        module_id: target.module_id,
        driver_id: target.driver_id,
        method: cmd.method,
        args,
        view_seq: e.read_view(|v| v.seq),
    };
    forward(e, &call)
        .await
        .map(|result| wire::ExecReply { result })
}

/// Runs `call` on the module's owner, following ownership while it moves (at most [`OWNER_WAIT`]).
///
/// # Errors
/// The owner's error, or `unavailable` when no owner answers in time.
pub async fn forward(e: &Arc<Engine>, call: &wire::OwnerExec) -> Result<Value, ServiceError> {
    let deadline = tokio::time::Instant::now() + OWNER_WAIT;
    let payload = bytes::Bytes::from(
        serde_json::to_vec(call).map_err(|err| ServiceError::internal(err.to_string()))?,
    );
    let mut last_problem = String::from("no live engine instance");
    let mut lost_to_crash = 0;
    loop {
        let live = e.live_now();
        if let Some(owner) = domain::owner(&live, domain::Owned::Module(&call.module_id)) {
            if owner == e.me {
                match e.run_local(call).await {
                    Ok(v) => return Ok(v),
                    Err(OwnerError::Service(err)) => return Err(err),
                    Err(OwnerError::NotOwner) => last_problem = "ownership is moving".into(),
                }
            } else {
                let subject = format!("engine.instance.{owner}.exec");
                let request = async_nats::Request::new()
                    .payload(payload.clone())
                    .timeout(Some(
                        e.settings.driver_timeout + Duration::from_millis(1000),
                    ));
                match e.ctx.client.send_request(subject, request).await {
                    Ok(msg) => {
                        let headers = msg.headers.as_ref();
                        let not_owner = headers.and_then(|h| h.get(NOT_OWNER_HEADER)).is_some();
                        let failed = headers
                            .and_then(|h| h.get("Nats-Service-Error-Code"))
                            .is_some();
                        if not_owner {
                            last_problem = format!("instance {owner} no longer owns the module");
                        } else if failed {
                            let body: schemas::ErrorBody = serde_json::from_slice(&msg.payload)
                                .map_err(|err| {
                                    ServiceError::internal(format!(
                                        "the owner's error reply does not decode: {err}"
                                    ))
                                })?;
                            return Err(ServiceError::new(body.error.code, body.error.message));
                        } else {
                            let reply: wire::ExecReply = serde_json::from_slice(&msg.payload)
                                .map_err(|err| {
                                    ServiceError::internal(format!(
                                        "the owner's reply does not decode: {err}"
                                    ))
                                })?;
                            return Ok(reply.result);
                        }
                    }
                    Err(err) if err.kind() == async_nats::RequestErrorKind::NoResponders => {
                        last_problem =
                            format!("owner {owner} is not reachable (it may have stopped)");
                    }
                    Err(err) if err.kind() == async_nats::RequestErrorKind::TimedOut => {
                        // A call sent in the instant its owner crashed is lost with it: once the
                        // owner is known dead, run it on the new owner (a bounded number of times).
                        if !e.live_now().iter().any(|i| i == owner) && lost_to_crash < 2 {
                            lost_to_crash += 1;
                            last_problem = format!("owner {owner} stopped during the call");
                            continue;
                        }
                        return Err(ServiceError::unavailable(format!(
                            "the owner {owner} of module {:?} did not answer {} in time",
                            call.module_id, call.method
                        )));
                    }
                    Err(err) => last_problem = format!("forwarding to {owner}: {err}"),
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServiceError::unavailable(format!(
                "no engine instance could run {}.{} within {} ms: {last_problem}",
                call.module_id,
                call.method,
                OWNER_WAIT.as_millis()
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
