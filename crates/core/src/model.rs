//! Users, sessions and audit events, as the service sees them (not as tables).
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::email::Email;
use crate::mfa::MfaMethods;

/// An account. `Debug` leaves the password hash out.
#[derive(Clone, PartialEq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    /// Always a JSON object.
    pub metadata: Value,
    pub is_active: bool,
    pub email_verified: bool,
    /// The second factors enrolled (`tb_user.mfa_methods`).
    pub mfa: MfaMethods,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("is_active", &self.is_active)
            .field("email_verified", &self.email_verified)
            .field("mfa", &self.mfa)
            .finish_non_exhaustive()
    }
}

/// What `register` hands to the store; ids and timestamps are decided by the service.
#[derive(Clone)]
pub struct NewUser {
    pub id: Uuid,
    pub email: Email,
    pub password_hash: String,
    pub name: Option<String>,
    pub now: DateTime<Utc>,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser").field("id", &self.id).field("email", &self.email).finish_non_exhaustive()
    }
}

/// A login: one refresh-token chain.
///
/// The row stores no token, only `refresh_counter`: the current refresh token is
/// `MAC(session id, counter)`, so it can be minted again (grace window) without being stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: Uuid,
    /// The guide's diagnostics read this column; one family per login.
    pub token_family: Uuid,
    pub refresh_counter: i64,
    /// When the current counter was issued: the start of the reuse grace window.
    pub rotated_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub last_active: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: SessionId,
    pub user_id: Uuid,
    pub token_family: Uuid,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

/// Why a session was ended; stored in `revoked_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Logout,
    LogoutAll,
    TokenTheft,
    PasswordChanged,
    Revoked,
    AccountDisabled,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::TokenTheft => "token_theft",
            Self::PasswordChanged => "password_changed",
            Self::Revoked => "revoked",
            Self::AccountDisabled => "account_disabled",
        }
    }
}

/// A session id. Shown to clients (and carried in access tokens) as `sess_<uuid>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub Uuid);

impl SessionId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sess_{}", self.0)
    }
}

impl FromStr for SessionId {
    type Err = ();

    /// Accepts `sess_<uuid>` only: the bare uuid is an internal representation.
    fn from_str(s: &str) -> Result<Self, ()> {
        let raw = s.strip_prefix("sess_").ok_or(())?;
        Uuid::parse_str(raw).map(SessionId).map_err(|_| ())
    }
}

/// A security event for `tb_auth_audit`.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// `register`, `login_success`, `token_theft_detected`, ...
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    /// Extra facts as a JSON object; never a password or a token.
    pub details: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_round_trips_through_its_public_form() {
        let id = SessionId::new();
        assert_eq!(id.to_string().parse::<SessionId>(), Ok(id));
        assert!(id.0.to_string().parse::<SessionId>().is_err());
        assert!("sess_not-a-uuid".parse::<SessionId>().is_err());
    }
}
