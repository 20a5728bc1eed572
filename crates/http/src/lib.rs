//! fraise-http: the axum face of fraise-auth.
//!
//! Translates HTTP to calls on [`AuthService`] and back; decides nothing about authentication
//! itself. Embeddable: [`app`] gives a `Router` another application can nest or serve, [`serve`]
//! runs one on a listener until a shutdown future resolves, and [`extract::AuthUser`] protects any
//! axum route with our access tokens.
//!
//! | module | owns |
//! |---|---|
//! | [`error`] | the error envelope and the one domain-error → (status, code) mapping |
//! | [`extract`] | JSON body, client info, bearer/`AuthUser` extractors |
//! | [`dto`] | request and response bodies |
//! | [`routes`] | one file per route group |
//! | `layers` | request id, panic catching, the envelope guard, body limit |
//! | [`protect`] | client IP behind trusted proxies, security headers, CORS |
//! | [`metrics`] | Prometheus `/metrics`: request counts and latency, and the service's own counters |
//! | [`limits`] | GCRA rate limits per client, general and auth buckets |
//! | [`tenancy`] | which tenant a request is for, and its service |
//! | [`cookies`] | refresh token in an HttpOnly cookie, double-submit CSRF |
//! | [`openapi`] | the OpenAPI document, generated from the handlers on its first request |
//! | [`docs`] | `/docs`: Swagger UI, served from the binary |
//! | [`ui`] | `/ui/`: the hosted account page and the JS client, served from the binary |
#![forbid(unsafe_code)]

pub mod cookies;
pub mod docs;
pub mod dto;
pub mod error;
pub mod extract;
mod layers;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod protect;
pub mod routes;
mod server;
pub mod tenancy;
pub mod ui;

use std::future::Future;

use axum::Router;
use axum::extract::FromRef;
use fraise_core::AuthService;
use tokio::net::TcpListener;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;

pub use error::ApiError;
pub use extract::{AuthUser, JsonBody};
pub use layers::with_layers;
pub use server::{ServeOptions, serve_with};

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where the auth routes live (default `/auth`), for embedding.
    pub auth_prefix: String,
    /// Largest accepted request body, in bytes (default 64 KiB).
    pub body_limit: usize,
    /// Longest a request may take, body upload included, before a 408 (default 30 s).
    pub request_timeout: std::time::Duration,
    /// Client IP, security headers, CORS.
    pub protection: protect::Protection,
    /// Rate limits; `None` turns them off (`ENABLE_RATE_LIMITING=false`).
    pub limits: Option<limits::LimitSettings>,
    /// Where refresh tokens travel (`TOKEN_TRANSPORT`).
    pub token_transport: cookies::TokenTransport,
    /// Double-submit CSRF check on cookie-carrying state changes (`ENABLE_CSRF_PROTECTION`).
    pub csrf: bool,
    /// Lifetime of the refresh cookie, seconds (the refresh-token TTL).
    pub refresh_cookie_max_age: i64,
    /// Requests handled at once; more are refused at once with 503 (load shedding).
    pub max_concurrent_requests: usize,
    /// How a request names its tenant (`TENANT_RESOLUTION_METHOD`).
    pub tenancy: tenancy::TenantResolution,
    /// Whether `/metrics` is served by this router (off when `METRICS_BIND` moves it to another
    /// listener, or `METRICS_ENABLED=false`).
    pub metrics_route: bool,
    /// Bearer token `/metrics` requires (`METRICS_TOKEN`).
    pub metrics_token: Option<MetricsToken>,
    /// Serve the Swagger UI page at `/docs` (`DOCS_ENABLED`); `/openapi.json` is always served.
    pub docs: bool,
    /// Serve the hosted account page at `/ui/` (`UI_ENABLED`).
    pub ui: bool,
}

/// The `/metrics` bearer token; `Debug` does not show it.
#[derive(Clone)]
pub struct MetricsToken(pub String);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken([redacted])")
    }
}

