//! The storage traits. Narrow and capability-shaped, so each backend implements plain data
//! operations and every *decision* (is this replay theft? is this user allowed?) stays in the
//! service, written once for all backends.
//!
//! Every time value comes in as a parameter: backends never read their own clock (`NOW()`), so the
//! injected [`Clock`](crate::Clock) rules everywhere.
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::email::Email;
use crate::error::StoreError;
use crate::model::{AuditEvent, NewSession, NewUser, RevokeReason, Session, SessionId, User};

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a user; [`StoreError::Conflict`] when the email is taken (case-insensitively).
    async fn insert_user(&self, user: NewUser) -> Result<User, StoreError>;
    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError>;
    async fn user_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError>;
    async fn set_password_hash(&self, id: Uuid, hash: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Enables or disables an account; `false` if there is no such user.
    async fn set_active(&self, id: Uuid, active: bool, now: DateTime<Utc>) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn insert_session(&self, session: NewSession) -> Result<Session, StoreError>;

    /// The session and its user, in one lookup (the bearer path's only query).
    async fn session_with_user(&self, id: SessionId) -> Result<Option<(Session, User)>, StoreError>;

    /// Atomically moves the session's chain from `presented` to `presented + 1`, stamping
    /// `rotated_at`/`last_active` with `now` and `expires_at` with `expires_at`, if and only if the
    /// session is not revoked, has not expired at `now`, its counter is `presented` and its user is
    /// active. Returns the updated session and its user, or `None` when nothing matched (the
    /// caller then finds out why).
    async fn rotate_refresh(
        &self,
        id: SessionId,
        presented: i64,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<(Session, User)>, StoreError>;

    /// Revokes one session; `false` if it did not exist or was already revoked.
    async fn revoke_session(&self, id: SessionId, reason: RevokeReason, now: DateTime<Utc>)
    -> Result<bool, StoreError>;

    /// Revokes every live session of `user` except `keep`; returns how many were revoked.
    async fn revoke_user_sessions(
        &self,
        user: Uuid,
        keep: Option<SessionId>,
        reason: RevokeReason,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError>;
}

/// What `/health/ready` and `doctor` ask of a backend.
#[async_trait]
pub trait StoreHealth: Send + Sync {
    /// One round trip to the database.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Whether every migration this binary knows has been applied.
    async fn migrations_current(&self) -> Result<bool, StoreError>;
    /// "sqlite" or "postgres", for health output and logs.
    fn backend(&self) -> &'static str;
}

/// Everything the service needs from storage.
pub trait Store: UserStore + SessionStore + AuditStore + StoreHealth {}

impl<T: UserStore + SessionStore + AuditStore + StoreHealth> Store for T {}
