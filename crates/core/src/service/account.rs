//! The account lifecycle: change and reset the password, edit the profile, verify the email.
//!
//! Emailed tokens are 32 random bytes (base64url in the link), stored only as SHA-256, single use,
//! with a lifetime; issuing a new one voids the older ones of the same kind.
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{AuthService, ClientInfo, Principal, clean_name};
use crate::email::Email;
use crate::error::AuthError;
use crate::mail::Message;
use crate::model::{RevokeReason, User};
use crate::password::Verification;
use crate::store::OneTimeKind;

/// A GCRA limiter keyed by client IP.
/// A GCRA limiter keyed by client, with pruning that a flood cannot turn into a full scan of the
/// map on every request.
pub(super) struct ClientLimiter {
    limiter: governor::DefaultKeyedRateLimiter<String>,
    /// Unix second of the last prune.
    last_prune: std::sync::atomic::AtomicU64,
}

impl ClientLimiter {
    pub(super) fn new(per_hour: u32) -> Self {
        let n = std::num::NonZeroU32::new(per_hour.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        Self { limiter: governor::RateLimiter::keyed(governor::Quota::per_hour(n)), last_prune: 0.into() }
    }

    /// Drops fully recovered keys (memory stays bounded).
    pub(super) fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn check(&self, key: &str) -> Result<(), std::time::Duration> {
        use std::sync::atomic::Ordering;
        if self.limiter.len() > MAX_TRACKED_CLIENTS {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let last = self.last_prune.load(Ordering::Relaxed);
            if now > last && self.last_prune.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                self.limiter.retain_recent();
            }
        }
        self.limiter.check_key(&key.to_owned()).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()))
        })
    }
}

/// Above this many tracked clients, recovered entries are dropped (at most once a second) rather
/// than only at the next cleanup: memory stays bounded under a flood of distinct addresses.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Largest accepted `metadata` object, serialized.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// PostgreSQL's jsonb cannot hold U+0000; refuse it on every backend alike.
fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// A fresh token: the text for the link and the hash for the database.
fn new_token() -> (String, [u8; 32]) {
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    (B64.encode(raw), Sha256::digest(raw).into())
}

/// The stored hash of a presented token, if it has the shape of one of ours.
fn token_hash(text: &str) -> Result<[u8; 32], AuthError> {
    let mut raw = [0u8; 32];
    match B64.decode_slice(text.trim(), &mut raw) {
        Ok(32) if text.trim().len() == 43 => Ok(Sha256::digest(raw).into()),
        _ => Err(AuthError::InvalidResetToken),
    }
}

impl AuthService {
    /// The per-client limit of the emailing routes (forgot-password, verification by email):
    /// 429 with the wait when exceeded. No client address, no per-client limit (one shared
    /// "unknown" bucket would let anyone block the route for everyone).
    fn enforce_client_limit(&self, client: &ClientInfo) -> Result<(), AuthError> {
        if client.ip.is_none() {
            return Ok(());
        }
        let key = super::lockout::client_key(client);
        self.forgot_limiter
            .check(&key)
            .map_err(|wait| AuthError::RateLimited { retry_after: wait.max(std::time::Duration::from_secs(1)) })
    }

