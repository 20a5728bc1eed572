//! Second factors: TOTP enrollment and removal, recovery codes, and the second step of a login.
//!
//! A login whose password is right answers, for a user with a second factor, with an
//! `mfa_token` instead of a session ([`LoginOutcome::MfaRequired`]). The token is a row of
//! `tb_mfa_challenge`: single use, five minutes, five tries. Every try is *taken* (an atomic
//! increment below the limit) before the code is checked, so concurrent requests cannot get more
//! than five guesses in all; a wrong code also counts toward the account's lockout, like a wrong
//! password. Failed-login counters are cleared only when the second step succeeds.
//!
//! The tries of one token bound one login, not the guesses of someone who has the password and
//! can log in again from many addresses: ten consecutive wrong second factors of a user (any
//! clients) lock the second step for everyone, 15 minutes doubling to a day, until a right factor
//! or a password change.
//!
//! A TOTP code is accepted once: the store moves `last_step` forward with a conditional UPDATE,
//! so the same code presented twice (on any nodes) is refused the second time.
use chrono::{DateTime, Duration};
use serde_json::json;
use uuid::Uuid;

use super::{AuthService, Authenticated, ClientInfo, Principal, lockout};
use crate::error::AuthError;
use crate::mfa::{
    MFA_TOKEN_MAX_ATTEMPTS, MFA_TOKEN_TTL_SECONDS, TotpSecret, mfa_lock_seconds, new_mfa_token, new_recovery_codes,
    normalize_recovery_code, parse_mfa_token, qr_svg, recovery_code_hash,
};
use crate::model::User;
use crate::password::{MAX_PASSWORD_BYTES, Verification};

/// What a login ends in.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    /// A session: no second factor needed.
    Authenticated(Box<Authenticated>),
    /// The password was right; the second step (`/auth/mfa/verify`, or a passkey) must follow.
    MfaRequired(MfaPending),
}

/// The answer to a login that needs a second factor. `Debug` hides the token.
#[derive(Clone)]
pub struct MfaPending {
    pub mfa_token: String,
    /// `totp`, `recovery_code`, `webauthn`: what the user can answer with.
    pub methods: Vec<&'static str>,
    pub expires_at: DateTime<chrono::Utc>,
}

impl std::fmt::Debug for MfaPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaPending").field("methods", &self.methods).finish_non_exhaustive()
    }
}

/// A new TOTP secret, shown once, for the user to scan or type.
#[derive(Clone)]
pub struct TotpSetup {
    /// Base32, no padding.
    pub secret: String,
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

impl std::fmt::Debug for TotpSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpSetup").finish_non_exhaustive()
    }
}

/// One try of an `mfa_token`, taken: the user it belongs to, for the second factor to be checked
/// against, then [`AuthService::mfa_complete`] or [`AuthService::mfa_failed`].
#[derive(Debug, Clone)]
pub struct MfaAttempt {
    pub user: User,
    hash: [u8; 32],
}

/// How a second factor was proven, for audit, metrics and the `amr`-like audit detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaMethod {
    Totp,
    RecoveryCode,
    Webauthn,
}

impl MfaMethod {
    /// What a typed code is: a recovery code if it has a recovery code's shape, else a TOTP code.
    fn of_code(code: &str) -> Self {
        if normalize_recovery_code(code).is_some() { Self::RecoveryCode } else { Self::Totp }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::RecoveryCode => "recovery_code",
            Self::Webauthn => "webauthn",
        }
    }
}

fn count(method: MfaMethod, outcome: &'static str) {
    metrics::counter!("fraise_mfa_total", "method" => method.as_str(), "outcome" => outcome).increment(1);
}

impl AuthService {
    /// After the password: a session, or (second factor enrolled) an `mfa_token`.
    pub(super) async fn after_password(&self, user: User, client: &ClientInfo) -> Result<LoginOutcome, AuthError> {
        if !user.mfa.is_enabled() {
            let out = self.start_session(user, client).await?;
            self.audit("login_success", Some(out.user.id), Some(out.session), client, json!({})).await;
            return Ok(LoginOutcome::Authenticated(Box::new(out)));
        }
        let now = self.clock.now();
        let (mfa_token, hash) = new_mfa_token();
        let expires_at = now + Duration::seconds(MFA_TOKEN_TTL_SECONDS);
        self.store.insert_mfa_challenge(&hash, user.id, now, expires_at).await?;
        let methods = user.mfa.login_methods();
        self.audit("login_mfa_required", Some(user.id), None, client, json!({"methods": methods})).await;
        Ok(LoginOutcome::MfaRequired(MfaPending { mfa_token, methods, expires_at }))
    }

