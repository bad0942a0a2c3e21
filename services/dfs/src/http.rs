//! `GET /files/{file_id}`: streams a file from its chunk servers with its Content-Type, honouring a
//! single `Range` (first, middle, last and suffix ranges: 206 with Content-Range; 416 when it
//! cannot be satisfied), so a browser video player can seek.

use crate::client::{fetch_chunk, file_info, locations};
use crate::domain::{chunk_span, content_type, parse_range, ByteRange, RangeAsk};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::json;
use std::sync::Arc;

/// The dfs routes.
pub fn routes(client: async_nats::Client) -> Router {
    Router::new()
        .route("/files/{file_id}", get(get_file))
        .with_state(client)
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn get_file(
    State(client): State<async_nats::Client>,
    Path(file_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let info = match file_info(&client, &file_id).await {
        Ok(i) => i,
        Err(e) => {
            let msg = e.to_string();
            return if msg.starts_with("not_found") {
                error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no file {file_id:?}"),
                )
            } else if msg.starts_with("invalid_request") {
                error(StatusCode::BAD_REQUEST, "invalid_request", msg)
            } else {
                error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg)
            };
        }
    };
    let len = info.size;
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, range) = match parse_range(range_header, len) {
        RangeAsk::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [
                    (header::CONTENT_RANGE, format!("bytes */{len}")),
                    (header::ACCEPT_RANGES, "bytes".to_string()),
                ],
            )
                .into_response();
        }
        RangeAsk::Whole => (
            StatusCode::OK,
            (len > 0).then(|| ByteRange {
                start: 0,
                end: len - 1,
            }),
        ),
        RangeAsk::Part(r) => (StatusCode::PARTIAL_CONTENT, Some(r)),
    };
    let locs = match locations(&client, &file_id).await {
        Ok(l) => Arc::new(l),
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            )
        }
    };
    let span = range
        .map(|r| chunk_span(&info.chunks, r.start, r.end))
        .unwrap_or_default();
    let chunks = Arc::new(info.chunks.clone());
    let body = futures::stream::iter(span)
        .map(move |(i, part)| {
            let client = client.clone();
            let chunks = chunks.clone();
            let locs = locs.clone();
            async move {
                let chunk = &chunks[i];
                let replicas = locs.get(&chunk.chunk_id).cloned().unwrap_or_default();
                match fetch_chunk(&client, chunk, &replicas).await {
                    Ok(bytes) => Ok(bytes.slice(part)),
                    Err(e) => {
                        tracing::error!(error = %e, "a chunk could not be served; the response is cut short");
                        Err(std::io::Error::other(e.to_string()))
                    }
                }
            }
        })
        .buffered(2);
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type(&info.name))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            header::CONTENT_LENGTH,
            range.map_or(0, |r| r.end - r.start + 1),
        );
    if status == StatusCode::PARTIAL_CONTENT {
        if let Some(r) = range {
            response = response.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{len}", r.start, r.end),
            );
        }
    }
    response
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}