impl std::ops::Deref for MetricsToken {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            auth_prefix: "/auth".to_owned(),
            body_limit: 64 * 1024,
            request_timeout: std::time::Duration::from_secs(30),
            protection: protect::Protection::default(),
            limits: Some(limits::LimitSettings {
                general_per_minute: 60,
                auth_per_minute: 5,
                allowlist: Vec::new(),
                redis: None,
            }),
            token_transport: cookies::TokenTransport::Json,
            csrf: false,
            refresh_cookie_max_age: 30 * 24 * 3600,
            max_concurrent_requests: 1024,
            tenancy: tenancy::TenantResolution::None,
            metrics_route: true,
            metrics_token: None,
            docs: true,
            ui: false,
        }
    }
}

/// What every handler can reach. Cloned for every extractor that takes it, so every part is
/// shared (a profile showed per-request copies of the configuration costing ~5% of a request).
#[derive(Debug, Clone)]
pub struct AppState {
    pub auth: AuthService,
    pub http: std::sync::Arc<HttpConfig>,
    /// The rate limiter built from `http.limits` (shared by the layer and `/health`).
    pub limits: Option<std::sync::Arc<limits::Limits>>,
    /// The tenants, when `http.tenancy` is not `None`.
    pub tenants: Option<std::sync::Arc<fraise_core::tenant::Tenants>>,
}

impl AppState {
    /// Fails only for a malformed `REDIS_URL`.
    pub fn new(auth: AuthService, http: HttpConfig) -> Result<Self, String> {
        let limits = match &http.limits {
            Some(l) => Some(std::sync::Arc::new(limits::Limits::new(l, &http.auth_prefix)?)),
            None => None,
        };
        // Installed before the first request, so every counter is captured from the start.
        let _ = metrics::recorder();
        Ok(Self { auth, http: std::sync::Arc::new(http), limits, tenants: None })
    }

    /// Serves `tenants` (required when `http.tenancy` is not `None`).
    pub fn with_tenants(mut self, tenants: std::sync::Arc<fraise_core::tenant::Tenants>) -> Self {
        self.tenants = Some(tenants);
        self
    }
}

impl FromRef<AppState> for AuthService {
    fn from_ref(s: &AppState) -> Self {
        s.auth.clone()
    }
}

/// Every API route, each registered from its own `#[utoipa::path]` (see [`openapi`]): the router
/// and the document cannot list different routes, because both come from this one value. Its
/// `/openapi.json` keeps the document it serves in a slot of its own, filled on the first request.
pub fn documented_routes(state: &AppState) -> OpenApiRouter<AppState> {
    // Layers cost every request a boxed future (callgrind): only where they have work to do.
    let auth = match state.http.tenancy {
        tenancy::TenantResolution::None => routes::auth::router(),
        _ => routes::auth::router()
            .route_layer(axum::middleware::from_fn_with_state(state.clone(), tenancy::tenant_layer)),
    };
    let router = OpenApiRouter::new()
        .nest(&state.http.auth_prefix, auth)
        .merge(routes::health::router())
        .merge(routes::jwks::router())
        .routes(routes!(openapi::openapi_json).layer(axum::Extension(openapi::Document::default())));
    if state.http.metrics_route { router.routes(routes!(metrics::render)) } else { router }
}

/// The OpenAPI document of this deployment (`GET /openapi.json` serves it, serialized).
pub fn openapi(state: &AppState) -> utoipa::openapi::OpenApi {
    let doc = documented_routes(state).into_openapi();
    openapi::finish(doc, &state.http)
}

/// The routes, without the cross-cutting layers (see [`with_layers`]); useful to add routes
/// that must sit under the same layers.
pub fn routes(state: &AppState) -> Router<AppState> {
    let router = Router::from(documented_routes(state));
    let router = if state.http.docs { router.merge(docs::router("/openapi.json")) } else { router };
    if state.http.ui { router.merge(ui::router(&state.http.auth_prefix, state.http.token_transport)) } else { router }
}

/// The complete application: routes, fallback, and every layer.
pub fn app(state: AppState) -> Router {
    let router = routes(&state);
    with_layers(router, state)
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests, with
/// the default [`ServeOptions`]. The peer address is made available to handlers (client IP).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, ServeOptions::default()).await
}
