//! HTTP gateway: the original REST routes, each forwarded over NATS to the owning service, so the
//! gateway holds no state and any number of them can run. Other contexts add their routes through
//! their own `routes` functions, which the binary's registry hands to [`start`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use runtime::client::{camel_case, request_json, JsonReply};
use runtime::Ctx;
use serde_json::{json, Value};

pub mod dashboard;

/// Turns a NATS reply into an HTTP response (status from the error code, camelCase body).
#[must_use]
pub fn respond(reply: JsonReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if status.is_success() {
        camel_case(reply.body)
    } else {
        reply.body
    };
    (status, Json(body)).into_response()
}

fn bad_body(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"code": "invalid_request", "message": message}})),
    )
        .into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_body(format!("the body does not match the schema: {e}"))))
}

/// `GET /items/{customerId}` reads the cart's read model once it holds the cart's last event, so a
/// REST client sees its own writes at once, as with the original service (which was synchronous).
async fn get_items(State(c): State<async_nats::Client>, Path(customer): Path<String>) -> Response {
    let mut query = json!({"customer_id": customer});
    if let Some(seq) = last_cart_seq(&c, &customer).await {
        query["min_seq"] = json!(seq);
    }
    respond(request_json(&c, "shop.query.cart", &query).await)
}

/// The stream sequence of the cart's last event (`None`: no event, or the stream did not answer
/// within half a second).
async fn last_cart_seq(c: &async_nats::Client, customer: &str) -> Option<u64> {
    let ask = json!({"last_by_subj": shop::cart_subject(customer)});
    // A short wait: when JetStream is slow to answer, the read goes ahead without `min_seq`.
    let request = async_nats::Request::new()
        .payload(serde_json::to_vec(&ask).ok()?.into())
        .timeout(Some(std::time::Duration::from_millis(500)));
    let reply = c
        .send_request(format!("$JS.API.STREAM.MSG.GET.{}", shop::STREAM), request)
        .await
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&reply.payload).ok()?["message"]["seq"].as_u64()
}

async fn add_item(
    State(c): State<async_nats::Client>,
    Path((customer, item)): Path<(String, String)>,
    body: bytes::Bytes,
) -> Response {
    let b: schemas::shop::HttpAddItem = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let cmd = json!({
        "customer_id": customer, "item_id": item, "offered_price": b.offered_price,
        "item_count": b.item_count, "special_sale": b.special_sale, "sale_expiration": b.sale_expiration,
    });
    respond(request_json(&c, "shop.cmd.add-item", &cmd).await)
}

async fn update_item(
    State(c): State<async_nats::Client>,
    Path((customer, item)): Path<(String, String)>,
    body: bytes::Bytes,
) -> Response {
    let b: schemas::shop::HttpUpdateItem = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let cmd = json!({"customer_id": customer, "item_id": item, "new_count": b.new_count});
    respond(request_json(&c, "shop.cmd.update-item", &cmd).await)
}

async fn remove_item(
    State(c): State<async_nats::Client>,
    Path((customer, item)): Path<(String, String)>,
) -> Response {
    respond(
        request_json(
            &c,
            "shop.cmd.remove-item",
            &json!({"customer_id": customer, "item_id": item}),
        )
        .await,
    )
}

async fn checkout(State(c): State<async_nats::Client>, Path(customer): Path<String>) -> Response {
    respond(request_json(&c, "shop.cmd.checkout", &json!({"customer_id": customer})).await)
}

async fn health(State(c): State<async_nats::Client>) -> Response {
    let r = request_json(&c, "sys.query.health", &Value::Object(Default::default())).await;
    (
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
        Json(r.body),
    )
        .into_response()
}

/// Every route of the gateway: its own (the original REST routes, health), the contexts' `routes`
/// (from the registry) and the dashboard.
pub fn router(client: async_nats::Client, contexts: Router) -> Router {
    Router::new()
        .route("/items/{customer_id}", get(get_items).delete(checkout))
        .route(
            "/item/{customer_id}/{item_id}",
            post(add_item).put(update_item).delete(remove_item),
        )
        .route("/items/{customer_id}/{item_id}", post(add_item))
        .route("/health", get(health))
        .with_state(client)
        .merge(contexts)
        .merge(dashboard::routes(dashboard::Settings::from_env()))
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
pub async fn start(ctx: &Ctx, contexts: Router) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(&ctx.config.http_addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "binding the gateway to HTTP_ADDR={}: {e}",
                ctx.config.http_addr
            )
        })?;
    let addr = listener.local_addr()?;
    let app = router(ctx.client.clone(), contexts);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "gateway stopped");
        }
    });
    ctx.health.started("gateway");
    tracing::info!(%addr, "gateway listening");
    Ok(addr)
}
