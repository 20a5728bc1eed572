//! Prometheus metrics: `GET /metrics` in the text exposition format.
//!
//! The crates record through the `metrics` facade (core counts logins, refreshes, thefts,
//! registrations and hash queue waits; this crate counts requests and rate-limited requests);
//! this module installs the process-wide Prometheus recorder once and renders it, after sampling
//! the gauges that are read rather than counted (hash queue depth, database pool, open tenants).
//!
//! Labels are bounded by construction: the route is axum's matched route template (never the raw
//! path), `unmatched` for 404s; methods outside the standard set are `other`.
//!
//! Protection (`METRICS_BIND`, `METRICS_TOKEN`): on another listener only, and/or behind a bearer
//! token compared in constant time.
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use subtle::ConstantTimeEq as _;

use crate::AppState;
use crate::error::ApiError;

/// Latency buckets, seconds: from a cached `/auth/me` (sub-millisecond) to a queued login.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How often the recorder folds recorded histogram samples into its buckets (see [`recorder`]).
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder (once per process; later calls return the same handle).
/// `None` when another recorder was installed first (an embedding application's own).
///
/// The recorder keeps every histogram sample (8 bytes, plus its share of a block) until it folds
/// them into buckets: at a scrape, or when its upkeep runs. `install_recorder` leaves the upkeep to
/// the caller, so a thread of its own runs it every [`UPKEEP_EVERY`]; without it a server nobody
/// scrapes grew by about 20 bytes per request, without bound.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| b.install_recorder());
            match built {
                Ok(handle) => {
                    describe();
                    let upkeep = handle.clone();
                    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
                        loop {
                            std::thread::sleep(UPKEEP_EVERY);
                            upkeep.run_upkeep();
                        }
                    });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "metrics: cannot start the upkeep thread; histograms grow until scraped");
                    }
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: a recorder is already installed; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("fraise_http_requests_total", "HTTP requests by method, route template and status");
    describe_histogram!("fraise_http_request_duration_seconds", Unit::Seconds, "HTTP request latency by route");
    describe_counter!("fraise_logins_total", "Login attempts by outcome");
    describe_counter!("fraise_refreshes_total", "Refresh-token rotations by outcome");
    describe_counter!("fraise_registrations_total", "Accounts registered");
    describe_counter!("fraise_token_theft_detected_total", "Replayed refresh tokens (theft detections)");
    describe_counter!("fraise_rate_limited_total", "Requests refused by a rate limit, by bucket");
    describe_histogram!("fraise_hash_wait_seconds", Unit::Seconds, "Time a password hash waited for a hashing thread");
    describe_histogram!("fraise_hash_duration_seconds", Unit::Seconds, "Time one password hash or verify took");
    describe_counter!("fraise_hash_rejected_total", "Hashes refused because the queue was full (503)");
    describe_gauge!("fraise_hash_queue_depth", "Password hashes waiting for a thread");
    describe_gauge!("fraise_hash_running", "Password hashes running now");
    describe_gauge!("fraise_db_pool_connections", "Database connections by state (idle, in_use)");
    describe_gauge!("fraise_db_pool_max_connections", "Largest size of the database pool");
    describe_gauge!("fraise_tenants_open", "Tenants held open (TENANT_MAX_OPEN bounds it)");
    describe_counter!(
        "fraise_refresh_batch_statements_total",
        "PostgreSQL: statements that committed refresh rotations together"
    );
    describe_counter!("fraise_refresh_batch_rotations_total", "PostgreSQL: refresh rotations those statements carried");
    describe_counter!("fraise_refresh_batch_handed_back_total", "PostgreSQL: rotations handed back to run alone");
    describe_counter!(
        "fraise_refresh_batch_busy_microseconds_total",
        "PostgreSQL: time the rotation worker spent running batches (near 1 s per s: refreshes queue for it)"
    );
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and times every request under the route it matched.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("fraise_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("fraise_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    res
}

crate::openapi::error_set!(
    /// `METRICS_TOKEN` is set and the bearer is missing or wrong.
    MetricsErrors = &[(401, "UNAUTHORIZED")]
);

/// Prometheus metrics in the text exposition format (401 without the right bearer when
/// `METRICS_TOKEN` is set; absent when `METRICS_BIND` serves them on another listener).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4.", content_type = "text/plain", body = String),
        MetricsErrors,
    )
)]
pub async fn render(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.http.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            return ApiError::from(fraise_core::AuthError::Unauthorized).into_response();
        }
    }
    let Some(handle) = recorder() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed\n").into_response();
    };
    sample(&state);
    let mut res = handle.render().into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    res
}

/// The gauges that are read at scrape time.
fn sample(state: &AppState) {
    let pool = state.auth.pool();
    metrics::gauge!("fraise_hash_queue_depth").set(pool.queued() as f64);
    metrics::gauge!("fraise_hash_running").set(pool.running() as f64);
    let db = state.auth.store().pool_usage();
    metrics::gauge!("fraise_db_pool_connections", "state" => "idle").set(f64::from(db.idle));
    metrics::gauge!("fraise_db_pool_connections", "state" => "in_use").set(f64::from(db.open.saturating_sub(db.idle)));
    metrics::gauge!("fraise_db_pool_max_connections").set(f64::from(db.max));
    if let Some(c) = state.auth.store().session_cache() {
        metrics::gauge!("fraise_session_cache_live").set(if c.live { 1.0 } else { 0.0 });
        metrics::gauge!("fraise_session_cache_entries").set(c.entries as f64);
        metrics::counter!("fraise_session_cache_lookups_total", "outcome" => "hit").absolute(c.hits);
        metrics::counter!("fraise_session_cache_lookups_total", "outcome" => "miss").absolute(c.misses);
    }
    if let Some(b) = state.auth.store().rotation_batches() {
        metrics::counter!("fraise_refresh_batch_statements_total").absolute(b.statements);
        metrics::counter!("fraise_refresh_batch_rotations_total").absolute(b.rotations);
        metrics::counter!("fraise_refresh_batch_handed_back_total").absolute(b.handed_back);
        metrics::counter!("fraise_refresh_batch_busy_microseconds_total").absolute(b.busy_micros);
    }
    if let Some(t) = &state.tenants {
        metrics::gauge!("fraise_tenants_open").set(t.open_count() as f64);
    }
}

/// A router serving only `/metrics` (for `METRICS_BIND`, another listener).
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(render)).with_state(state)
}
