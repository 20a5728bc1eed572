//! The HTTP face of errors: one envelope, one mapping.
//!
//! Every error response, from a handler, an extractor, the fallback or a caught panic, is
//! `{"detail": {"code", "message", "field"?}}`. [`status_and_code`] is the single `match` from
//! domain error to (status, code); a 5xx is logged with its whole cause chain and shows the client
//! nothing but the code.
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fraise_core::AuthError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<Duration>,
}

/// Every code this server answers with, its usual status, and when (API.md's table, for what is
/// built). `INVALID_TOKEN` is 400 at logout. The OpenAPI document takes its code enum and its
/// error descriptions from here.
pub const CODES: &[(&str, u16, &str)] = &[
    (
        "VALIDATION_ERROR",
        400,
        "Malformed JSON, a missing or mistyped field, a bad email, a weak password at register, an oversize field",
    ),
    ("EMAIL_ALREADY_EXISTS", 409, "An account with this email exists (case-insensitive)"),
    ("INVALID_CREDENTIALS", 401, "Wrong email or password: one answer for both"),
    ("ACCOUNT_LOCKED", 423, "Too many failed logins on this account from this client; see Retry-After"),
    ("ACCOUNT_DISABLED", 403, "The account is disabled"),
    ("EMAIL_NOT_VERIFIED", 403, "The email is not verified and REQUIRE_EMAIL_VERIFICATION is on"),
    ("RATE_LIMITED", 429, "A rate limit tripped; see Retry-After"),
    ("UNAUTHORIZED", 401, "No or malformed Authorization header"),
    (
        "INVALID_TOKEN",
        401,
        "Bad signature, wrong type, unknown or revoked session, wrong tenant, malformed refresh token (400 at logout)",
    ),
    ("TOKEN_EXPIRED", 401, "The access token has expired"),
    ("TOKEN_THEFT_DETECTED", 403, "A rotated refresh token was replayed outside the grace window: sessions revoked"),
    ("INVALID_RESET_TOKEN", 400, "Reset or verification token unknown, used or expired"),
    ("WEAK_PASSWORD", 400, "The new password fails the password policy"),
    ("SESSION_NOT_FOUND", 404, "Not the caller's session, or already revoked"),
    ("CANNOT_REVOKE_CURRENT_SESSION", 403, "The session in use cannot be revoked here: use logout"),
    ("NOT_FOUND", 404, "Unknown route"),
    ("METHOD_NOT_ALLOWED", 405, "Known route, unsupported method"),
    ("REQUEST_TIMEOUT", 408, "The request took longer than REQUEST_TIMEOUT_SECONDS"),
    ("PAYLOAD_TOO_LARGE", 413, "Body over MAX_BODY_BYTES"),
    ("UNSUPPORTED_MEDIA_TYPE", 415, "A body that is not application/json"),
    ("CSRF_FAILED", 403, "CSRF protection is on and X-CSRF-Token is missing or differs from the csrf_token cookie"),
    ("TENANT_NOT_FOUND", 404, "The named tenant does not exist"),
    (
        "MFA_REQUIRED",
        403,
        "REQUIRE_MFA is on and the caller has not enrolled a second factor: only the MFA routes work",
    ),
    ("INVALID_MFA_CODE", 401, "Wrong TOTP code, recovery code or passkey assertion"),
    ("MFA_TOKEN_EXPIRED", 401, "The login's mfa_token is expired, already used, or has spent its tries"),
    ("CREDENTIAL_NOT_FOUND", 404, "Not one of the caller's passkeys"),
    ("PASSKEYS_DISABLED", 404, "Passkeys are not configured on this server (WEBAUTHN_RP_ID, WEBAUTHN_ORIGIN)"),
    (
        "SERVICE_UNAVAILABLE",
        503,
        "Database unreachable, hashing queue full, or the server at capacity; see Retry-After",
    ),
    ("INTERNAL_ERROR", 500, "Anything else (the cause is logged, never shown)"),
];

/// The error envelope as it goes on the wire (and, renamed, in the OpenAPI document).
#[derive(Serialize, ToSchema)]
#[schema(as = ErrorEnvelope)]
struct Envelope<'a> {
    detail: Detail<'a>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ErrorDetail)]
struct Detail<'a> {
    /// One of the codes of API.md.
    #[schema(schema_with = code_schema)]
    code: &'a str,
    /// For humans; never shows internals.
    message: &'a str,
    /// The input field at fault, where exactly one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

