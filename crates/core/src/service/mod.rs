//! The auth service: the use cases (register, login, refresh, logout, authenticate) written once,
//! over any [`Store`].
//!
//! It owns the rules of DESIGN.md: one error for wrong email and wrong password, a dummy hash for
//! unknown emails, hashing only on the [`HashPool`], refresh rotation with a reuse grace window and
//! theft detection, and bearer tokens that die with their session.
//!
//! `mod.rs` holds the service, login/register, refresh, logout and authentication; `sessions.rs`
//! the session list and revocation; `account.rs` passwords, profile, reset and verification;
//! `maintenance.rs` the cleanup and the audit log; `webauthn.rs` passkeys.
mod account;
mod admin;
mod lockout;
mod maintenance;
mod mfa;
mod sessions;
mod webauthn;

pub use admin::parse_roles;
pub use lockout::{LockoutPolicy, client_bucket};
pub use mfa::{LoginOutcome, MfaAttempt, MfaMethod, MfaPending, TotpSetup};
use std::sync::Arc;
use std::time::Duration as StdDuration;
pub use webauthn::{CeremonyStart, MAX_PASSKEYS_PER_USER, PasskeyConfig};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::clock::Clock;
use crate::email::Email;
use crate::error::{AuthError, StoreError};
use crate::mail::{Links, Mailer};
use crate::mfa::SecretSealer;
use crate::model::{AuditEvent, NewSession, NewUser, RevokeReason, Session, SessionId, User};
use crate::password::{HashPool, PasswordHasher, PasswordPolicy, PoolBusy, Verification};
use crate::store::{Liveness, Store};
use crate::tokens::{AccessClaims, AccessTokens, RefreshToken, RefreshTokens};

/// The longest a bearer request waits for its session's `last_active` write (see
/// [`AuthService::touch`]): far above a healthy commit (about a millisecond).
const TOUCH_WAIT: StdDuration = StdDuration::from_millis(50);

/// The sessions whose `last_active` write is in flight.
#[derive(Default)]
struct Touching(std::sync::Mutex<std::collections::HashSet<SessionId>>);

/// A session's in-flight mark, cleared however its write ends (a panic included).
struct TouchClaim(Arc<Touching>, SessionId);

impl Touching {
    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<SessionId>> {
        // Only inserts and removes run under the lock: a poisoned set is still consistent.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks `id` in flight, or `None` when a write of it already is.
    fn claim(this: &Arc<Self>, id: SessionId) -> Option<TouchClaim> {
        this.set().insert(id).then(|| TouchClaim(Arc::clone(this), id))
    }
}

impl Drop for TouchClaim {
    fn drop(&mut self) {
        self.0.set().remove(&self.1);
    }
}

/// Longest accepted display name, in characters.
const MAX_NAME_CHARS: usize = 255;
/// Longest accepted password at login (the policy's cap): bounds the work an attacker can ask for.
use crate::password::MAX_PASSWORD_BYTES;
/// What a 503 from a full hashing queue tells the client to wait.
const BUSY_RETRY_AFTER: StdDuration = StdDuration::from_secs(1);

/// Which sessions a detected refresh-token replay ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TheftScope {
    /// Every session of the user (the default: the thief may have more than one token).
    User,
    /// Only the session whose chain was replayed.
    Session,
}

