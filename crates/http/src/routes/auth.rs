//! `/auth/*`: register, login, refresh, logout, me. Handlers only translate: every decision is
//! the service's.
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fraise_core::service::{LoginOutcome, LogoutRequest as Logout};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::dto::{
    AuthBody, LoginBody, LoginRequest, LogoutRequest, MessageBody, MfaRequiredBody, RefreshRequest, RegisterRequest,
    TokenBody, UserBody,
};
use crate::error::ApiError;
use crate::extract::{Auth, AuthUser, Client, JsonBody, MaybeAuthUser, OptionalJsonBody};
use crate::openapi::{BearerErrors, error_set};
use crate::{AppState, cookies};

error_set!(RegisterErrors = &[(400, "VALIDATION_ERROR"), (409, "EMAIL_ALREADY_EXISTS")]);
error_set!(
    LoginErrors = &[
        (400, "VALIDATION_ERROR"),
        (401, "INVALID_CREDENTIALS"),
        (403, "ACCOUNT_DISABLED"),
        (403, "EMAIL_NOT_VERIFIED"),
        (423, "ACCOUNT_LOCKED"),
    ]
);
error_set!(
    RefreshErrors = &[
        (400, "VALIDATION_ERROR"),
        (401, "INVALID_TOKEN"),
        (403, "TOKEN_THEFT_DETECTED"),
        (403, "ACCOUNT_DISABLED"),
        (403, "EMAIL_NOT_VERIFIED"),
    ]
);
error_set!(
    /// Token problems are 400 here (`ApiError::at_logout`); a bearer alone that fails is 401.
    LogoutErrors = &[
        (400, "VALIDATION_ERROR"),
        (400, "INVALID_TOKEN"),
        (401, "UNAUTHORIZED"),
        (403, "TOKEN_THEFT_DETECTED"),
        (403, "ACCOUNT_DISABLED"),
    ]
);

/// Token-bearing responses must not be cached by browsers or proxies (RFC 6749 §5.1); the whole
/// group gets `Cache-Control: no-store` and `Pragma: no-cache`.
pub fn router() -> OpenApiRouter<AppState> {
    let no_store = SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let no_cache = SetResponseHeaderLayer::overriding(header::PRAGMA, HeaderValue::from_static("no-cache"));
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me, super::account::patch_me))
        .merge(super::sessions::router())
        .merge(super::account::router())
        .merge(super::webauthn::router())
        .merge(super::mfa::router())
        .layer(no_store)
        .layer(no_cache)
}

/// Puts the refresh token where `TOKEN_TRANSPORT` says: the body, the cookie, or both.
pub(super) fn deliver(state: &AppState, status: StatusCode, mut body: TokenBody, user: Option<UserBody>) -> Response {
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

/// Creates an account and its first session.
#[utoipa::path(
    post,
    path = "/register",
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created, logged in. With `TOKEN_TRANSPORT=cookie` the refresh token is only in the `fraise_refresh` cookie (`Set-Cookie`).", body = AuthBody),
        RegisterErrors,
    )
)]
async fn register(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Client(client): Client,
    JsonBody(body): JsonBody<RegisterRequest>,
) -> Result<Response, ApiError> {
    let out = auth.register(&body.email, &body.password, body.name.as_deref(), &client).await?;
    Ok(deliver(&state, StatusCode::CREATED, out.tokens.into(), Some(UserBody::from(&out.user))))
}

/// Starts a session.
#[utoipa::path(
    post,
    path = "/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in (`AuthBody`). With `TOKEN_TRANSPORT=cookie` the refresh token is only in the `fraise_refresh` cookie (`Set-Cookie`). A user with a second factor gets `MfaRequiredBody` instead, and no session: finish with `POST /auth/mfa/verify` or a passkey.", body = LoginBody),
        LoginErrors,
    )
)]
async fn login(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Client(client): Client,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    Ok(match auth.login(&body.email, &body.password, &client).await? {
        LoginOutcome::Authenticated(out) => {
            deliver(&state, StatusCode::OK, out.tokens.into(), Some(UserBody::from(&out.user)))
        }
        LoginOutcome::MfaRequired(m) => Json(MfaRequiredBody {
            mfa_required: true,
            mfa_token: m.mfa_token,
            methods: m.methods,
            expires_at: m.expires_at,
        })
        .into_response(),
    })
}

/// Rotates the refresh token: the presented one is spent, a new pair is issued. Replaying a spent
/// token (outside the grace window) is theft and revokes sessions.
#[utoipa::path(
    post,
    path = "/refresh",
    tag = "auth",
    request_body(content = Option<RefreshRequest>, description = "May be empty when the token travels in the cookie."),
    params(("fraise_refresh" = Option<String>, Cookie, description = "The refresh token, with `TOKEN_TRANSPORT=cookie` or `both` (read when the body names none).")),
    responses(
        (status = 200, description = "A new token pair.", body = TokenBody),
        RefreshErrors,
    )
)]
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

/// Ends a session, or every session of the user.
///
/// `{"refresh_token"}` (or the cookie) ends that session; a bearer alone ends its own session; a
/// bearer with `{"all": true}` ends every session of the user. A bearer that no longer verifies is
/// ignored when a refresh token is given (logging out with an expired access token is normal).
#[utoipa::path(
    post,
    path = "/logout",
    tag = "auth",
    request_body(content = Option<LogoutRequest>, description = "May be empty with a bearer alone, or when the token travels in the cookie."),
    params(("fraise_refresh" = Option<String>, Cookie, description = "The refresh token, with `TOKEN_TRANSPORT=cookie` or `both`.")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Logged out (cookies cleared with cookie transport).", body = MessageBody, example = json!({"message": "Successfully logged out"})),
        LogoutErrors,
    )
)]
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

/// The caller's account.
#[utoipa::path(
    get,
    path = "/me",
    tag = "account",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller.", body = UserBody), BearerErrors)
)]
async fn me(AuthUser(p): AuthUser) -> Json<UserBody> {
    Json(UserBody::from(&p.user))
}