    fn check_new_password(&self, password: &str) -> Result<(), AuthError> {
        let violations = self.settings.policy.violations(password);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(AuthError::WeakPassword(format!(
                "Password does not meet security requirements: needs {}",
                violations.join(", ")
            )))
        }
    }

    /// Changes the caller's password after checking the current one; every other session of the
    /// user is revoked, the current one kept.
    pub async fn change_password(
        &self,
        p: &Principal,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        if current.len() > crate::password::MAX_PASSWORD_BYTES {
            return Err(AuthError::validation("current_password", "Current password is incorrect"));
        }
        self.check_new_password(new)?;
        // A stolen access token must not become an unlimited password oracle: the same counters
        // and locks as login.
        let throttle_key = super::lockout::email_key(&p.user.email);
        self.check_lockout(&throttle_key, client).await?;
        let (hasher, stored, current, new) =
            (Arc::clone(&self.hasher), p.user.password_hash.clone(), current.to_owned(), new.to_owned());
        // One pool job: verify the old password, and only then hash the new one.
        let hashed = self
            .on_pool(move || match hasher.verify(&current, &stored) {
                Verification::Invalid => None,
                _ => Some(hasher.hash(&new)),
            })
            .await?;
        let Some(hash) = hashed else {
            self.audit("password_change_failed", Some(p.user.id), Some(p.session.id), client, json!({})).await;
            self.count_failure(&throttle_key, Some(p.user.id), client).await?;
            return Err(AuthError::validation("current_password", "Current password is incorrect"));
        };
        let hash = hash.map_err(AuthError::internal)?;
        let now = self.clock.now();
        let revoked =
            self.store.set_password(p.user.id, &hash, Some(p.session.id), RevokeReason::PasswordChanged, now).await?;
        self.audit(
            "password_changed",
            Some(p.user.id),
            Some(p.session.id),
            client,
            json!({"sessions_revoked": revoked}),
        )
        .await;
        Ok(())
    }

    /// Updates `name` and/or `metadata` (a JSON object of at most [`MAX_METADATA_BYTES`]).
    pub async fn update_profile(
        &self,
        p: &Principal,
        name: Option<Option<String>>,
        metadata: Option<Value>,
    ) -> Result<User, AuthError> {
        let name = match name {
            None => None,
            Some(n) => Some(clean_name(n.as_deref())?),
        };
        if let Some(m) = &metadata {
            if !m.is_object() {
                return Err(AuthError::validation("metadata", "metadata must be a JSON object"));
            }
            if contains_nul(m) {
                return Err(AuthError::validation("metadata", "metadata must not contain NUL characters"));
            }
            if m.to_string().len() > MAX_METADATA_BYTES {
                return Err(AuthError::validation(
                    "metadata",
                    format!("metadata must be at most {MAX_METADATA_BYTES} bytes"),
                ));
            }
        }
        let now = self.clock.now();
        self.store.update_profile(p.user.id, name, metadata, now).await?.ok_or(AuthError::InvalidToken("user is gone"))
    }

    /// Starts a password reset. Answers at once and identically whether or not the account
    /// exists: the lookup, the token and the email all happen in a background task.
    pub fn forgot_password(&self, email: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let email = Email::parse(email)?;
        // Per client: a flood from one address cannot mail-bomb many accounts. (Per email: the
        // throttle in `send_reset`, stored in the database, so it holds across nodes.)
        self.enforce_client_limit(client)?;
        // The request's time, not the task's: throttling and expiry count from when it was asked.
        let (this, client, now) = (self.clone(), client.clone(), self.clock.now());
        tokio::spawn(async move {
            if let Err(e) = this.send_reset(&email, &client, now).await {
                tracing::warn!(error = ?e, "password reset email not sent");
            }
        });
        Ok(())
    }

    async fn send_reset(&self, email: &Email, client: &ClientInfo, now: DateTime<Utc>) -> Result<(), AuthError> {
        let Some(user) = self.store.user_by_email(email).await?.filter(|u| u.is_active) else {
            self.audit("password_reset_requested", None, None, client, json!({"delivered": false})).await;
            return Ok(());
        };
        let (token, hash) = new_token();
        let ttl = self.settings.reset_ttl;
        let since = now - self.settings.reset_throttle;
        if !self.store.issue_one_time(OneTimeKind::PasswordReset, user.id, &hash, now, now + ttl, since).await? {
            let details = json!({"delivered": false, "throttled": true});
            self.audit("password_reset_requested", Some(user.id), None, client, details).await;
            return Ok(());
        }
        let link = self.settings.links.reset(&token);
        let text = format!(
            "Someone asked to reset the password of {}.\n\nOpen this link within {} minutes to choose a new one:\n{link}\n\n\
             If it was not you, ignore this message: your password has not changed.\n",
            user.email,
            ttl.num_minutes()
        );
        self.mailer
            .send(Message { to: user.email.clone(), subject: "Reset your password".into(), text, link })
            .await
            .map_err(AuthError::internal)?;
        self.audit("password_reset_requested", Some(user.id), None, client, json!({"delivered": true})).await;
        Ok(())
    }

    /// Sets a new password with an emailed token; every session of the user is revoked.
    pub async fn reset_password(&self, token: &str, new: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let hash = token_hash(token)?;
        self.check_new_password(new)?;
        let now = self.clock.now();
        // Check before hashing (no Argon2 work for made-up tokens), consume after (atomic).
        if self.store.peek_one_time(OneTimeKind::PasswordReset, &hash, now).await?.is_none() {
            return Err(AuthError::InvalidResetToken);
        }
        let (hasher, new) = (Arc::clone(&self.hasher), new.to_owned());
        let password_hash = self.on_pool(move || hasher.hash(&new)).await?.map_err(AuthError::internal)?;
        let Some(user) = self.store.consume_one_time(OneTimeKind::PasswordReset, &hash, now).await? else {
            return Err(AuthError::InvalidResetToken);
        };
        let revoked = self.store.set_password(user, &password_hash, None, RevokeReason::PasswordChanged, now).await?;
        self.audit("password_reset_completed", Some(user), None, client, json!({"sessions_revoked": revoked})).await;
        // Whoever was locked out of this account may come back in with the new password.
        let email = self.store.user_by_id(user).await?.map(|u| super::lockout::email_key(&u.email));
        let lifted = match email {
            Some(email) => self.store.clear_failures(&email, None, now).await?,
            None => 0,
        };
        if lifted > 0 {
            self.audit("account_unlocked", Some(user), None, client, json!({"by": "password_reset"})).await;
        }
        Ok(())
    }

    /// Mails the caller a verification link (nothing is sent when already verified, or when one
    /// went out less than a minute ago).
    pub async fn request_verification(&self, p: &Principal, client: &ClientInfo) -> Result<(), AuthError> {
        self.send_verification(&p.user, client, self.clock.now()).await
    }

    /// The same without a session, by email (a user whose register session has ended and who
    /// cannot log in while verification is required). Answers at once and identically whether or
    /// not the account exists; limited per client like forgot-password.
    pub fn resend_verification(&self, email: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let email = Email::parse(email)?;
        self.enforce_client_limit(client)?;
        let (this, client, now) = (self.clone(), client.clone(), self.clock.now());
        tokio::spawn(async move {
            let user = match this.store.user_by_email(&email).await {
                Ok(Some(u)) if u.is_active => u,
                Ok(_) => return,
                Err(e) => return tracing::warn!(error = ?e, "verification email not sent"),
            };
            if let Err(e) = this.send_verification(&user, &client, now).await {
                tracing::warn!(error = ?e, "verification email not sent");
            }
        });
        Ok(())
    }

    async fn send_verification(&self, user: &User, client: &ClientInfo, now: DateTime<Utc>) -> Result<(), AuthError> {
        if user.email_verified {
            return Ok(());
        }
        let (token, hash) = new_token();
        let ttl = self.settings.verification_ttl;
        let since = now - self.settings.reset_throttle;
        if !self.store.issue_one_time(OneTimeKind::EmailVerification, user.id, &hash, now, now + ttl, since).await? {
            return Ok(());
        }
        let link = self.settings.links.verify(&token);
        let text = format!("Confirm that {} is your email address by opening this link:\n{link}\n", user.email);
        let message = Message { to: user.email.clone(), subject: "Confirm your email address".into(), text, link };
        let (mailer, id) = (Arc::clone(&self.mailer), user.id);
        // Delivery (SMTP can take seconds) happens off the request path.
        tokio::spawn(async move {
            if let Err(e) = mailer.send(message).await {
                tracing::warn!(error = ?e, user = %id, "verification email not sent");
            }
        });
        self.audit("email_verification_requested", Some(user.id), None, client, json!({})).await;
        Ok(())
    }

    /// Marks the email of the token's user as verified.
    pub async fn verify_email(&self, token: &str, client: &ClientInfo) -> Result<User, AuthError> {
        let hash = token_hash(token)?;
        let now = self.clock.now();
        let user = self
            .store
            .consume_one_time(OneTimeKind::EmailVerification, &hash, now)
            .await?
            .ok_or(AuthError::InvalidResetToken)?;
        let user = self.store.set_email_verified(user, now).await?.ok_or(AuthError::InvalidResetToken)?;
        self.audit("email_verified", Some(user.id), None, client, json!({})).await;
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_anywhere_in_metadata_is_found() {
        assert!(contains_nul(&json!({"a": ["x\u{0}"]})));
        assert!(contains_nul(&json!({"k\u{0}": 1})));
        assert!(!contains_nul(&json!({"a": [1, "b", {"c": null}]})));
    }

    #[test]
    fn tokens_are_43_chars_and_hash_back() {
        let (text, hash) = new_token();
        assert_eq!(text.len(), 43);
        assert_eq!(token_hash(&text).ok(), Some(hash));
        assert!(token_hash("short").is_err());
        assert!(token_hash(&"!".repeat(43)).is_err());
        assert!(token_hash(&format!("{text}A")).is_err());
    }
}
