//! `/health`, `/health/live`, `/health/ready`.
//!
//! `live` says the process answers; `ready` that it can serve (database reachable, migrations
//! current); `/health` gives the details an operator wants, 503 when something is down.
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fraise_core::AuthService;
use serde_json::json;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/health/live", get(live)).route("/health/ready", get(ready))
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(auth): State<AuthService>) -> Response {
    let store = auth.store();
    let (status, detail) = match store.ping().await {
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "unavailable", "database": "unreachable"})),
        Ok(()) => match store.migrations_current().await {
            Ok(true) => (StatusCode::OK, json!({"status": "ok"})),
            Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "unavailable", "migrations": "pending"})),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "unavailable", "database": "unreachable"})),
        },
    };
    (status, Json(detail)).into_response()
}

async fn health(State(state): State<AppState>) -> Response {
    let auth = &state.auth;
    let store = auth.store();
    let database = match store.ping().await {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(error = ?e, "health: database unreachable");
            "unreachable"
        }
    };
    let pool = auth.pool();
    let limiter = match &state.limits {
        Some(l) => l.health().await,
        None => json!({"store": "off"}),
    };
    // An unreachable Redis with a fail-closed policy refuses requests: that is "down" too.
    let limiter_ok = limiter["status"] != "unreachable" || limiter["failure_policy"] == "open";
    let ok = database == "ok" && limiter_ok;
    let body = json!({
        "rate_limiter": limiter,
        "status": if ok { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "database": {"backend": store.backend(), "status": database},
        "password_hashing": {"workers": pool.workers(), "running": pool.running(), "queued": pool.queued()},
    });
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}
