//! The dashboard page (`services/dashboard`, built by `vite build`): `GET /` and its assets from
//! `SWITCHYARD_DASHBOARD_DIR` (default `services/dashboard/dist` under the working directory, else
//! under the source tree), and `GET /config.json`, which tells the page where NATS's WebSocket
//! listener is (`NATS_WS_URL`, e.g. `ws://127.0.0.1:14223`), so no port is written into the page.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// The gateway's section of the configuration: where the page is and what it is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The built page (`index.html`, `assets/`).
    pub dir: PathBuf,
    /// The NATS WebSocket URL handed to the page (`None`: the page says it is not configured).
    pub nats_ws_url: Option<String>,
}

impl Settings {
    /// `SWITCHYARD_DASHBOARD_DIR` and `NATS_WS_URL`.
    #[must_use]
    pub fn from_env() -> Self {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let dir = var("SWITCHYARD_DASHBOARD_DIR").map_or_else(
            || {
                let local = PathBuf::from("services/dashboard/dist");
                if local.join("index.html").is_file() {
                    local
                } else {
                    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboard/dist"))
                }
            },
            PathBuf::from,
        );
        Self {
            dir,
            nats_ws_url: var("NATS_WS_URL"),
        }
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "map" => "application/json",
        _ => "application/octet-stream",
    }
}

async fn file(s: &Settings, rel: &str, cache: &'static str) -> Response {
    // Only plain names below the directory: no `..`, no absolute paths, no hidden files.
    if rel.is_empty()
        || rel
            .split('/')
            .any(|seg| seg.is_empty() || seg.starts_with('.') || seg.contains('\\'))
    {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    }
    match tokio::fs::read(s.dir.join(rel)).await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, content_type(rel)),
                (header::CACHE_CONTROL, cache),
            ],
            body,
        )
            .into_response(),
        Err(_) if rel == "index.html" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "The dashboard is not built ({} has no index.html): run `make dashboard` \
                 (npm ci && npm run build in services/dashboard), or set SWITCHYARD_DASHBOARD_DIR.\n",
                s.dir.display()
            ),
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

async fn index(State(s): State<Arc<Settings>>) -> Response {
    file(&s, "index.html", "no-cache").await
}

async fn asset(State(s): State<Arc<Settings>>, Path(rel): Path<String>) -> Response {
    // Vite names assets by their content hash: they never change.
    file(
        &s,
        &format!("assets/{rel}"),
        "public, max-age=31536000, immutable",
    )
    .await
}

async fn config(State(s): State<Arc<Settings>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "nats_ws_url": s.nats_ws_url })),
    )
        .into_response()
}

/// The routes of the page.
pub fn routes(settings: Settings) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*rel}", get(asset))
        .route("/config.json", get(config))
        .with_state(Arc::new(settings))
}