fn code_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(CODES.iter().map(|c| c.0)))
        .build()
}

/// The envelope's schemas, named as the document references them (`ErrorEnvelope`, `ErrorDetail`).
pub fn envelope_schemas() -> Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)> {
    use utoipa::PartialSchema as _;
    vec![
        (<Envelope as ToSchema>::name().into_owned(), Envelope::schema()),
        (<Detail as ToSchema>::name().into_owned(), Detail::schema()),
    ]
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, retry_after: None }
    }

    pub fn validation(field: Option<String>, message: impl Into<String>) -> Self {
        Self { field, ..Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message) }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found")
    }

    /// The envelope for a bare status produced outside any handler (405 from the router, 413 from
    /// the body limit, 408 from a timeout...).
    pub fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("NOT_FOUND", "Not found"),
            StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", "Method not allowed"),
            StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", "Request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ("UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json"),
            StatusCode::REQUEST_TIMEOUT => ("REQUEST_TIMEOUT", "Request took too long"),
            StatusCode::UNAUTHORIZED => ("UNAUTHORIZED", "Authentication required"),
            StatusCode::TOO_MANY_REQUESTS => ("RATE_LIMITED", "Too many requests. Try again later."),
            StatusCode::SERVICE_UNAVAILABLE => ("SERVICE_UNAVAILABLE", "Service temporarily unavailable"),
            s if s.is_server_error() => ("INTERNAL_ERROR", "Internal server error"),
            _ => ("BAD_REQUEST", "Bad request"),
        };
        Self::new(status, code, message)
    }

    /// Logout answers token problems with 400, as the original reference documents.
    pub fn at_logout(self) -> Self {
        if self.code == "INVALID_TOKEN" || self.code == "TOKEN_EXPIRED" {
            Self { status: StatusCode::BAD_REQUEST, code: "INVALID_TOKEN", ..self }
        } else {
            self
        }
    }
}

