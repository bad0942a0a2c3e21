//! What the contexts' HTTP routes on the gateway share: a NATS reply as an HTTP response, and a
//! JSON body decoded or refused as the contract says.

use crate::client::{camel_case, JsonReply};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

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

/// A 400 `invalid_request` with `message`.
#[must_use]
pub fn bad_body(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"code": "invalid_request", "message": message}})),
    )
        .into_response()
}

/// Decodes a JSON body as `T` (an empty body reads as `{}`).
///
/// # Errors
/// The 400 response saying what does not match.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_body(format!("the body does not match the schema: {e}"))))
}
