//! Extractors: the JSON body (with the envelope on every rejection), the calling client, and the
//! authenticated user.
//!
//! [`AuthUser`] is public API: another axum application puts an [`AuthService`] in its state
//! (`AuthService: FromRef<S>`) and takes `AuthUser` in its handlers to accept our access tokens,
//! with the same session checks as our own routes.
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use fraise_core::AuthError;
use fraise_core::AuthService;
use fraise_core::service::{ClientInfo, Principal};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Longest User-Agent kept with a session; the rest is cut (on a character boundary).
const MAX_USER_AGENT_CHARS: usize = 512;

/// A JSON request body. Rejections: 415 without a JSON content type, 413 over the body limit,
/// 400 VALIDATION_ERROR (with `field` where one field is at fault) for anything that does not
/// parse into `T`.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like [`JsonBody`], but an empty body (with or without a content type) is `T::default()`: for
/// routes whose every field is optional, such as logout with only a bearer.
#[derive(Debug, Clone)]
pub struct OptionalJsonBody<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        if !is_json(content_type.as_ref()) {
            return Err(ApiError::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

/// Reads the whole body under the configured limit: 413 above it, 400 if it cannot be read.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            ApiError::validation(None, "Could not read the request body")
        }
    })
}

fn is_json(content_type: Option<&axum::http::HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a body, naming the offending field where there is one, in words of our own (serde's
/// texts mention Rust types).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_error(&path, &inner)
    })?;
    de.end().map_err(|_| ApiError::validation(None, "Malformed JSON: unexpected data after the body"))?;
    Ok(value)
}

fn json_error(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::validation(None, "Malformed JSON body"),
        Category::Data => {
            let text = e.to_string();
            if let Some(missing) = text.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
                let field = if path == "." { missing.to_owned() } else { format!("{path}.{missing}") };
                return ApiError::validation(Some(field.clone()), format!("Field '{field}' is required"));
            }
            if path == "." {
                return ApiError::validation(None, "Request body must be a JSON object");
            }
            ApiError::validation(Some(path.to_owned()), format!("Field '{path}' has the wrong type or value"))
        }
    }
}

/// Who is calling: the client address (established once per request by
/// [`crate::protect::client_layer`], which reads `X-Forwarded-For` only from trusted proxies) and
/// the User-Agent. The one place every feature gets the client from.
#[derive(Debug, Clone)]
pub struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ip = match parts.extensions.get::<crate::protect::ClientAddr>() {
            Some(c) => Some(c.ip.to_string()),
            // Outside our layers (a host app's router): the socket peer.
            None => ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
                .await
                .ok()
                .map(|ConnectInfo(addr)| addr.ip().to_string()),
        };
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect::<String>())
            .filter(|ua| !ua.is_empty());
        Ok(Client(ClientInfo { ip, user_agent }))
    }
}

/// The raw bearer token of the `Authorization` header, if there is a well-formed one.
pub fn bearer(parts: &Parts) -> Result<Option<&str>, AuthError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AuthError::Unauthorized)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Unauthorized)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Unauthorized);
    }
    Ok(Some(token))
}

/// The service for this request: the tenant's (set by the tenant layer) when tenancy is on, else
/// the state's.
#[derive(Debug, Clone)]
pub struct Auth(pub AuthService);

fn service<S>(parts: &Parts, state: &S) -> AuthService
where
    AuthService: FromRef<S>,
{
    match parts.extensions.get::<crate::tenancy::TenantService>() {
        Some(t) => t.0.clone(),
        None => AuthService::from_ref(state),
    }
}

impl<S> FromRequestParts<S> for Auth
where
    S: Send + Sync,
    AuthService: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Auth(service(parts, state)))
    }
}

/// The authenticated caller: a valid access token whose session is live and whose user is active.
/// Rejects with 401 UNAUTHORIZED (no or malformed header), 401 INVALID_TOKEN / TOKEN_EXPIRED,
/// 403 ACCOUNT_DISABLED, or (`REQUIRE_MFA` and no second factor yet) 403 MFA_REQUIRED.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Principal);

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    AuthService: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer(parts)?.ok_or(AuthError::Unauthorized)?;
        let auth = service(parts, state);
        let p = auth.authenticate(token).await?;
        auth.enrolled_enough(&p)?;
        Ok(AuthUser(p))
    }
}

/// Like [`AuthUser`] without the `REQUIRE_MFA` check: for the routes that enroll a second factor
/// (and logout), which must work before there is one.
#[derive(Debug, Clone)]
pub struct EnrollingUser(pub Principal);

impl<S> FromRequestParts<S> for EnrollingUser
where
    S: Send + Sync,
    AuthService: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer(parts)?.ok_or(AuthError::Unauthorized)?;
        Ok(EnrollingUser(service(parts, state).authenticate(token).await?))
    }
}

/// Like [`AuthUser`], but absent when no `Authorization` header was sent.
#[derive(Debug)]
pub struct MaybeAuthUser(pub Option<Result<Principal, AuthError>>);

impl<S> FromRequestParts<S> for MaybeAuthUser
where
    S: Send + Sync,
    AuthService: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = match bearer(parts) {
            Ok(None) => return Ok(MaybeAuthUser(None)),
            Ok(Some(t)) => t,
            Err(e) => return Ok(MaybeAuthUser(Some(Err(e)))),
        };
        Ok(MaybeAuthUser(Some(service(parts, state).authenticate(token).await)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Login {
        #[allow(dead_code)]
        email: String,
        #[allow(dead_code)]
        password: String,
    }

    fn err(body: &str) -> ApiError {
        match parse_json::<Login>(body.as_bytes()) {
            Err(e) => e,
            Ok(v) => panic!("parsed {v:?}"),
        }
    }

    #[test]
    fn json_errors_name_the_field_in_our_words() {
        let e = err(r#"{"email": "a@b.co"}"#);
        assert_eq!((e.field.as_deref(), e.message.as_str()), (Some("password"), "Field 'password' is required"));
        let e = err(r#"{"email": 5, "password": "x"}"#);
        assert_eq!(e.field.as_deref(), Some("email"));
        let e = err(r#"{"email": null, "password": "x"}"#);
        assert_eq!(e.field.as_deref(), Some("email"));
        assert_eq!(err("{").message, "Malformed JSON body");
        assert_eq!(err("[]").message, "Request body must be a JSON object");
        assert_eq!(err(r#"{"email":"a","password":"b"} x"#).code, "VALIDATION_ERROR");
    }

    #[test]
    fn content_types() {
        use axum::http::HeaderValue;
        assert!(is_json(Some(&HeaderValue::from_static("application/json"))));
        assert!(is_json(Some(&HeaderValue::from_static("Application/JSON; charset=utf-8"))));
        assert!(is_json(Some(&HeaderValue::from_static("application/merge-patch+json"))));
        assert!(!is_json(Some(&HeaderValue::from_static("text/plain"))));
        assert!(!is_json(None));
    }
}