/// Tunables of the service. Defaults are DESIGN.md's.
#[derive(Debug, Clone)]
pub struct Settings {
    pub refresh_ttl: Duration,
    /// How long the previous refresh token still returns the current one (lost responses, tabs).
    pub reuse_grace: Duration,
    pub theft_scope: TheftScope,
    pub require_verified_email: bool,
    pub policy: PasswordPolicy,
    /// The tenant tokens are bound to; `None` for a single-tenant deployment.
    pub tenant: Option<String>,
    /// A new login beyond this many live sessions revokes the least recently active one.
    pub max_sessions_per_user: usize,
    /// A session unused this long is over (off by default).
    pub idle_timeout: Option<Duration>,
    /// A session older than this is over, however active (off by default).
    pub absolute_lifetime: Option<Duration>,
    /// `last_active` is written at most once per this interval per session.
    pub touch_interval: Duration,
    pub reset_ttl: Duration,
    pub verification_ttl: Duration,
    /// One reset email per address per this interval, at most.
    pub reset_throttle: Duration,
    /// Forgot-password requests accepted per client IP per hour.
    pub forgot_per_client_per_hour: u32,
    /// Brute-force protection.
    pub lockout: lockout::LockoutPolicy,
    /// Revoked and expired sessions are deleted this long after they ended.
    pub session_retention: Duration,
    /// Audit rows are deleted at this age.
    pub audit_retention: Duration,
    pub links: Links,
    /// Passkeys (WebAuthn): the relying party; `None` when not configured (the routes answer
    /// 404 PASSKEYS_DISABLED).
    pub passkeys: Option<PasskeyConfig>,
    /// Every bearer route but the MFA ones answers MFA_REQUIRED until the user has a second
    /// factor (`REQUIRE_MFA`).
    pub require_mfa: bool,
    /// The issuer shown by authenticator apps (`MFA_TOTP_ISSUER`).
    pub totp_issuer: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            refresh_ttl: Duration::days(30),
            reuse_grace: Duration::seconds(10),
            theft_scope: TheftScope::User,
            require_verified_email: false,
            policy: PasswordPolicy::default(),
            tenant: None,
            max_sessions_per_user: 10,
            idle_timeout: None,
            absolute_lifetime: None,
            touch_interval: Duration::minutes(1),
            reset_ttl: Duration::hours(1),
            verification_ttl: Duration::hours(24),
            reset_throttle: Duration::minutes(1),
            forgot_per_client_per_hour: 10,
            lockout: lockout::LockoutPolicy::default(),
            session_retention: Duration::days(7),
            audit_retention: Duration::days(90),
            links: Links::default(),
            passkeys: None,
            require_mfa: false,
            totp_issuer: "fraise-auth".to_owned(),
        }
    }
}

/// Who is calling, as far as the network can tell.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A fresh token pair. `Debug` shows neither token.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// Where a presented refresh counter stands against the session's current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// The current token.
    Current,
    /// The one before, rotated within the grace window: answer with the current token again.
    Grace,
    /// Any older token, or the previous one after the window: a replay.
    Replayed,
    /// A counter we never issued (only possible with the key).
    Unknown,
}

/// The `outcome` label of a login or refresh counter: a fixed, small set (never user input).
fn outcome(e: Option<&AuthError>) -> &'static str {
    match e {
        None => "success",
        Some(AuthError::InvalidCredentials) => "invalid_credentials",
        Some(AuthError::AccountLocked { .. }) => "locked",
        Some(AuthError::AccountDisabled) => "disabled",
        Some(AuthError::EmailNotVerified) => "email_not_verified",
        Some(AuthError::InvalidToken(_)) => "invalid_token",
        Some(AuthError::TokenExpired) => "expired",
        Some(AuthError::TokenTheftDetected) => "theft_detected",
        Some(AuthError::Validation { .. }) => "invalid_request",
        Some(AuthError::RateLimited { .. }) => "rate_limited",
        Some(AuthError::Busy { .. }) => "busy",
        Some(AuthError::Unavailable(_)) => "unavailable",
        Some(_) => "error",
    }
}

fn link(session: &Session, presented: i64, now: DateTime<Utc>, grace: Duration) -> Link {
    let current = session.refresh_counter;
    if presented == current {
        Link::Current
    } else if presented > current {
        Link::Unknown
    } else if presented + 1 == current && now - session.rotated_at <= grace {
        Link::Grace
    } else {
        Link::Replayed
    }
}

