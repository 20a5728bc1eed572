//! `/auth/*`: register, login, refresh, logout, me. Handlers only translate: every decision is
//! the service's.
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fraise_core::service::LogoutRequest as Logout;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::dto::{
    AuthBody, LoginRequest, LogoutRequest, MessageBody, RefreshRequest, RegisterRequest, TokenBody, UserBody,
};
use crate::error::ApiError;
use crate::extract::{Auth, AuthUser, Client, JsonBody, MaybeAuthUser, OptionalJsonBody};
use crate::{AppState, cookies};

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

/// Puts the refresh token where `TOKEN_TRANSPORT` says: the body, the cookie, or both.
fn deliver(state: &AppState, status: StatusCode, mut body: TokenBody, user: Option<UserBody>) -> Response {
    let transport = state.http.token_transport;
    let refresh = body.refresh_token.clone().unwrap_or_default();
    if !transport.uses_body() {
        body.refresh_token = None;
    }
    let mut res = match user {
        Some(user) => (status, Json(AuthBody { user, tokens: body })).into_response(),
        None => (status, Json(body)).into_response(),
    };
    if transport.uses_cookie() {
        cookies::set_session_cookies(&mut res, &refresh, &state.http.auth_prefix, state.http.refresh_cookie_max_age);
    }
    res
}

/// The refresh token from the body, else (cookie transport) from the cookie.
fn presented_refresh(state: &AppState, headers: &HeaderMap, body: Option<String>) -> Option<String> {
    body.or_else(|| {
        state
            .http
            .token_transport
            .uses_cookie()
            .then(|| cookies::cookie(headers, cookies::REFRESH_COOKIE).map(str::to_owned))
            .flatten()
    })
}

async fn register(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Client(client): Client,
    JsonBody(body): JsonBody<RegisterRequest>,
) -> Result<Response, ApiError> {
    let out = auth.register(&body.email, &body.password, body.name.as_deref(), &client).await?;
    Ok(deliver(&state, StatusCode::CREATED, out.tokens.into(), Some(UserBody::from(&out.user))))
}

async fn login(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Client(client): Client,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let out = auth.login(&body.email, &body.password, &client).await?;
    Ok(deliver(&state, StatusCode::OK, out.tokens.into(), Some(UserBody::from(&out.user))))
}

async fn refresh(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Client(client): Client,
    headers: HeaderMap,
    OptionalJsonBody(body): OptionalJsonBody<RefreshRequest>,
) -> Result<Response, ApiError> {
    let token = presented_refresh(&state, &headers, body.refresh_token)
        .ok_or_else(|| ApiError::validation(Some("refresh_token".into()), "Field 'refresh_token' is required"))?;
    let tokens = auth.refresh(&token, &client).await?;
    Ok(deliver(&state, StatusCode::OK, tokens.into(), None))
}

/// `{"refresh_token"}` (or the cookie) ends that session; a bearer alone ends its own session; a
/// bearer with `{"all": true}` ends every session of the user. A bearer that no longer verifies is
/// ignored when a refresh token is given (logging out with an expired access token is normal).
async fn logout(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Client(client): Client,
    MaybeAuthUser(bearer): MaybeAuthUser,
    headers: HeaderMap,
    OptionalJsonBody(body): OptionalJsonBody<LogoutRequest>,
) -> Result<Response, ApiError> {
    let refresh_token = presented_refresh(&state, &headers, body.refresh_token);
    let principal = match bearer {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(_)) if refresh_token.is_some() && body.all != Some(true) => None,
        Some(Err(e)) => return Err(ApiError::from(e).at_logout()),
    };
    let req = Logout {
        principal: principal.as_ref(),
        refresh_token: refresh_token.as_deref(),
        all: body.all.unwrap_or(false),
    };
    auth.logout(req, &client).await.map_err(|e| ApiError::from(e).at_logout())?;
    let mut res = Json(MessageBody { message: "Successfully logged out" }).into_response();
    if state.http.token_transport.uses_cookie() {
        cookies::clear_session_cookies(&mut res, &state.http.auth_prefix);
    }
    Ok(res)
}

async fn me(AuthUser(p): AuthUser) -> Json<UserBody> {
    Json(UserBody::from(&p.user))
}
