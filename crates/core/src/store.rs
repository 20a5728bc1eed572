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

    /// Replaces the password hash and, in the same transaction, revokes every live session of
    /// the user except `keep`, voids the user's outstanding password-reset tokens and pending
    /// logins' `mfa_token`s, and forgets the wrong second factors. Returns how many sessions were
    /// revoked.
    async fn set_password(
        &self,
        id: Uuid,
        hash: &str,
        keep: Option<SessionId>,
        reason: RevokeReason,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Updates the profile: `name` when `Some` (`Some(None)` clears it), `metadata` when `Some`.
    async fn update_profile(
        &self,
        id: Uuid,
        name: Option<Option<String>>,
        metadata: Option<serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError>;

    async fn set_email_verified(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<User>, StoreError>;

    /// Replaces the user's roles; `None` if there is no such user.
    async fn set_roles(&self, id: Uuid, roles: &[String], now: DateTime<Utc>) -> Result<Option<User>, StoreError>;

    /// Users ordered by email, at most `limit`, skipping `offset` (administration).
    async fn list_users(&self, limit: u32, offset: u32) -> Result<Vec<User>, StoreError>;
}

/// Extra conditions for a session to count as live, beyond "not revoked, not expired".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Sessions last active before this are idle (SESSION_IDLE_TIMEOUT_MINUTES).
    pub idle_cutoff: Option<DateTime<Utc>>,
    /// Sessions created before this are too old (SESSION_ABSOLUTE_LIFETIME_HOURS).
    pub created_cutoff: Option<DateTime<Utc>>,
}

impl Liveness {
    pub fn admits(&self, s: &Session) -> bool {
        self.idle_cutoff.is_none_or(|c| s.last_active >= c) && self.created_cutoff.is_none_or(|c| s.created_at >= c)
    }
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn insert_session(&self, session: NewSession) -> Result<Session, StoreError>;

    /// The session and its user, in one lookup (the bearer path's only query).
    async fn session_with_user(&self, id: SessionId) -> Result<Option<(Session, User)>, StoreError>;

    /// [`session_with_user`](Self::session_with_user) for the bearer path, which a backend may
    /// answer from a process-local cache (PostgreSQL does while its change listener runs). A
    /// cached answer (`true` in the third field) reflects every revocation, user change and
    /// expiry shortening the cache was told about; its `last_active`, `expires_at` (when
    /// extended), `refresh_counter` and `rotated_at` may lag. So a cached answer can only be
    /// too strict, never too lenient, about time: a caller that would reject a session because of
    /// a cached answer asks [`session_with_user`](Self::session_with_user) first.
    async fn session_for_bearer(&self, id: SessionId) -> Result<Option<(Session, User, bool)>, StoreError> {
        Ok(self.session_with_user(id).await?.map(|(s, u)| (s, u, false)))
    }

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
        live: Liveness,
    ) -> Result<Option<(Session, User)>, StoreError>;

    /// [`rotate_refresh`](Self::rotate_refresh), and when it rotates, records `audit` in the same
    /// transaction, with the rotated row's user and session as its `user_id` and `session_id`:
    /// one commit per refresh instead of two. When this fails nothing was rotated and nothing
    /// recorded.
    async fn rotate_refresh_audited(
        &self,
        id: SessionId,
        presented: i64,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        live: Liveness,
        audit: AuditEvent,
    ) -> Result<Option<(Session, User)>, StoreError>;

    /// The user's sessions that are not revoked and not expired at `now`, most recently active
    /// first.
    async fn live_sessions(&self, user: Uuid, now: DateTime<Utc>) -> Result<Vec<Session>, StoreError>;

    /// Sets `last_active = now` if it is older than `stale_before` (so a busy session writes at
    /// most once per interval, not on every request).
    async fn touch_session(
        &self,
        id: SessionId,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Revokes `id` only if it belongs to `user` and is live; `false` otherwise.
    async fn revoke_user_session(
        &self,
        user: Uuid,
        id: SessionId,
        reason: RevokeReason,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

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

/// The two kinds of single-use, emailed tokens. Each has its own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneTimeKind {
    /// `tb_password_reset`
    PasswordReset,
    /// `tb_email_verification`
    EmailVerification,
}

/// Single-use tokens, stored only as SHA-256.
#[async_trait]
pub trait OneTimeTokenStore: Send + Sync {
    /// Stores a new token for `user` unless one of this kind was issued at or after
    /// `throttle_since` (then nothing changes and the answer is `false`). Voids (marks used) the
    /// user's older unused tokens of the kind. Check, void and insert are one transaction that
    /// holds the user's row, so concurrent requests cannot both pass the throttle or both leave
    /// a live token.
    async fn issue_one_time(
        &self,
        kind: OneTimeKind,
        user: Uuid,
        hash: &[u8; 32],
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        throttle_since: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The user a valid (unused, unexpired) token belongs to, without using it up.
    async fn peek_one_time(
        &self,
        kind: OneTimeKind,
        hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError>;

    /// Uses the token up, atomically: of two concurrent callers only one gets the user.
    async fn consume_one_time(
        &self,
        kind: OneTimeKind,
        hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError>;
}

/// Failed-login counters, for lockout. `client` is a client key, or `"*"` for the account as a
/// whole.
#[async_trait]
pub trait LoginFailureStore: Send + Sync {
    /// The latest `locked_until` among `keys` of `email` that is after `now`.
    async fn lock_until(
        &self,
        email: &str,
        keys: &[&str],
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Counts one failure for (email, client); a count whose last failure is before
    /// `window_start` starts again at 1. Returns the new count.
    async fn add_failure(
        &self,
        email: &str,
        client: &str,
        now: DateTime<Utc>,
        window_start: DateTime<Utc>,
    ) -> Result<i64, StoreError>;

    async fn set_lock(&self, email: &str, client: &str, until: DateTime<Utc>) -> Result<(), StoreError>;

    /// Forgets the counters of `email` (for `client` only, or all of them); returns how many
    /// rows held a lock still in force at `now`.
    async fn clear_failures(&self, email: &str, client: Option<&str>, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// A user's TOTP enrollment: the sealed secret, whether it is confirmed, and the last step a code
/// was accepted for (the replay guard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub sealed_secret: Vec<u8>,
    pub confirmed: bool,
    pub last_step: i64,
}

/// Second factors: TOTP enrollments, recovery codes (SHA-256 only) and the login's `mfa_token`
/// challenges (SHA-256 only). Every write that changes whether a user has TOTP also updates the
/// user's `mfa_methods` bits, in the same transaction.
#[async_trait]
pub trait MfaStore: Send + Sync {
    /// Stores a new, unconfirmed TOTP secret, replacing an unconfirmed one; `false` (nothing
    /// changed) if the user already has a confirmed one or does not exist.
    async fn put_pending_totp(&self, user: Uuid, sealed: &[u8], now: DateTime<Utc>) -> Result<bool, StoreError>;

    async fn totp(&self, user: Uuid) -> Result<Option<TotpRecord>, StoreError>;

    /// Confirms the pending secret `sealed` (still the one stored: a setup in between wins),
    /// records `step` as used, replaces the recovery codes with `recovery` and sets the TOTP bit,
    /// in one transaction. `false` if nothing was pending with that secret.
    async fn confirm_totp(
        &self,
        user: Uuid,
        sealed: &[u8],
        step: i64,
        recovery: &[[u8; 32]],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Records that a code of `step` was accepted, if and only if `step` is after the last one
    /// used and the enrollment is confirmed: of two requests with the same code (any nodes), one
    /// gets `true`.
    async fn use_totp_step(&self, user: Uuid, step: i64) -> Result<bool, StoreError>;

    /// Spends one unused recovery code of `user`, atomically; `false` if there is none with
    /// that hash.
    async fn use_recovery_code(&self, user: Uuid, hash: &[u8; 32], now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Unused recovery codes of `user`.
    async fn recovery_codes_left(&self, user: Uuid) -> Result<u32, StoreError>;

    /// Removes the TOTP enrollment (confirmed or not) and the recovery codes, voids pending logins'
    /// `mfa_token`s, and clears the TOTP bit; `true` if a confirmed enrollment was removed.
    async fn remove_totp(&self, user: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Removes every second factor of `user` (TOTP, recovery codes, passkeys), clears the bits
    /// and voids outstanding challenges (support's `user reset-mfa`); `false` if the user does not
    /// exist.
    async fn reset_mfa(&self, user: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Counts one wrong second factor of `user` (any client) and returns the new count.
    async fn add_mfa_failure(&self, user: Uuid, now: DateTime<Utc>) -> Result<i64, StoreError>;

    /// Locks the second step of `user` until `until`.
    async fn lock_mfa(&self, user: Uuid, until: DateTime<Utc>) -> Result<(), StoreError>;

    /// When the second step of `user` is locked until, if that is after `now`.
    async fn mfa_locked_until(&self, user: Uuid, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Forgets the wrong second factors of `user`.
    async fn clear_mfa_failures(&self, user: Uuid) -> Result<(), StoreError>;

    /// Replaces the sealed TOTP secret `old` by `new` (the same secret sealed under the current
    /// key); `false` if the row changed meanwhile.
    async fn reseal_totp(&self, user: Uuid, old: &[u8], new: &[u8]) -> Result<bool, StoreError>;

    async fn insert_mfa_challenge(
        &self,
        hash: &[u8; 32],
        user: Uuid,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The user of a live challenge (unused, unexpired, tries left), without taking a try.
    async fn peek_mfa_challenge(
        &self,
        hash: &[u8; 32],
        now: DateTime<Utc>,
        max_attempts: i32,
    ) -> Result<Option<Uuid>, StoreError>;

    /// Takes one try of a live challenge, atomically (`attempts + 1` only while below
    /// `max_attempts`): concurrent requests cannot get more than `max_attempts` tries in all.
    async fn take_mfa_attempt(
        &self,
        hash: &[u8; 32],
        now: DateTime<Utc>,
        max_attempts: i32,
    ) -> Result<Option<Uuid>, StoreError>;

    /// Marks the challenge used; of two concurrent callers one gets `true`.
    async fn consume_mfa_challenge(&self, hash: &[u8; 32], now: DateTime<Utc>) -> Result<bool, StoreError>;
}

/// A registered passkey, as stored. `passkey` is the crate's serialized credential (JSON), opaque
/// to the backends.
#[derive(Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The authenticator's raw credential id (unique across the tenant).
    pub credential_id: Vec<u8>,
    pub passkey: String,
    pub name: String,
    /// The authenticator's signature counter as last seen (0 for authenticators without one).
    pub sign_count: i64,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Leaves the key material out.
impl std::fmt::Debug for PasskeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Which WebAuthn ceremony a stored state belongs to; a state is only ever taken back by a finish
/// of the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    /// Registering a passkey (bearer).
    Register,
    /// A passkey as the second factor of a login (`mfa_token`).
    Login,
    /// A passwordless login with a discoverable passkey: no user until the assertion names one.
    Passwordless,
}

impl CeremonyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Login => "login",
            Self::Passwordless => "passwordless",
        }
    }
}

/// Passkeys (WebAuthn credentials) and the state of ceremonies in progress. Every write that
/// changes whether a user has a passkey also sets or clears the passkey bit of the user's
/// `mfa_methods`, in the same transaction.
#[async_trait]
pub trait PasskeyStore: Send + Sync {
    /// Inserts a passkey and sets the user's passkey bit; [`StoreError::Conflict`] when the
    /// credential id is registered already (to anyone).
    async fn insert_passkey(&self, passkey: PasskeyRecord) -> Result<(), StoreError>;

    /// The user's passkeys, oldest first.
    async fn passkeys(&self, user: Uuid) -> Result<Vec<PasskeyRecord>, StoreError>;

    async fn passkey_by_credential_id(&self, credential_id: &[u8]) -> Result<Option<PasskeyRecord>, StoreError>;

    /// Deletes passkey `id` only if it belongs to `user`, and clears the user's passkey bit when
    /// it was the last one; `false` if there was no such passkey of this user.
    async fn delete_passkey(&self, user: Uuid, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Records a successful use: the new serialized credential and counter, `last_used_at = now`,
    /// if and only if the stored counter is still `seen_count` (two concurrent uses of one
    /// assertion or of a cloned key cannot both pass). `false` when it moved meanwhile.
    async fn record_passkey_use(
        &self,
        id: Uuid,
        passkey: &str,
        seen_count: i64,
        sign_count: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Stores a ceremony's state until `expires_at` (and deletes ceremonies expired at `now`).
    async fn insert_ceremony(
        &self,
        id: Uuid,
        kind: CeremonyKind,
        user: Option<Uuid>,
        state: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Takes a live ceremony of `kind` back, atomically and once: of two concurrent finishes only
    /// one gets the state. Returns its user and state.
    async fn take_ceremony(
        &self,
        id: Uuid,
        kind: CeremonyKind,
        now: DateTime<Utc>,
    ) -> Result<Option<(Option<Uuid>, String)>, StoreError>;
}

/// Which audit rows to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user: Option<Uuid>,
    pub kind: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// At most this many rows, newest first.
    pub limit: u32,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError>;
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError>;
}

/// What one cleanup pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub sessions: u64,
    pub one_time_tokens: u64,
    pub audit_rows: u64,
}

/// Deleting what is no longer needed. Every delete is idempotent and batched, so several nodes
/// may run it at once (PostgreSQL skips rows another node has locked).
#[async_trait]
pub trait Maintenance: Send + Sync {
    /// Deletes sessions revoked or expired before `sessions_before`, single-use tokens and MFA
    /// challenges expired before `now`, and audit rows older than `audit_before`, `batch` rows per statement.
    async fn cleanup(
        &self,
        now: DateTime<Utc>,
        sessions_before: DateTime<Utc>,
        audit_before: DateTime<Utc>,
        batch: u32,
    ) -> Result<CleanupReport, StoreError>;
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
    /// The connection pool right now, for metrics.
    fn pool_usage(&self) -> PoolUsage;

    /// The bearer path's session cache, for backends that keep one (PostgreSQL).
    fn session_cache(&self) -> Option<SessionCacheStats> {
        None
    }

    /// How refresh rotations were grouped into statements, for backends that batch them
    /// (PostgreSQL).
    fn rotation_batches(&self) -> Option<RotationBatchStats> {
        None
    }
}

/// Refresh rotations grouped into statements (group commit), since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationBatchStats {
    /// Batch statements run.
    pub statements: u64,
    /// Rotations those statements carried.
    pub rotations: u64,
    /// Rotations handed back to run alone (their row was busy, or their batch failed).
    pub handed_back: u64,
    /// Microseconds the worker spent running batches (connecting included). Its share of wall
    /// time says how busy the node's one commit stream is: near 100 %, refreshes queue for it.
    /// The worker's short waits after small batches (for their clients' next refresh) are not
    /// counted: at 8 clients looping on refresh it reads about 60 % at its ceiling.
    pub busy_micros: u64,
}

/// The state of a backend's session cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCacheStats {
    /// Whether answers are served from it now (its change listener is connected and hearing).
    pub live: bool,
    pub entries: usize,
    /// Bearer lookups answered from it, and lookups it could not answer, since start.
    pub hits: u64,
    pub misses: u64,
}

/// Connections of a store's pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Open connections (idle or in use).
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// Everything the service needs from storage.
pub trait Store:
    UserStore
    + SessionStore
    + OneTimeTokenStore
    + LoginFailureStore
    + MfaStore
    + PasskeyStore
    + AuditStore
    + Maintenance
    + StoreHealth
{
}

impl<T> Store for T where
    T: UserStore
        + SessionStore
        + OneTimeTokenStore
        + LoginFailureStore
        + MfaStore
        + PasskeyStore
        + AuditStore
        + Maintenance
        + StoreHealth
{
}
