//! Wire <-> domain: the `engine` micro service's commands, queries and `engine.exec`.

use crate::domain::{self, Caller, Event, Metadata, Place};
use crate::instance::{Engine, OwnerError, NOT_OWNER_HEADER, SYNC_WAIT};
use crate::{queries, Api};
use runtime::projector::ProjectionHandle;
use runtime::service::{Endpoints, Request};
use runtime::ServiceError;
use schemas::engine as wire;
use schemas::ErrorCode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
    let routes = ep.with_state(Arc::new(Api {
        engine: engine.clone(),
        read_model,
    }));
    routes
        .on("engine.cmd.register-driver", register_driver)
        .await?;
    routes.on("engine.cmd.add-module", add_module).await?;
    routes.on("engine.cmd.set-system", set_system).await?;
    routes
        .on("engine.cmd.update-status", update_status_cmd)
        .await?;
    routes.on("engine.query.lookup", queries::lookup).await?;
    routes.on("engine.query.status", queries::status).await?;
    routes.on("engine.query.module", queries::module).await?;
    routes.on("engine.query.system", queries::system).await?;
    routes
        .on("engine.query.systems", crate::systems::systems)
        .await?;
    routes.on("engine.query.driver", queries::driver).await?;
    routes
        .on("engine.query.instances", queries::instances)
        .await?;
    routes
        .on("engine.query.audit", queries::audit_query)
        .await?;
    routes.on("engine.exec", exec).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Commands

/// `engine.cmd.register-driver`.
///
/// # Errors
/// As the contract says.
async fn register_driver(
    api: Arc<Api>,
    cmd: wire::RegisterDriver,
    req: Request,
) -> Result<wire::Driver, ServiceError> {
    register(&api.engine, cmd, req.msg_id()).await
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

async fn add_module(
    api: Arc<Api>,
    cmd: wire::AddModule,
    req: Request,
) -> Result<wire::ModuleAdded, ServiceError> {
    let e = &*api.engine;
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

async fn set_system(
    api: Arc<Api>,
    cmd: wire::SetSystem,
    req: Request,
) -> Result<wire::System, ServiceError> {
    let e = &*api.engine;
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

/// `engine.cmd.update-status`.
async fn update_status_cmd(
    api: Arc<Api>,
    cmd: wire::UpdateStatus,
    req: Request,
) -> Result<wire::StatusUpdated, ServiceError> {
    api.engine.update_status(cmd, req.msg_id()).await
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
pub async fn exec(
    api: Arc<Api>,
    cmd: wire::Exec,
    req: Request,
) -> Result<wire::ExecReply, ServiceError> {
    let e = &api.engine;
    let started = std::time::Instant::now();
    let caller: Caller = crate::auth::caller(
        req.header("Authorization")
            .or_else(|| req.header("authorization")),
        &e.settings.token_secret,
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
    let appended = async {
        let new = runtime::store::stamp(&Event::ExecAudited(entry))?;
        e.store
            .append_unchecked(&subject, new.payload, &new.id)
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
    let args = target.meta.check_args(&cmd.method, &cmd.args)?;
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
