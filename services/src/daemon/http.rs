//! `/healthz` and `/metrics` on an axum server (the dashboard of a later issue will
//! join them here).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::Shared;

async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let statuses = shared.statuses();
    let healthy = !statuses.is_empty() && statuses.values().all(|s| s.running && s.healthy);
    let body = serde_json::json!({ "status": if healthy { "ok" } else { "degraded" }, "accounts": statuses });
    let code = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string())
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], super::metrics::render())
}

/// Binds `listen` and serves until `shutdown` completes; returns the bound address
/// through `bound` first.
///
/// # Errors
/// A message when the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, "serving /healthz and /metrics");
    if let Some(bound) = bound {
        let _ = bound.send(addr);
    }
    let app = Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).with_state(shared);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(|e| e.to_string())
}
