//! HTTP gateway: every context's routes (the registry hands them to [`start`]; shop's are the
//! original REST routes), each forwarded over NATS to the owning service, so the gateway holds no
//! state and any number of them can run; plus `/health` and the dashboard.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use runtime::client::request_json;
use runtime::Ctx;
use serde_json::{json, Value};

pub mod dashboard;

pub use dashboard::Settings;

async fn health(State(c): State<async_nats::Client>) -> Response {
    let r = request_json(&c, "sys.query.health", &Value::Object(Default::default())).await;
    (
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
        Json(r.body),
    )
        .into_response()
}

/// Every route of the gateway: `/health`, the contexts' `routes` (from the registry) and the
/// dashboard.
pub fn router(client: async_nats::Client, contexts: Router, settings: &Settings) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(client)
        .merge(contexts)
        .merge(dashboard::routes(settings.clone()))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": {"code": "not_found", "message": "no such route"}})),
            )
        })
}

/// Starts the gateway on `HTTP_ADDR` and returns the address it listens on.
///
/// # Errors
/// The address cannot be bound.
pub async fn start(
    ctx: &Ctx,
    contexts: Router,
    settings: &Settings,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(&ctx.config.http_addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "binding the gateway to HTTP_ADDR={}: {e}",
                ctx.config.http_addr
            )
        })?;
    let addr = listener.local_addr()?;
    let app = router(ctx.client.clone(), contexts, settings);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "gateway stopped");
        }
    });
    ctx.health.started("gateway");
    tracing::info!(%addr, "gateway listening");
    Ok(addr)
}
