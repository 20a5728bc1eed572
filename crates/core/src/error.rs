//! The domain's errors.
//!
//! [`AuthError`] is what the service tells its callers; the HTTP layer maps each variant to one
//! (status, code) pair in a single `match`. [`StoreError`] is what a storage backend may say; it is
//! turned into an `AuthError` at the service boundary, where its cause is kept for the log only.
use std::time::Duration;

/// Why an authentication operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Input that is malformed or breaks a rule; `field` names the one input at fault, if one is.
    #[error("{message}")]
    Validation { field: Option<&'static str>, message: String },
    #[error("an account with this email already exists")]
    EmailAlreadyExists,
    /// Wrong email or wrong password: deliberately one variant for both.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("account locked")]
    AccountLocked { retry_after: Duration },
    #[error("account disabled")]
    AccountDisabled,
    #[error("email not verified")]
    EmailNotVerified,
    /// No credentials, or credentials in the wrong shape (e.g. no `Bearer` header).
    #[error("authentication required")]
    Unauthorized,
    /// A token that is not (or no longer) good: the reason is for logs and `token verify`.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    #[error("token expired")]
    TokenExpired,
    #[error("refresh token reuse detected")]
    TokenTheftDetected,
    /// Not the caller's session, or already ended.
    #[error("session not found")]
    SessionNotFound,
    /// DELETE of the session the caller is using: that is what logout is for.
    #[error("cannot revoke the current session")]
    CannotRevokeCurrentSession,
    /// A reset or verification token that is unknown, used or expired.
    #[error("invalid or expired reset token")]
    InvalidResetToken,
    /// A new password (reset, change) that fails the policy.
    #[error("{0}")]
    WeakPassword(String),
    /// A per-client limit tripped.
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    /// The password-hashing queue is full: try again later.
    #[error("password hashing queue is full")]
    Busy { retry_after: Duration },
    /// `REQUIRE_MFA` is on and the caller has no second factor yet: only the MFA routes work.
    #[error("multi-factor authentication must be set up first")]
    MfaRequired,
    /// A wrong TOTP code, recovery code or passkey assertion.
    #[error("invalid MFA code")]
    InvalidMfaCode,
    /// The login's `mfa_token` is unknown, expired, used, or has spent its tries.
    #[error("MFA token expired")]
    MfaTokenExpired,
    /// Tenancy is on and the named tenant does not exist.
    #[error("tenant not found")]
    TenantNotFound,
    /// Passkeys are not configured (`WEBAUTHN_RP_ID`, `WEBAUTHN_ORIGIN` unset).
    #[error("passkeys are not enabled")]
    PasskeysDisabled,
    /// Not one of the caller's passkeys.
    #[error("passkey not found")]
    CredentialNotFound,
    /// A dependency (the database) cannot be reached right now.
    #[error("service unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else: a bug or an unexpected failure. Shown to nobody, logged in full.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AuthError {
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation { field: Some(field), message: message.into() }
    }

    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(e))
    }
}

/// What a storage backend can report.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write (e.g. the email is taken).
    #[error("unique constraint violated")]
    Conflict,
    /// The backend could not be reached (connection refused, pool timed out, database restarting).
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else the backend reported, including rows it could not decode.
    #[error("storage error")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        match e {
            // A conflict the service did not expect is a bug, not a user error.
            StoreError::Conflict => AuthError::Internal(Box::new(e)),
            StoreError::Unavailable(source) => AuthError::Unavailable(source),
            StoreError::Other(source) => AuthError::Internal(source),
        }
    }
}