/// What register and login return.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub session: SessionId,
    pub tokens: Tokens,
}

/// The caller behind a valid bearer token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub session: Session,
    pub claims: AccessClaims,
}

/// What logout was asked to do.
#[derive(Debug, Clone, Default)]
pub struct LogoutRequest<'a> {
    pub principal: Option<&'a Principal>,
    pub refresh_token: Option<&'a str>,
    pub all: bool,
}

/// What the service is made of (everything but its settings).
pub struct Components {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub hasher: Arc<PasswordHasher>,
    pub pool: HashPool,
    pub access: AccessTokens,
    pub refresh: RefreshTokens,
    pub mailer: Arc<dyn Mailer>,
    /// Seals TOTP secrets at rest.
    pub sealer: SecretSealer,
}

/// The service. Cheap to clone: one shared pointer (axum clones it, inside the router's state,
/// for every request).
#[derive(Clone)]
pub struct AuthService(Arc<ServiceParts>);

impl std::ops::Deref for AuthService {
    type Target = ServiceParts;
    fn deref(&self) -> &ServiceParts {
        &self.0
    }
}

/// What an [`AuthService`] shares between its clones.
#[derive(Clone)]
pub struct ServiceParts {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    hasher: Arc<PasswordHasher>,
    pool: HashPool,
    access: Arc<AccessTokens>,
    refresh: RefreshTokens,
    mailer: Arc<dyn Mailer>,
    sealer: Arc<SecretSealer>,
    /// Per-client limit on forgot-password (in memory, per node).
    forgot_limiter: Arc<account::ClientLimiter>,
    /// Sessions whose `last_active` write is in flight (see [`AuthService::touch`]).
    touching: Arc<Touching>,
    settings: Arc<Settings>,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl AuthService {
    pub fn new(c: Components, settings: Settings) -> Self {
        Self(Arc::new(ServiceParts {
            store: c.store,
            clock: c.clock,
            hasher: c.hasher,
            pool: c.pool,
            access: Arc::new(c.access),
            refresh: c.refresh,
            mailer: c.mailer,
            sealer: Arc::new(c.sealer),
            forgot_limiter: Arc::new(account::ClientLimiter::new(settings.forgot_per_client_per_hour)),
            touching: Arc::default(),
            settings: Arc::new(settings),
        }))
    }

    /// The same service for tenant `name` over its own `store`: tokens bound to the tenant,
    /// emailed links naming it; the hashing pool, keys and per-client limits stay shared.
    pub fn for_tenant(&self, name: &crate::tenant::TenantName, store: Arc<dyn Store>) -> Self {
        let mut settings = Settings::clone(&self.settings);
        settings.tenant = Some(name.as_str().to_owned());
        settings.links = settings.links.for_tenant(name.as_str());
        Self(Arc::new(ServiceParts { store, settings: Arc::new(settings), ..ServiceParts::clone(&self.0) }))
    }

    /// The tenant this service's tokens are bound to, if any.
    pub fn tenant_name(&self) -> Option<&str> {
        self.settings.tenant.as_deref()
    }

    pub fn mailer(&self) -> &Arc<dyn Mailer> {
        &self.mailer
    }

    /// The idle and absolute-lifetime cut-offs at `now`.
    fn liveness(&self, now: DateTime<Utc>) -> Liveness {
        Liveness {
            // last_active lags by up to one touch interval: allow for it, so a session in steady
            // use is never taken for idle.
            idle_cutoff: self.settings.idle_timeout.map(|d| now - d - self.settings.touch_interval),
            created_cutoff: self.settings.absolute_lifetime.map(|d| now - d),
        }
    }

    /// `{"keys": [...]}`: the public keys that verify access tokens (empty for HS256).
    pub fn jwks(&self) -> serde_json::Value {
        self.access.keys().jwks()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn pool(&self) -> &HashPool {
        &self.pool
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn tenant(&self) -> &str {
        self.settings.tenant.as_deref().unwrap_or("")
    }

    /// Makes the dummy hash on the pool in the background, so start-up does not wait for it.
    pub fn warm_up(&self) {
        let hasher = Arc::clone(&self.hasher);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let _ = pool.run(move || hasher.warm_up()).await;
        });
    }

    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
        client: &ClientInfo,
    ) -> Result<Authenticated, AuthError> {
        let user = self.insert_new_user(email, password, name).await?;
        metrics::counter!("fraise_registrations_total").increment(1);
        self.audit("register", Some(user.id), None, client, json!({})).await;
        self.start_session(user, client).await
    }