/// The one mapping from a domain error to its HTTP status and API code.
pub fn status_and_code(e: &AuthError) -> (StatusCode, &'static str) {
    match e {
        AuthError::Validation { .. } => (StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
        AuthError::EmailAlreadyExists => (StatusCode::CONFLICT, "EMAIL_ALREADY_EXISTS"),
        AuthError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS"),
        AuthError::AccountLocked { .. } => (StatusCode::LOCKED, "ACCOUNT_LOCKED"),
        AuthError::AccountDisabled => (StatusCode::FORBIDDEN, "ACCOUNT_DISABLED"),
        AuthError::EmailNotVerified => (StatusCode::FORBIDDEN, "EMAIL_NOT_VERIFIED"),
        AuthError::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        AuthError::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "INVALID_TOKEN"),
        AuthError::TokenExpired => (StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED"),
        AuthError::TokenTheftDetected => (StatusCode::FORBIDDEN, "TOKEN_THEFT_DETECTED"),
        AuthError::SessionNotFound => (StatusCode::NOT_FOUND, "SESSION_NOT_FOUND"),
        AuthError::CannotRevokeCurrentSession => (StatusCode::FORBIDDEN, "CANNOT_REVOKE_CURRENT_SESSION"),
        AuthError::InvalidResetToken => (StatusCode::BAD_REQUEST, "INVALID_RESET_TOKEN"),
        AuthError::WeakPassword(_) => (StatusCode::BAD_REQUEST, "WEAK_PASSWORD"),
        AuthError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
        AuthError::TenantNotFound => (StatusCode::NOT_FOUND, "TENANT_NOT_FOUND"),
        AuthError::MfaRequired => (StatusCode::FORBIDDEN, "MFA_REQUIRED"),
        AuthError::InvalidMfaCode => (StatusCode::UNAUTHORIZED, "INVALID_MFA_CODE"),
        AuthError::MfaTokenExpired => (StatusCode::UNAUTHORIZED, "MFA_TOKEN_EXPIRED"),
        // Not configured: 404 like an absent route, with a code of its own that says why.
        AuthError::PasskeysDisabled => (StatusCode::NOT_FOUND, "PASSKEYS_DISABLED"),
        AuthError::CredentialNotFound => (StatusCode::NOT_FOUND, "CREDENTIAL_NOT_FOUND"),
        AuthError::Busy { .. } | AuthError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
        AuthError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
    }
}

/// How long a client should wait after a 503 caused by the database.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(5);

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let (status, code) = status_and_code(&e);
        let mut out = ApiError::new(status, code, "");
        out.message = match &e {
            AuthError::Validation { field, message } => {
                out.field = field.map(str::to_owned);
                message.clone()
            }
            AuthError::EmailAlreadyExists => "An account with this email already exists".into(),
            AuthError::InvalidCredentials => "Invalid email or password".into(),
            AuthError::AccountLocked { retry_after } => {
                out.retry_after = Some(*retry_after);
                "Too many failed login attempts. Try again later.".into()
            }
            AuthError::AccountDisabled => "Account is disabled".into(),
            AuthError::EmailNotVerified => "Email address is not verified".into(),
            AuthError::Unauthorized => "Authentication required".into(),
            AuthError::InvalidToken(why) => {
                tracing::debug!(reason = why, "token refused");
                "Token is invalid or expired".into()
            }
            AuthError::TokenExpired => "Token has expired".into(),
            AuthError::TokenTheftDetected => {
                "Token theft detected: a refresh token was reused. Sessions have been revoked; please log in again."
                    .into()
            }
            AuthError::SessionNotFound => "Session not found".into(),
            AuthError::CannotRevokeCurrentSession => {
                "Cannot revoke the current session; use /auth/logout instead".into()
            }
            AuthError::InvalidResetToken => "Token is invalid, already used or expired".into(),
            AuthError::WeakPassword(message) => {
                out.field = Some("new_password".into());
                message.clone()
            }
            AuthError::RateLimited { retry_after } => {
                out.retry_after = Some(*retry_after);
                "Too many requests. Try again later.".into()
            }
            AuthError::TenantNotFound => "Tenant not found".into(),
            AuthError::MfaRequired => "Multi-factor authentication must be set up first (/auth/mfa/totp/setup)".into(),
            AuthError::InvalidMfaCode => "Invalid MFA code".into(),
            AuthError::MfaTokenExpired => "MFA token is invalid, expired or used up; log in again".into(),
            AuthError::PasskeysDisabled => "Passkeys are not enabled on this server".into(),
            AuthError::CredentialNotFound => "Passkey not found".into(),
            AuthError::Busy { retry_after } => {
                out.retry_after = Some(*retry_after);
                "Server is busy. Try again shortly.".into()
            }
            AuthError::Unavailable(source) => {
                tracing::error!(error = ?source, "dependency unavailable");
                out.retry_after = Some(UNAVAILABLE_RETRY_AFTER);
                "Service temporarily unavailable".into()
            }
            AuthError::Internal(source) => {
                tracing::error!(error = ?source, "internal error");
                "Internal server error".into()
            }
        };
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            Envelope { detail: Detail { code: self.code, message: &self.message, field: self.field.as_deref() } };
        let mut res = (self.status, axum::Json(body)).into_response();
        let headers = res.headers_mut();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = match self.code {
                "INVALID_TOKEN" | "TOKEN_EXPIRED" => "Bearer error=\"invalid_token\"",
                _ => "Bearer",
            };
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_error_has_its_documented_status_and_code() {
        let cases: Vec<(AuthError, u16, &str)> = vec![
            (AuthError::validation("email", "x"), 400, "VALIDATION_ERROR"),
            (AuthError::EmailAlreadyExists, 409, "EMAIL_ALREADY_EXISTS"),
            (AuthError::InvalidCredentials, 401, "INVALID_CREDENTIALS"),
            (AuthError::AccountLocked { retry_after: Duration::from_secs(3) }, 423, "ACCOUNT_LOCKED"),
            (AuthError::AccountDisabled, 403, "ACCOUNT_DISABLED"),
            (AuthError::EmailNotVerified, 403, "EMAIL_NOT_VERIFIED"),
            (AuthError::Unauthorized, 401, "UNAUTHORIZED"),
            (AuthError::InvalidToken("x"), 401, "INVALID_TOKEN"),
            (AuthError::TokenExpired, 401, "TOKEN_EXPIRED"),
            (AuthError::TokenTheftDetected, 403, "TOKEN_THEFT_DETECTED"),
            (AuthError::SessionNotFound, 404, "SESSION_NOT_FOUND"),
            (AuthError::CannotRevokeCurrentSession, 403, "CANNOT_REVOKE_CURRENT_SESSION"),
            (AuthError::InvalidResetToken, 400, "INVALID_RESET_TOKEN"),
            (AuthError::WeakPassword("x".into()), 400, "WEAK_PASSWORD"),
            (AuthError::RateLimited { retry_after: Duration::from_secs(9) }, 429, "RATE_LIMITED"),
            (AuthError::TenantNotFound, 404, "TENANT_NOT_FOUND"),
            (AuthError::MfaRequired, 403, "MFA_REQUIRED"),
            (AuthError::InvalidMfaCode, 401, "INVALID_MFA_CODE"),
            (AuthError::MfaTokenExpired, 401, "MFA_TOKEN_EXPIRED"),
            (AuthError::PasskeysDisabled, 404, "PASSKEYS_DISABLED"),
            (AuthError::CredentialNotFound, 404, "CREDENTIAL_NOT_FOUND"),
            (AuthError::Busy { retry_after: Duration::from_secs(1) }, 503, "SERVICE_UNAVAILABLE"),
            (AuthError::Unavailable("db down".into()), 503, "SERVICE_UNAVAILABLE"),
            (AuthError::Internal("bug".into()), 500, "INTERNAL_ERROR"),
        ];
        for (e, status, code) in cases {
            let (s, c) = status_and_code(&e);
            assert_eq!((s.as_u16(), c), (status, code), "{e:?}");
        }
    }

    #[test]
    fn every_code_the_mappings_produce_is_in_the_code_table_with_its_status() {
        let listed = |code: &str, status: u16| CODES.iter().any(|c| c.0 == code && c.1 == status);
        let domain = [
            AuthError::validation("email", "x"),
            AuthError::EmailAlreadyExists,
            AuthError::InvalidCredentials,
            AuthError::AccountLocked { retry_after: Duration::from_secs(3) },
            AuthError::AccountDisabled,
            AuthError::EmailNotVerified,
            AuthError::Unauthorized,
            AuthError::InvalidToken("x"),
            AuthError::TokenExpired,
            AuthError::TokenTheftDetected,
            AuthError::SessionNotFound,
            AuthError::CannotRevokeCurrentSession,
            AuthError::InvalidResetToken,
            AuthError::WeakPassword("x".into()),
            AuthError::RateLimited { retry_after: Duration::from_secs(9) },
            AuthError::TenantNotFound,
            AuthError::MfaRequired,
            AuthError::InvalidMfaCode,
            AuthError::MfaTokenExpired,
            AuthError::PasskeysDisabled,
            AuthError::CredentialNotFound,
            AuthError::Busy { retry_after: Duration::from_secs(1) },
            AuthError::Unavailable("x".into()),
            AuthError::Internal("x".into()),
        ];
        for e in &domain {
            let (status, code) = status_and_code(e);
            assert!(listed(code, status.as_u16()), "{code} {status}");
        }
        // The statuses the layers produce. Not listed: for_status's catch-all `BAD_REQUEST`, which
        // is not an API.md code; it answers an axum rejection the envelope guard rewrites, e.g.
        // `DELETE /auth/sessions/%FF` with a valid bearer (a path that is not UTF-8).
        for status in [404, 405, 408, 413, 415, 401, 429, 503, 500] {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let e = ApiError::for_status(status);
            assert!(listed(e.code, status.as_u16()), "{} {status}", e.code);
        }
        assert!(listed("CSRF_FAILED", 403));
    }

    #[test]
    fn internal_errors_show_nothing_of_their_cause() {
        let e = ApiError::from(AuthError::Internal("relation tb_user does not exist".into()));
        assert_eq!(e.message, "Internal server error");
    }

    #[test]
    fn busy_and_unavailable_carry_retry_after_and_401_a_challenge() {
        let res = ApiError::from(AuthError::Busy { retry_after: Duration::from_secs(1) }).into_response();
        assert_eq!(res.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
        let res = ApiError::from(AuthError::Unauthorized).into_response();
        assert_eq!(res.headers().get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()), Some(&b"Bearer"[..]));
    }

    #[test]
    fn logout_turns_token_errors_into_400() {
        let e = ApiError::from(AuthError::TokenExpired).at_logout();
        assert_eq!((e.status.as_u16(), e.code), (400, "INVALID_TOKEN"));
        let e = ApiError::from(AuthError::AccountDisabled).at_logout();
        assert_eq!(e.status.as_u16(), 403);
    }
}
