//! Request and response bodies, exactly as API.md spells them.
use chrono::{DateTime, SecondsFormat, Utc};
use fraise_core::model::User;
use fraise_core::service::{Authenticated, Tokens};
use serde::{Deserialize, Serialize, Serializer};

/// RFC 3339, UTC, milliseconds: `2025-01-22T10:00:00.000Z`.
pub fn rfc3339_ms<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[derive(Deserialize)]
pub struct RegisterRequest {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Default, Deserialize)]
pub struct LogoutRequest {
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub all: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct UserBody {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub metadata: serde_json::Value,
    pub is_active: bool,
    pub email_verified: bool,
    #[serde(serialize_with = "rfc3339_ms")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_ms")]
    pub updated_at: DateTime<Utc>,
}

impl From<&User> for UserBody {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.clone(),
            name: u.name.clone(),
            roles: u.roles.clone(),
            permissions: u.permissions.clone(),
            metadata: u.metadata.clone(),
            is_active: u.is_active,
            email_verified: u.email_verified,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TokenBody {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    #[serde(serialize_with = "rfc3339_ms")]
    pub expires_at: DateTime<Utc>,
}

impl From<Tokens> for TokenBody {
    fn from(t: Tokens) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            token_type: "bearer",
            expires_at: t.expires_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AuthBody {
    pub user: UserBody,
    #[serde(flatten)]
    pub tokens: TokenBody,
}

impl From<Authenticated> for AuthBody {
    fn from(a: Authenticated) -> Self {
        Self { user: UserBody::from(&a.user), tokens: a.tokens.into() }
    }
}

#[derive(Debug, Serialize)]
pub struct MessageBody {
    pub message: &'static str,
}

/// Leaves passwords and tokens out.
impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest").field("email", &self.email).field("name", &self.name).finish_non_exhaustive()
    }
}

/// Leaves passwords and tokens out.
impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest").field("email", &self.email).finish_non_exhaustive()
    }
}

/// Leaves passwords and tokens out.
impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRequest").finish_non_exhaustive()
    }
}

/// Leaves passwords and tokens out.
impl std::fmt::Debug for LogoutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutRequest").field("all", &self.all).finish_non_exhaustive()
    }
}