    /// Validates, hashes (on the pool) and inserts a new account.
    async fn insert_new_user(&self, email: &str, password: &str, name: Option<&str>) -> Result<User, AuthError> {
        let email = Email::parse(email)?;
        let violations = self.settings.policy.violations(password);
        if !violations.is_empty() {
            return Err(AuthError::validation(
                "password",
                format!("Password does not meet security requirements: needs {}", violations.join(", ")),
            ));
        }
        let name = clean_name(name)?;
        let hasher = Arc::clone(&self.hasher);
        let pw = password.to_owned();
        let hash = self.on_pool(move || hasher.hash(&pw)).await?.map_err(AuthError::internal)?;
        let now = self.clock.now();
        self.store.insert_user(NewUser { id: Uuid::new_v4(), email, password_hash: hash, name, now }).await.map_err(
            |e| match e {
                StoreError::Conflict => AuthError::EmailAlreadyExists,
                other => other.into(),
            },
        )
    }

    /// Email and password: a session, or, for a user with a second factor, an `mfa_token` for
    /// the second step (see `mfa.rs`).
    pub async fn login(&self, email: &str, password: &str, client: &ClientInfo) -> Result<LoginOutcome, AuthError> {
        let out = self.login_checked(email, password, client).await;
        let label = match &out {
            Ok(LoginOutcome::MfaRequired(_)) => "mfa_required",
            other => outcome(other.as_ref().err()),
        };
        metrics::counter!("fraise_logins_total", "outcome" => label).increment(1);
        out
    }

