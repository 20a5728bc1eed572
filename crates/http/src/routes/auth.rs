//! `/auth/*`: register, login, refresh, logout, me. Handlers only translate: every decision is
//! the service's.
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use fraise_core::AuthService;
use fraise_core::service::LogoutRequest as Logout;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;
use crate::dto::{
    AuthBody, LoginRequest, LogoutRequest, MessageBody, RefreshRequest, RegisterRequest, TokenBody, UserBody,
};
use crate::error::ApiError;
use crate::extract::{AuthUser, Client, JsonBody, MaybeAuthUser, OptionalJsonBody};

/// Token-bearing responses must not be cached by browsers or proxies (RFC 6749 §5.1); the whole
/// group gets `Cache-Control: no-store` and `Pragma: no-cache`.
pub fn router() -> Router<AppState> {
    let no_store = SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let no_cache = SetResponseHeaderLayer::overriding(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Router::new()
        .route("/register", post(register))
        .route("/login", post(login))
        .route("/refresh", post(refresh))
        .route("/logout", post(logout))
        .route("/me", get(me).patch(super::account::patch_me))
        .merge(super::sessions::router())
        .merge(super::account::router())
        .layer(no_store)
        .layer(no_cache)
}

async fn register(
    State(auth): State<AuthService>,
    Client(client): Client,
    JsonBody(body): JsonBody<RegisterRequest>,
) -> Result<(StatusCode, Json<AuthBody>), ApiError> {
    let out = auth.register(&body.email, &body.password, body.name.as_deref(), &client).await?;
    Ok((StatusCode::CREATED, Json(out.into())))
}

async fn login(
    State(auth): State<AuthService>,
    Client(client): Client,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Json<AuthBody>, ApiError> {
    Ok(Json(auth.login(&body.email, &body.password, &client).await?.into()))
}

async fn refresh(
    State(auth): State<AuthService>,
    Client(client): Client,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Json<TokenBody>, ApiError> {
    Ok(Json(auth.refresh(&body.refresh_token, &client).await?.into()))
}

/// `{"refresh_token"}` ends that session; a bearer alone ends its own session; a bearer with
/// `{"all": true}` ends every session of the user. A bearer that no longer verifies is ignored
/// when a refresh token is given (logging out with an expired access token is normal).
async fn logout(
    State(auth): State<AuthService>,
    Client(client): Client,
    MaybeAuthUser(bearer): MaybeAuthUser,
    OptionalJsonBody(body): OptionalJsonBody<LogoutRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    let principal = match bearer {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(_)) if body.refresh_token.is_some() && body.all != Some(true) => None,
        Some(Err(e)) => return Err(ApiError::from(e).at_logout()),
    };
    let req = Logout {
        principal: principal.as_ref(),
        refresh_token: body.refresh_token.as_deref(),
        all: body.all.unwrap_or(false),
    };
    auth.logout(req, &client).await.map_err(|e| ApiError::from(e).at_logout())?;
    Ok(Json(MessageBody { message: "Successfully logged out" }))
}

async fn me(AuthUser(p): AuthUser) -> Json<UserBody> {
    Json(UserBody::from(&p.user))
}