    /// The user of a live `mfa_token`, without taking one of its tries (a passkey ceremony's
    /// start).
    pub async fn mfa_peek(&self, mfa_token: &str) -> Result<User, AuthError> {
        let hash = parse_mfa_token(mfa_token).ok_or(AuthError::MfaTokenExpired)?;
        let now = self.clock.now();
        let user = self
            .store
            .peek_mfa_challenge(&hash, now, MFA_TOKEN_MAX_ATTEMPTS)
            .await?
            .ok_or(AuthError::MfaTokenExpired)?;
        self.store.user_by_id(user).await?.ok_or(AuthError::MfaTokenExpired)
    }

    /// Takes one of the token's tries (refused once five are gone, or when expired or used), and
    /// refuses a locked or disabled account before any code is looked at.
    pub async fn mfa_attempt(&self, mfa_token: &str, client: &ClientInfo) -> Result<MfaAttempt, AuthError> {
        let hash = parse_mfa_token(mfa_token).ok_or(AuthError::MfaTokenExpired)?;
        let now = self.clock.now();
        let user =
            self.store.take_mfa_attempt(&hash, now, MFA_TOKEN_MAX_ATTEMPTS).await?.ok_or(AuthError::MfaTokenExpired)?;
        let user = self.store.user_by_id(user).await?.ok_or(AuthError::MfaTokenExpired)?;
        self.check_lockout(&lockout::email_key(&user.email), client).await?;
        self.check_mfa_lock(user.id).await?;
        if !user.is_active {
            return Err(AuthError::AccountDisabled);
        }
        Ok(MfaAttempt { user, hash })
    }

    /// Refuses while the user's second step is locked (too many wrong factors, any clients).
    async fn check_mfa_lock(&self, user: Uuid) -> Result<(), AuthError> {
        let now = self.clock.now();
        match self.store.mfa_locked_until(user, now).await? {
            Some(until) => Err(AuthError::AccountLocked {
                retry_after: (until - now).to_std().unwrap_or_default().max(std::time::Duration::from_secs(1)),
            }),
            None => Ok(()),
        }
    }

    /// Counts a wrong second factor against the user (every client) and locks at the threshold.
    async fn count_mfa_failure(&self, user: &User, client: &ClientInfo) -> Result<(), AuthError> {
        let now = self.clock.now();
        let failures = self.store.add_mfa_failure(user.id, now).await?;
        let lock = mfa_lock_seconds(failures);
        if lock > 0 {
            self.store.lock_mfa(user.id, now + Duration::seconds(lock)).await?;
            tracing::warn!(user = %user.id, failures, lock_seconds = lock, "second factor locked: repeated wrong codes");
            self.audit("mfa_locked", Some(user.id), None, client, json!({"failures": failures, "seconds": lock})).await;
        }
        Ok(())
    }

    /// Opens a stored TOTP secret, sealing it again under the current key if a former key opened
    /// it (so former keys can be retired once every user has signed in).
    async fn open_secret(&self, user: Uuid, sealed: &[u8]) -> Result<TotpSecret, AuthError> {
        let secret = self.sealer.open(user, sealed).map_err(|e| {
            tracing::error!(%user, "the TOTP secret cannot be opened: was JWT_SECRET_KEY or MFA_ENCRYPTION_KEY changed \
                without keeping the former one in JWT_PREVIOUS_SECRET_KEYS or MFA_PREVIOUS_ENCRYPTION_KEYS?");
            AuthError::internal(e)
        })?;
        if !self.sealer.is_current(sealed) {
            let resealed = self.sealer.seal(user, &secret);
            if self.store.reseal_totp(user, sealed, &resealed).await? {
                tracing::info!(%user, "TOTP secret sealed again under the current key");
            }
        }
        Ok(secret)
    }

    /// The second factor was proven: uses the token up and starts the session.
    pub async fn mfa_complete(
        &self,
        attempt: MfaAttempt,
        method: MfaMethod,
        client: &ClientInfo,
    ) -> Result<Authenticated, AuthError> {
        let now = self.clock.now();
        if !self.store.consume_mfa_challenge(&attempt.hash, now).await? {
            // Another request with the same token won.
            return Err(AuthError::MfaTokenExpired);
        }
        let email = lockout::email_key(&attempt.user.email);
        self.store.clear_failures(&email, Some(&lockout::client_key(client)), now).await?;
        self.store.clear_mfa_failures(attempt.user.id).await?;
        count(method, "success");
        let out = self.start_session(attempt.user, client).await?;
        self.audit("login_success", Some(out.user.id), Some(out.session), client, json!({"mfa": method.as_str()}))
            .await;
        Ok(out)
    }

