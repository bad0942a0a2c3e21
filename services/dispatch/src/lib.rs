//! SSD carts that carry datasets to compute servers (contract section 4).
//!
//! - [`domain`]: pure graph routing, cart / SSD / request states, `decide` functions, the [`domain::Model`]
//!   with planning, reservations and re-plans.
//! - [`view`]: this process's in-memory model, fed by an ordered consumer; commands on carts and
//!   SSDs decide on it ([`view::ViewState`], a state source of the runtime's command pipeline).
//! - [`handlers`]: the commands (wire to domain and back).
//! - [`dispatcher`]: the process manager (durable consumer `dispatcher`) that reserves carts with an
//!   expected-sequence append on the cart and publishes jobs.
//! - [`projection`] and [`queries`]: the PostgreSQL read model (schema `dispatch`) and the queries.
//! - [`facility`]: the default facility (`infra/facility.json`), loaded when the context is empty.
//!
//! Events go to stream `DISPATCH` on `dispatch.events.{facility.default, cart.<id>, ssd.<id>,
//! request.<id>}` (ids encoded with `schemas::encode_token`).

pub mod dispatcher;
pub mod domain;
pub mod facility;
pub mod handlers;
pub mod projection;
pub mod queries;
mod queue;
pub mod view;

use domain::{Cart, Ssd};
use runtime::projector::ProjectionHandle;
use runtime::service::Endpoints;
use runtime::store::{Aggregate, EventStore, Repository};
use runtime::Ctx;
use schemas::dispatch::{self as w, DispatchEvent};
use std::sync::Arc;
use std::time::Duration;
use view::View;

/// Stream of the dispatch context.
pub const STREAM: &str = "DISPATCH";
/// Every event subject.
pub const STREAM_SUBJECTS: &str = "dispatch.events.>";
/// The facility's aggregate subject.
pub const FACILITY_SUBJECT: &str = "dispatch.events.facility.default";

/// Event subject of a cart.
#[must_use]
pub fn cart_subject(cart_id: &str) -> String {
    format!("dispatch.events.cart.{}", schemas::encode_token(cart_id))
}

/// Event subject of an SSD.
#[must_use]
pub fn ssd_subject(ssd_id: &str) -> String {
    format!("dispatch.events.ssd.{}", schemas::encode_token(ssd_id))
}

/// Event subject of a request.
#[must_use]
pub fn request_subject(request_id: &str) -> String {
    format!(
        "dispatch.events.request.{}",
        schemas::encode_token(request_id)
    )
}

/// Live subject of a cart.
#[must_use]
pub fn status_subject(cart_id: &str) -> String {
    format!("dispatch.status.cart.{}", schemas::encode_token(cart_id))
}

/// Job subject of a cart.
#[must_use]
pub fn job_subject(cart_id: &str) -> String {
    format!("dispatch.cart.{}.job", schemas::encode_token(cart_id))
}

impl Aggregate for Cart {
    type Event = DispatchEvent;
    fn apply(&mut self, event: &DispatchEvent) {
        Cart::apply(self, event);
    }
}

impl Aggregate for Ssd {
    type Event = DispatchEvent;
    fn apply(&mut self, event: &DispatchEvent) {
        Ssd::apply(self, event);
    }
}

/// A request's aggregate: only whether it exists (its content lives in the model).
#[derive(Debug, Clone, Default)]
pub struct RequestAgg {
    pub exists: bool,
}

impl Aggregate for RequestAgg {
    type Event = DispatchEvent;
    fn apply(&mut self, _event: &DispatchEvent) {
        self.exists = true;
    }
}

/// The facility's aggregate: replaced as a whole, so no state.
#[derive(Debug, Clone, Default)]
pub struct FacilityAgg;

impl Aggregate for FacilityAgg {
    type Event = DispatchEvent;
    fn apply(&mut self, _event: &DispatchEvent) {}
}

/// Everything the handlers share.
pub struct Dispatch {
    pub store: EventStore,
    pub view: View,
    pub client: async_nats::Client,
    pub pool: sqlx::PgPool,
    /// Carts and SSDs: commands decide on the view's state (see [`view::ViewState`]).
    pub carts: Repository<Cart>,
    pub ssds: Repository<Ssd>,
    pub requests: Repository<RequestAgg>,
    pub facility: Repository<FacilityAgg>,
    pub read_model: ProjectionHandle,
    pub wait: Duration,
    /// `SWITCHYARD_DISPATCH_REPLY_WAIT_MS` (default 1500, 0 = none): how long a
    /// `request-datasets` reply waits for the dispatcher to reserve free carts, so that it can say
    /// `QUEUE` rather than `FREE`.
    pub reply_wait: Duration,
}

/// The dispatch section of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SWITCHYARD_DISPATCH_REPLY_WAIT_MS` (default 1500, 0 = none): how long a
    /// `request-datasets` reply waits for the dispatcher to reserve free carts.
    pub reply_wait: Duration,
    /// `SWITCHYARD_DISPATCH_FACILITY`: the facility loaded at start when the stream has none
    /// (unset: the built-in one; `none`: none; otherwise a file's path, read and parsed here).
    pub facility: Option<facility::FacilityFile>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            reply_wait: Duration::from_millis(1500),
            facility: facility::configured(None).ok().flatten(),
        }
    }
}