    async fn login_checked(&self, email: &str, password: &str, client: &ClientInfo) -> Result<LoginOutcome, AuthError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::validation(
                "password",
                format!("Password is longer than {MAX_PASSWORD_BYTES} bytes"),
            ));
        }
        // Locked (from this client, or the account as a whole)? Answer before any hashing, and
        // the same way for unknown emails: the counters are keyed by the email as typed.
        let throttle_key = lockout::email_key(email);
        self.check_lockout(&throttle_key, client).await?;
        // An email that cannot even be parsed is treated like an unknown one: same work, same answer.
        let user = match Email::parse(email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let hasher = Arc::clone(&self.hasher);
        let pw = password.to_owned();
        let Some(user) = user else {
            self.on_pool(move || hasher.verify_dummy(&pw)).await?;
            self.audit("login_failure", None, None, client, json!({"reason": "unknown_email"})).await;
            self.count_failure(&throttle_key, None, client).await?;
            return Err(AuthError::InvalidCredentials);
        };
        let stored = user.password_hash.clone();
        // Verify and, when the stored hash is outdated, re-hash in the same pool job: a login never
        // queues twice.
        let (verdict, rehashed) = self
            .on_pool(move || {
                let verdict = hasher.verify(&pw, &stored);
                let rehashed = (verdict == Verification::ValidNeedsRehash).then(|| hasher.hash(&pw).ok()).flatten();
                (verdict, rehashed)
            })
            .await?;
        if verdict == Verification::Invalid {
            self.audit("login_failure", Some(user.id), None, client, json!({"reason": "bad_password"})).await;
            self.count_failure(&throttle_key, Some(user.id), client).await?;
            return Err(AuthError::InvalidCredentials);
        }
        if !user.is_active {
            self.audit("login_failure", Some(user.id), None, client, json!({"reason": "disabled"})).await;
            return Err(AuthError::AccountDisabled);
        }
        if self.settings.require_verified_email && !user.email_verified {
            self.audit("login_failure", Some(user.id), None, client, json!({"reason": "email_not_verified"})).await;
            return Err(AuthError::EmailNotVerified);
        }
        let mut user = user;
        if let Some(hash) = rehashed {
            let now = self.clock.now();
            self.store.set_password_hash(user.id, &hash, now).await?;
            user.password_hash = hash;
            user.updated_at = now;
            self.audit("password_rehashed", Some(user.id), None, client, json!({})).await;
        }
        if !user.mfa.is_enabled() {
            // With a second factor the counters are cleared when the second step succeeds.
            self.store.clear_failures(&throttle_key, Some(&lockout::client_key(client)), self.clock.now()).await?;
        }
        self.after_password(user, client).await
    }

    async fn start_session(&self, user: User, client: &ClientInfo) -> Result<Authenticated, AuthError> {
        let now = self.clock.now();
        let session = self
            .store
            .insert_session(NewSession {
                id: SessionId::new(),
                user_id: user.id,
                token_family: Uuid::new_v4(),
                now,
                expires_at: now + self.settings.refresh_ttl,
                user_agent: client.user_agent.clone(),
                ip_address: client.ip.clone(),
            })
            .await?;
        self.enforce_session_cap(user.id, session.id, now).await?;
        let tokens = self.tokens_for(&user, &session, now)?;
        Ok(Authenticated { user, session: session.id, tokens })
    }

    fn tokens_for(&self, user: &User, session: &Session, now: DateTime<Utc>) -> Result<Tokens, AuthError> {
        let (access_token, expires_at) = self.access.issue(
            user.id,
            session.id,
            &user.roles,
            &user.permissions,
            self.settings.tenant.as_deref(),
            now,
        )?;
        let refresh_token =
            self.refresh.mint(RefreshToken { session: session.id, counter: session.refresh_counter }, self.tenant());
        Ok(Tokens { access_token, refresh_token, expires_at })
    }

    /// Exchanges a refresh token for a new pair. See the module docs of `tokens::refresh` for the
    /// chain; the decision table is:
    ///
    /// | presented counter vs. row | result |
    /// |---|---|
    /// | equal, session live, user active | rotate (one conditional UPDATE) |
    /// | one behind, rotated within the grace window | the current token again, no fork |
    /// | behind otherwise | theft: revoke per [`TheftScope`], 403 |
    /// | session revoked, expired or unknown | 401 INVALID_TOKEN |
    pub async fn refresh(&self, token: &str, client: &ClientInfo) -> Result<Tokens, AuthError> {
        let out = self.refresh_checked(token, client).await;
        metrics::counter!("fraise_refreshes_total", "outcome" => outcome(out.as_ref().err())).increment(1);
        out
    }

    async fn refresh_checked(&self, token: &str, client: &ClientInfo) -> Result<Tokens, AuthError> {
        let presented = self.refresh.parse(token, self.tenant())?;
        let now = self.clock.now();
        let expires_at = now + self.settings.refresh_ttl;
        let live = self.liveness(now);
        if let Some((session, user)) = self.rotate_and_audit(presented, now, expires_at, live, client).await? {
            if self.settings.require_verified_email && !user.email_verified {
                // The register session may not outlive its first access token unverified.
                self.store.revoke_session(session.id, RevokeReason::Revoked, now).await?;
                return Err(AuthError::EmailNotVerified);
            }
            return self.tokens_for(&user, &session, now);
        }
        // Nothing rotated: find out why.
        let Some((session, user)) = self.store.session_with_user(presented.session).await? else {
            return Err(AuthError::InvalidToken("unknown session"));
        };
        if !user.is_active {
            return Err(AuthError::AccountDisabled);
        }
        if session.revoked_at.is_some() {
            return Err(AuthError::InvalidToken("session revoked"));
        }
        if session.expires_at <= now || !live.admits(&session) {
            return Err(AuthError::InvalidToken("refresh token expired"));
        }
        match link(&session, presented.counter, now, self.settings.reuse_grace) {
            Link::Grace => {
                // The same rule as after a rotation: an unverified register session gets no
                // second pair, even when the rotation's answer was lost and this is its retry.
                if self.settings.require_verified_email && !user.email_verified {
                    self.store.revoke_session(session.id, RevokeReason::Revoked, now).await?;
                    return Err(AuthError::EmailNotVerified);
                }
                self.tokens_for(&user, &session, now)
            }
            Link::Unknown => Err(AuthError::InvalidToken("unknown refresh token")),
            // The row says live, active and current, yet the UPDATE matched nothing: it lost a
            // race with a revocation or a disable that the reads above just missed. Retryable.
            Link::Current => Err(AuthError::InvalidToken("refresh token is not current")),
            Link::Replayed => {
                self.on_theft(&session, presented.counter, client, now).await?;
                Err(AuthError::TokenTheftDetected)
            }
        }
    }

    /// Rotates the chain and records `token_refresh` in the same commit (one WAL flush per
    /// refresh on PostgreSQL, not two). If that fails for any reason but an unreachable database,
    /// nothing was rotated (the statement or transaction failed as a whole) and it may be the
    /// audit write that failed: the rotation is then retried alone and its audit written the old
    /// way, so an unwritable audit table costs a logged gap in the trail, never the refresh
    /// (the rule of [`Self::audit`]).
    async fn rotate_and_audit(
        &self,
        presented: RefreshToken,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        live: crate::store::Liveness,
        client: &ClientInfo,
    ) -> Result<Option<(Session, User)>, AuthError> {
        let event = AuditEvent {
            id: Uuid::new_v4(),
            at: now,
            kind: "token_refresh".to_owned(),
            // Filled in by the store from the rotated row.
            user_id: None,
            session_id: Some(presented.session.0),
            ip_address: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            // The counter the rotation moves to (what the rotated row will hold).
            details: json!({"counter": presented.counter.saturating_add(1)}),
        };
        let (session, counter) = (presented.session, presented.counter);
        match self.store.rotate_refresh_audited(session, counter, now, expires_at, live, event).await {
            Ok(rotated) => Ok(rotated),
            Err(e @ StoreError::Unavailable(_)) => Err(e.into()),
            Err(e) => {
                tracing::warn!(error = ?e, "refresh rotation with its audit row failed; retrying without it");
                let rotated = self.store.rotate_refresh(session, counter, now, expires_at, live).await?;
                if let Some((s, u)) = &rotated {
                    let details = json!({"counter": s.refresh_counter});
                    self.audit("token_refresh", Some(u.id), Some(s.id), client, details).await;
                }
                Ok(rotated)
            }
        }
    }

    /// Revokes per [`TheftScope`] and audits. A failed revocation is an error, not a 403: telling
    /// the client "sessions revoked" while the thief's chain lives on would be a lie; the retry
    /// detects the replay again.
    async fn on_theft(
        &self,
        session: &Session,
        presented: i64,
        client: &ClientInfo,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        let revoked = match self.settings.theft_scope {
            TheftScope::User => {
                self.store.revoke_user_sessions(session.user_id, None, RevokeReason::TokenTheft, now).await?
            }
            TheftScope::Session => {
                u64::from(self.store.revoke_session(session.id, RevokeReason::TokenTheft, now).await?)
            }
        };
        tracing::warn!(user = %session.user_id, session = %session.id, presented, current = session.refresh_counter,
            revoked, "refresh token reuse detected");
        metrics::counter!("fraise_token_theft_detected_total").increment(1);
        self.audit(
            "token_theft_detected",
            Some(session.user_id),
            Some(session.id),
            client,
            json!({"presented_counter": presented, "current_counter": session.refresh_counter, "sessions_revoked": revoked}),
        )
        .await;
        Ok(())
    }

    /// Enables or disables an account. Disabling also ends every session, so re-enabling later
    /// does not bring back old (possibly stolen) refresh chains.
    pub async fn set_user_active(&self, user: Uuid, active: bool) -> Result<bool, AuthError> {
        let now = self.clock.now();
        if !self.store.set_active(user, active, now).await? {
            return Ok(false);
        }
        if !active {
            self.store.revoke_user_sessions(user, None, RevokeReason::AccountDisabled, now).await?;
        }
        let kind = if active { "account_enabled" } else { "account_disabled" };
        self.audit(kind, Some(user), None, &ClientInfo::default(), json!({})).await;
        Ok(true)
    }

    /// Checks a bearer access token and the session behind it.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        let now = self.clock.now();
        let claims = self.access.verify(bearer, self.settings.tenant.as_deref(), now)?;
        let user_id = claims.user_id()?;
        let session_id = claims.session()?;
        let Some((mut session, mut user, cached)) = self.store.session_for_bearer(session_id).await? else {
            return Err(AuthError::InvalidToken("unknown session"));
        };
        if let Err(refused) = self.admit_bearer(&session, &user, user_id, now) {
            // A cached answer may lag behind a rotation on another node (an older last_active or
            // expiry): only the database's own answer may refuse.
            if !cached {
                return Err(refused);
            }
            let Some(fresh) = self.store.session_with_user(session_id).await? else {
                return Err(AuthError::InvalidToken("unknown session"));
            };
            (session, user) = fresh;
            self.admit_bearer(&session, &user, user_id, now)?;
        }
        // Reads must not all become writes: last_active moves at most once per interval.
        if now - session.last_active >= self.settings.touch_interval {
            self.touch(session.id, now).await?;
        }
        Ok(Principal { user, session, claims })
    }

    /// Moves a session's `last_active` to `now`, waiting at most [`TOUCH_WAIT`] for the write.
    ///
    /// A bearer request is a read; the write is bookkeeping for the idle timeout, which already
    /// allows `last_active` to lag by one touch interval. Measured under a login flood on
    /// PostgreSQL, a commit could take over a second (commits queue behind the flood's WAL flushes
    /// and its NOTIFY lock), and every request of a session due for its touch waited that long.
    /// So the write runs as a task of its own: a request that sees it finish within the wait gets
    /// its outcome (a database error still fails it, as before), and one that does not is answered
    /// while the write goes on. One write per session at a time: while one is in flight, the
    /// session's other requests do not start another.
    async fn touch(&self, id: SessionId, now: DateTime<Utc>) -> Result<(), AuthError> {
        let Some(mark) = Touching::claim(&self.touching, id) else {
            return Ok(());
        };
        let store = Arc::clone(&self.store);
        let stale_before = now - self.settings.touch_interval;
        let write = tokio::spawn(async move {
            let _mark = mark;
            store.touch_session(id, now, stale_before).await
        });
        match tokio::time::timeout(TOUCH_WAIT, write).await {
            Ok(Ok(done)) => Ok(done?),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the last_active write of a session failed");
                Ok(())
            }
            // Still writing: it finishes on its own.
            Err(_) => Ok(()),
        }
    }

    /// The bearer path's checks of a session and its user against the token's user at `now`.
    fn admit_bearer(&self, session: &Session, user: &User, user_id: Uuid, now: DateTime<Utc>) -> Result<(), AuthError> {
        if session.user_id != user_id {
            return Err(AuthError::InvalidToken("session belongs to another user"));
        }
        // A disabled account says so (403) even though disabling also ended its sessions.
        if !user.is_active {
            return Err(AuthError::AccountDisabled);
        }
        if session.revoked_at.is_some() || session.expires_at <= now || !self.liveness(now).admits(session) {
            return Err(AuthError::InvalidToken("session ended"));
        }
        Ok(())
    }

    pub async fn logout(&self, req: LogoutRequest<'_>, client: &ClientInfo) -> Result<(), AuthError> {
        let now = self.clock.now();
        if req.all {
            let Some(p) = req.principal else {
                return Err(AuthError::Unauthorized);
            };
            let n = self.store.revoke_user_sessions(p.user.id, None, RevokeReason::LogoutAll, now).await?;
            self.audit(
                "logout",
                Some(p.user.id),
                Some(p.session.id),
                client,
                json!({"all": true, "sessions_revoked": n}),
            )
            .await;
            return Ok(());
        }
        let target = match (req.refresh_token, req.principal) {
            (Some(token), principal) => {
                let parsed = self.refresh.parse(token, self.tenant())?;
                let Some((session, _)) = self.store.session_with_user(parsed.session).await? else {
                    return Err(AuthError::InvalidToken("unknown session"));
                };
                // A stale token at logout is the same signal as at refresh: someone holds a
                // rotated-out token. Handle it the same way rather than quietly logging out.
                match link(&session, parsed.counter, now, self.settings.reuse_grace) {
                    Link::Current | Link::Grace => {}
                    Link::Unknown => return Err(AuthError::InvalidToken("unknown refresh token")),
                    Link::Replayed if session.revoked_at.is_some() => {
                        return Err(AuthError::InvalidToken("session already ended"));
                    }
                    Link::Replayed => {
                        self.on_theft(&session, parsed.counter, client, now).await?;
                        return Err(AuthError::TokenTheftDetected);
                    }
                }
                if principal.is_some_and(|p| p.user.id != session.user_id) {
                    return Err(AuthError::InvalidToken("refresh token belongs to another user"));
                }
                session
            }
            (None, Some(p)) => p.session.clone(),
            (None, None) => return Err(AuthError::validation("refresh_token", "refresh_token is required")),
        };
        if !self.store.revoke_session(target.id, RevokeReason::Logout, now).await? {
            return Err(AuthError::InvalidToken("session already ended"));
        }
        self.audit("logout", Some(target.user_id), Some(target.id), client, json!({})).await;
        Ok(())
    }

    pub(super) async fn on_pool<T, F>(&self, f: F) -> Result<T, AuthError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.pool.run(f).await.map_err(|PoolBusy| AuthError::Busy { retry_after: BUSY_RETRY_AFTER })
    }

    /// Records a security event. A failing audit write is logged, never fatal: refusing a logout
    /// because the audit table is unwritable would be worse than a gap in the trail.
    pub(super) async fn audit(
        &self,
        kind: &'static str,
        user_id: Option<Uuid>,
        session: Option<SessionId>,
        client: &ClientInfo,
        details: serde_json::Value,
    ) {
        let event = AuditEvent {
            id: Uuid::new_v4(),
            at: self.clock.now(),
            kind: kind.to_owned(),
            user_id,
            session_id: session.map(|s| s.0),
            ip_address: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            details,
        };
        if let Err(e) = self.store.record(event).await {
            tracing::warn!(error = ?e, kind, "could not write audit event");
        }
    }
}

/// Trims a display name; empty becomes `None`; control characters and overlong names are refused.
pub(super) fn clean_name(name: Option<&str>) -> Result<Option<String>, AuthError> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AuthError::validation("name", format!("Name must be at most {MAX_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(AuthError::validation("name", "Name must not contain control characters"));
    }
    Ok(Some(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(clean_name(Some("  Ada  ")).ok().flatten().as_deref(), Some("Ada"));
        assert_eq!(clean_name(Some("   ")).ok().flatten(), None);
        assert!(clean_name(Some(&"x".repeat(256))).is_err());
        assert!(clean_name(Some("a\u{7}b")).is_err());
    }
}