    /// A wrong second factor: audited, counted toward the client's lockout like a wrong password,
    /// and toward the user's second-factor lock (all clients).
    pub async fn mfa_failed(&self, attempt: &MfaAttempt, method: MfaMethod, client: &ClientInfo) -> AuthError {
        count(method, "invalid");
        self.audit("mfa_failure", Some(attempt.user.id), None, client, json!({"method": method.as_str()})).await;
        if let Err(e) = self.count_mfa_failure(&attempt.user, client).await {
            return e;
        }
        let email = lockout::email_key(&attempt.user.email);
        match self.count_failure(&email, Some(attempt.user.id), client).await {
            Ok(()) => AuthError::InvalidMfaCode,
            Err(e) => e,
        }
    }

    /// `POST /auth/mfa/verify`: a TOTP code (six digits) or a recovery code.
    pub async fn mfa_verify(
        &self,
        mfa_token: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<Authenticated, AuthError> {
        let attempt = self.mfa_attempt(mfa_token, client).await?;
        let method = MfaMethod::of_code(code);
        if self.second_factor_ok(&attempt.user, code, method, client).await? {
            self.mfa_complete(attempt, method, client).await
        } else {
            Err(self.mfa_failed(&attempt, method, client).await)
        }
    }

    /// Checks (and, if right, spends) a TOTP code or a recovery code of an enrolled user.
    async fn second_factor_ok(
        &self,
        user: &User,
        code: &str,
        method: MfaMethod,
        client: &ClientInfo,
    ) -> Result<bool, AuthError> {
        match method {
            MfaMethod::RecoveryCode => {
                let Some(canonical) = normalize_recovery_code(code) else {
                    return Ok(false);
                };
                let used =
                    self.store.use_recovery_code(user.id, &recovery_code_hash(&canonical), self.clock.now()).await?;
                if used {
                    let left = self.store.recovery_codes_left(user.id).await?;
                    self.audit("mfa_recovery_code_used", Some(user.id), None, client, json!({"left": left})).await;
                }
                Ok(used)
            }
            MfaMethod::Totp => {
                let Some(record) = self.store.totp(user.id).await?.filter(|r| r.confirmed) else {
                    return Ok(false);
                };
                let secret = self.open_secret(user.id, &record.sealed_secret).await?;
                let Some(step) = secret.check(code, self.clock.now().timestamp()) else {
                    return Ok(false);
                };
                // A step at or before the last one used is a replay: refused even though it matches.
                Ok(step > record.last_step && self.store.use_totp_step(user.id, step).await?)
            }
            MfaMethod::Webauthn => Ok(false),
        }
    }

    /// `POST /auth/mfa/totp/setup`: a new secret, pending until confirmed. Refused while a
    /// confirmed one exists (remove it first).
    pub async fn totp_setup(&self, p: &Principal, client: &ClientInfo) -> Result<TotpSetup, AuthError> {
        let secret = TotpSecret::generate();
        let sealed = self.sealer.seal(p.user.id, &secret);
        if !self.store.put_pending_totp(p.user.id, &sealed, self.clock.now()).await? {
            return Err(AuthError::validation(
                "totp",
                "TOTP is already enabled; remove it before setting up a new one",
            ));
        }
        let issuer = match self.tenant_name() {
            Some(t) => format!("{} ({t})", self.settings.totp_issuer),
            None => self.settings.totp_issuer.clone(),
        };
        let otpauth_uri = secret.otpauth_uri(&issuer, &p.user.email);
        let qr_svg = qr_svg(&otpauth_uri).ok_or_else(|| AuthError::internal(QrError))?;
        self.audit("mfa_totp_setup_started", Some(p.user.id), Some(p.session.id), client, json!({})).await;
        Ok(TotpSetup { secret: secret.base32(), otpauth_uri, qr_svg })
    }

    /// `POST /auth/mfa/totp/confirm`: the first code from the app turns the pending secret on and
    /// returns ten recovery codes (shown once, stored hashed).
    pub async fn totp_confirm(&self, p: &Principal, code: &str, client: &ClientInfo) -> Result<Vec<String>, AuthError> {
        let Some(record) = self.store.totp(p.user.id).await?.filter(|r| !r.confirmed) else {
            return Err(AuthError::validation("code", "No TOTP setup is pending; call /auth/mfa/totp/setup first"));
        };
        let secret = self.sealer.open(p.user.id, &record.sealed_secret).map_err(AuthError::internal)?;
        let now = self.clock.now();
        let Some(step) = secret.check(code, now.timestamp()) else {
            count(MfaMethod::Totp, "invalid");
            self.audit("mfa_totp_confirm_failure", Some(p.user.id), Some(p.session.id), client, json!({})).await;
            return Err(AuthError::InvalidMfaCode);
        };
        let codes = new_recovery_codes();
        let hashes: Vec<[u8; 32]> =
            codes.iter().map(|c| recovery_code_hash(&normalize_recovery_code(c).unwrap_or_default())).collect();
        if !self.store.confirm_totp(p.user.id, &record.sealed_secret, step, &hashes, now).await? {
            // A setup (new secret) or a confirm raced this one.
            return Err(AuthError::InvalidMfaCode);
        }
        count(MfaMethod::Totp, "enrolled");
        self.audit("mfa_totp_enabled", Some(p.user.id), Some(p.session.id), client, json!({})).await;
        Ok(codes)
    }

    /// `DELETE /auth/mfa/totp`: needs a current code (or a recovery code) or the password. Wrong
    /// proofs count toward lockout: a stolen access token must not be a way to guess codes.
    pub async fn totp_remove(
        &self,
        p: &Principal,
        code: Option<&str>,
        password: Option<&str>,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let email = lockout::email_key(&p.user.email);
        self.check_lockout(&email, client).await?;
        self.check_mfa_lock(p.user.id).await?;
        let enrolled = self.store.totp(p.user.id).await?.is_some_and(|r| r.confirmed);
        if !enrolled {
            return Err(AuthError::validation("totp", "TOTP is not enabled"));
        }
        let ok = match (code, password) {
            (Some(code), _) => {
                let method = MfaMethod::of_code(code);
                self.second_factor_ok(&p.user, code, method, client).await?
            }
            (None, Some(password)) => self.password_ok(&p.user, password).await?,
            (None, None) => {
                return Err(AuthError::validation("code", "Give a current code ('code') or the password ('password')"));
            }
        };
        if !ok {
            self.audit("mfa_totp_remove_failure", Some(p.user.id), Some(p.session.id), client, json!({})).await;
            if code.is_some() {
                self.count_mfa_failure(&p.user, client).await?;
            }
            self.count_failure(&email, Some(p.user.id), client).await?;
            return Err(if code.is_some() { AuthError::InvalidMfaCode } else { AuthError::InvalidCredentials });
        }
        self.store.remove_totp(p.user.id, self.clock.now()).await?;
        self.store.clear_mfa_failures(p.user.id).await?;
        count(MfaMethod::Totp, "removed");
        self.audit("mfa_totp_disabled", Some(p.user.id), Some(p.session.id), client, json!({})).await;
        Ok(())
    }

    /// The password against the stored hash, on the hashing pool.
    async fn password_ok(&self, user: &User, password: &str) -> Result<bool, AuthError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let hasher = std::sync::Arc::clone(&self.hasher);
        let (pw, stored) = (password.to_owned(), user.password_hash.clone());
        let verdict = self.on_pool(move || hasher.verify(&pw, &stored)).await?;
        Ok(verdict != Verification::Invalid)
    }

    /// Support's `user reset-mfa`: removes every second factor of the user (TOTP, recovery codes,
    /// passkeys) and voids pending logins' tokens. `false` if there is no such user.
    pub async fn reset_mfa(&self, user: Uuid) -> Result<bool, AuthError> {
        if !self.store.reset_mfa(user, self.clock.now()).await? {
            return Ok(false);
        }
        self.audit("mfa_reset", Some(user), None, &ClientInfo::default(), json!({"by": "admin"})).await;
        Ok(true)
    }

    /// Whether the caller may use bearer routes other than the MFA ones (`REQUIRE_MFA`).
    pub fn enrolled_enough(&self, p: &Principal) -> Result<(), AuthError> {
        if self.settings.require_mfa && !p.user.mfa.is_enabled() {
            return Err(AuthError::MfaRequired);
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the otpauth URI does not fit in a QR code")]
struct QrError;
