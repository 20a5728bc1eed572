//! `GET /.well-known/jwks.json`: the public keys that verify access tokens, so other services can
//! check our tokens without sharing a secret.
//!
//! Mounted at the root (not under `AUTH_PREFIX`), where RFC 8414 clients look. With HS256 the set
//! is empty: a shared secret is never published. Keys are the same for every tenant, so no tenant
//! is needed. Cacheable for 5 minutes, which is why a new key should verify (be published) for at
//! least that long before it signs (see the README, "Keys and rotation").
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use fraise_core::AuthService;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// Where the key set lives.
pub const PATH: &str = "/.well-known/jwks.json";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks))
}

/// The JSON Web Key Set (RFC 7517) of the keys that verify access tokens: Ed25519 (`OKP`) or RSA
/// public keys with `kid`, `alg` and `use: sig`; empty with HS256.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "meta",
    responses((status = 200, description = "The key set; `Cache-Control: public, max-age=300`.", content_type = "application/json", body = Object))
)]
async fn jwks(State(auth): State<AuthService>) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(auth.jwks()))
}
