//! `/health`, `/health/live`, `/health/ready`.
//!
//! `live` says the process answers; `ready` that it can serve (database reachable, migrations
//! current); `/health` gives the details an operator wants, 503 when something is down.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fraise_core::AuthService;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(live)).routes(routes!(ready))
}

/// `/health/live` and `/health/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Probe {
    /// `ok` or `unavailable`.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// `unreachable` when the database cannot be reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'static str>,
    /// `pending` when migrations are not applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrations: Option<&'static str>,
}

impl Probe {
    fn ok() -> Self {
        Self { status: "ok", database: None, migrations: None }
    }
}

/// `/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    /// `ok`, or `degraded` when something is down (then the status is 503).
    #[schema(example = "ok")]
    pub status: &'static str,
    pub version: &'static str,
    pub database: DatabaseHealth,
    pub password_hashing: HashingHealth,
    /// `{"store": "off" | "memory" | "redis", "status"?, "failure_policy"?}`.
    #[schema(value_type = Object)]
    pub rate_limiter: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseHealth {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// `ok` or `unreachable`.
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HashingHealth {
    pub workers: usize,
    pub running: usize,
    pub queued: usize,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = Probe)))]
async fn live() -> Json<Probe> {
    Json(Probe::ok())
}

/// Readiness: the database is reachable and migrated.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready.", body = Probe),
        (status = 503, description = "Not ready: says what is missing.", body = Probe),
    )
)]
async fn ready(State(auth): State<AuthService>) -> Response {
    let store = auth.store();
    let down = |database, migrations| Probe { status: "unavailable", database, migrations };
    let (status, detail) = match store.ping().await {
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, down(Some("unreachable"), None)),
        Ok(()) => match store.migrations_current().await {
            Ok(true) => (StatusCode::OK, Probe::ok()),
            Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, down(None, Some("pending"))),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, down(Some("unreachable"), None)),
        },
    };
    (status, Json(detail)).into_response()
}

/// What an operator wants to know: database, hashing pool, rate limiter.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "Everything is up.", body = HealthReport),
        (status = 503, description = "Something is down (`status: degraded`).", body = HealthReport),
    )
)]
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
        None => serde_json::json!({"store": "off"}),
    };
    // An unreachable Redis with a fail-closed policy refuses requests: that is "down" too.
    let limiter_ok = limiter["status"] != "unreachable" || limiter["failure_policy"] == "open";
    let ok = database == "ok" && limiter_ok;
    let body = HealthReport {
        rate_limiter: limiter,
        status: if ok { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        database: DatabaseHealth { backend: store.backend(), status: database },
        password_hashing: HashingHealth { workers: pool.workers(), running: pool.running(), queued: pool.queued() },
    };
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}