impl Settings {
    /// Reads the environment.
    ///
    /// # Errors
    /// A setting that does not parse, named.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            reply_wait: Duration::from_millis(runtime::config::setting(
                "SWITCHYARD_DISPATCH_REPLY_WAIT_MS",
                1500,
            )?),
            facility: facility::configured(
                runtime::config::var("SWITCHYARD_DISPATCH_FACILITY").as_deref(),
            )?,
        })
    }
}

/// Starts the dispatch service in this process: stream, migrations, view, default facility,
/// read-model projection, dispatcher, endpoints (micro service `dispatch`).
///
/// # Errors
/// A dependency is unreachable.
pub async fn start(ctx: &Ctx, settings: &Settings) -> anyhow::Result<()> {
    let store = ctx.event_store("dispatch", STREAM).await?;
    runtime::db::migrate(&ctx.pool, "dispatch", sqlx::migrate!("./migrations")).await?;
    let view = View::start(store.clone()).await?;
    facility::load_default(&store, &view, settings.facility.as_ref()).await?;
    let read_model = ctx
        .projection("dispatch", &store, projection::ReadModel)
        .await?;
    let d = Arc::new(Dispatch {
        // Not cached (the view is the state); msg ids scoped as ever ("dispatch-view").
        carts: Repository::new(store.clone(), ctx.idem.clone(), "dispatch-view", 0),
        ssds: Repository::new(store.clone(), ctx.idem.clone(), "dispatch-view", 0),
        requests: ctx.repository::<RequestAgg>(&store, "dispatch"),
        facility: ctx.repository::<FacilityAgg>(&store, "dispatch"),
        store,
        view,
        client: ctx.client.clone(),
        pool: ctx.pool.clone(),
        read_model,
        wait: ctx.config.min_seq_wait,
        reply_wait: settings.reply_wait,
    });
    dispatcher::spawn(d.clone()).await?;
    let ep = Endpoints::start(
        &ctx.client,
        "dispatch",
        "SSD carts that carry datasets to compute servers",
    )
    .await?;
    let routes = ep.with_state(d);
    routes
        .on("dispatch.cmd.set-facility", Dispatch::set_facility)
        .await?;
    routes
        .on("dispatch.cmd.register-cart", Dispatch::register_cart)
        .await?;
    routes
        .on("dispatch.cmd.register-ssd", Dispatch::register_ssd)
        .await?;
    routes
        .on("dispatch.cmd.set-ssd-health", Dispatch::set_ssd_health)
        .await?;
    routes
        .on("dispatch.cmd.put-dataset", Dispatch::put_dataset)
        .await?;
    routes
        .on("dispatch.cmd.request-datasets", Dispatch::request_datasets)
        .await?;
    routes
        .on("dispatch.cmd.cart-report", Dispatch::cart_report)
        .await?;
    routes
        .on("dispatch.query.cart", Dispatch::query_cart)
        .await?;
    routes
        .on("dispatch.query.carts", Dispatch::query_carts)
        .await?;
    routes
        .on("dispatch.query.request", Dispatch::query_request)
        .await?;
    routes
        .on("dispatch.query.dataset", Dispatch::query_dataset)
        .await?;
    routes
        .on("dispatch.query.route", Dispatch::query_route)
        .await?;
    routes
        .on("dispatch.query.facility", Dispatch::query_facility)
        .await?;
    routes
        .on("dispatch.query.queue", Dispatch::query_queue)
        .await?;
    ctx.health.started("dispatch");
    Ok(())
}

/// HTTP routes this context adds to the gateway (forwarded over NATS): `POST /request-datasets`.
pub fn routes(client: async_nats::Client) -> axum::Router {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    async fn request_datasets(
        axum::extract::State(c): axum::extract::State<async_nats::Client>,
        body: bytes::Bytes,
    ) -> axum::response::Response {
        let b: w::HttpRequestDatasets = match runtime::http::parse(&body) {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let cmd = serde_json::json!({"server_id": b.server_id, "datasets": b.datasets});
        let r = runtime::client::request_json(&c, "dispatch.cmd.request-datasets", &cmd).await;
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(r.body)).into_response()
    }
    axum::Router::new()
        .route("/request-datasets", axum::routing::post(request_datasets))
        .with_state(client)
}

/// `switchyard projections rebuild <name>` for the dispatch read model (`dispatch`). Returns false
/// for another name.
///
/// # Errors
/// A dependency is unreachable.
pub async fn rebuild(ctx: &Ctx, name: &str) -> anyhow::Result<bool> {
    use runtime::projector::Projection as _;
    if name != projection::ReadModel::NAME {
        return Ok(false);
    }
    let store = ctx.event_store("dispatch", STREAM).await?;
    runtime::db::migrate(&ctx.pool, "dispatch", sqlx::migrate!("./migrations")).await?;
    runtime::projector::rebuild(&store, &ctx.pool, &projection::ReadModel).await?;
    Ok(true)
}
