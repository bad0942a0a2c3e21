//! The original REST routes of the cart service (contract section 3), forwarded over NATS; the
//! gateway mounts them from the registry.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use runtime::client::request_json;
use runtime::http::{parse, respond};
use serde_json::json;

/// `GET|DELETE /items/{customerId}`, `POST|PUT|DELETE /item/{customerId}/{itemId}`,
/// `POST /items/{customerId}/{itemId}`.
pub fn routes(client: async_nats::Client) -> Router {
    Router::new()
        .route("/items/{customer_id}", get(get_items).delete(checkout))
        .route(
            "/item/{customer_id}/{item_id}",
            post(add_item).put(update_item).delete(remove_item),
        )
        .route("/items/{customer_id}/{item_id}", post(add_item))
        .with_state(client)
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
    let ask = json!({"last_by_subj": crate::cart_subject(customer)});
    // A short wait: when JetStream is slow to answer, the read goes ahead without `min_seq`.
    let request = async_nats::Request::new()
        .payload(serde_json::to_vec(&ask).ok()?.into())
        .timeout(Some(std::time::Duration::from_millis(500)));
    let reply = c
        .send_request(format!("$JS.API.STREAM.MSG.GET.{}", crate::STREAM), request)
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
