//! The layers every response passes through, outermost first:
//!
//! 1. CORS (when origins are configured);
//! 2. client address and security headers (see `protect`), so even a 404 or a 429 carries them;
//! 3. request id: taken from `X-Request-Id` or generated, echoed back; then the trace span that
//!    carries it, so every log line names its request;
//!    then the metrics layer (request count and latency by route and status);
//! 4. load shedding past `max_concurrent_requests` (503 at once, no unbounded queue);
//! 5. rate limits (see `limits`), then the CSRF check (see `cookies`);
//! 6. envelope guard: any error response that is not already JSON (405 from the router, 413
//!    from the body limit, ...) is rewritten into the API envelope;
//! 7. panic catcher: a handler that panics yields a 500 envelope and the process keeps serving;
//! 8. request timeout (408 in the envelope), so a slow client cannot hold a task forever;
//! 9. body limit.
use std::any::Any;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::error::ApiError;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds the fallback and the cross-cutting layers to `router` and binds the state.
pub fn with_layers(router: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.http.body_limit;
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(state.http.max_concurrent_requests.max(1)));
    let protection = std::sync::Arc::new(state.http.protection.clone());
    let cors = protection.cors.as_ref().map(crate::protect::cors_layer);
    let limits = state.limits.clone().map(|l| middleware::from_fn_with_state(l, crate::limits::limit_layer));
    let timeout = TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.http.request_timeout);
    router
        .fallback(|| async { ApiError::not_found() })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let id = req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok());
                    tracing::info_span!("request", id = id.unwrap_or("-"), method = %req.method(), path = %req.uri().path())
                }))
                // Outside shedding and limits, so their 503s and 429s are counted too.
                .layer(middleware::from_fn(crate::metrics::track))
                // Load shedding: beyond the cap, refuse at once rather than queue without bound.
                // One semaphore for the whole router (axum applies layers per route, so tower's
                // ConcurrencyLimit would count per route).
                .layer(middleware::from_fn_with_state(in_flight, shed))
                // After the request id (a 429 carries one too), inside the client layer (it keys on
                // the client), before any work is done for the request.
                .option_layer(limits)
                .option_layer(state.http.csrf.then(|| middleware::from_fn_with_state(state.clone(), crate::cookies::csrf_layer)))
                .layer(middleware::from_fn(envelope_guard))
                .layer(CatchPanicLayer::custom(on_panic))
                .layer(timeout),
        )
        .layer(middleware::from_fn_with_state(protection, crate::protect::client_layer))
        .layer(tower::util::option_layer(cors))
        .with_state(state)
}

/// Rewrites error responses that some layer produced without our envelope.
async fn envelope_guard(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json =
        res.headers().get(header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"application/json"));
    if is_json {
        return res;
    }
    let (mut parts, _) = res.into_parts();
    let mut fresh = ApiError::for_status(status).into_response();
    // Keep what the original said that still applies (Allow on a 405, Retry-After...).
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.remove(&name) {
            fresh.headers_mut().insert(name, v);
        }
    }
    fresh
}

async fn shed(
    axum::extract::State(in_flight): axum::extract::State<std::sync::Arc<tokio::sync::Semaphore>>,
    req: Request,
    next: Next,
) -> Response {
    // Probes are cheap and must keep answering, or an orchestrator restarts a busy but healthy node.
    let path = req.uri().path();
    if path == "/health" || path.starts_with("/health/") || path == "/metrics" {
        return next.run(req).await;
    }
    let Ok(_permit) = in_flight.try_acquire_owned() else {
        let mut err = ApiError::for_status(StatusCode::SERVICE_UNAVAILABLE);
        err.message = "Server is at capacity. Try again shortly.".into();
        err.retry_after = Some(std::time::Duration::from_secs(1));
        return err.into_response();
    };
    next.run(req).await
}

fn on_panic(payload: Box<dyn Any + Send + 'static>) -> Response {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    tracing::error!(panic = %what, "handler panicked");
    let mut res = ApiError::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
