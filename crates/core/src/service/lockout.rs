//! Brute-force protection: failed logins counted per (email, client) and per email.
//!
//! A client that keeps guessing one account is locked out of it quickly (from the 5th failure,
//! 1 min, doubling to at most 1 h), while the account as a whole is only slowed down at a much
//! higher threshold (from the 50th failure from anywhere, 30 s, doubling to at most 15 min): an
//! attacker cannot lock a victim out from everywhere cheaply. Counters are keyed by the email as
//! typed, so unknown emails lock exactly like known ones; locked answers (423 with Retry-After)
//! come before any hashing. A success clears the client's counters and the account's; a password
//! reset clears them all.
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{AuthService, ClientInfo};
use crate::error::AuthError;

/// The account-wide counter's client key.
pub(super) const ACCOUNT: &str = "*";

/// Thresholds and lock lengths.
#[derive(Debug, Clone)]
pub struct LockoutPolicy {
    pub client_threshold: i64,
    pub client_base: Duration,
    pub client_max: Duration,
    pub account_threshold: i64,
    pub account_base: Duration,
    pub account_max: Duration,
    /// Failures further apart than this start the count again.
    pub window: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            client_threshold: 5,
            client_base: Duration::minutes(1),
            client_max: Duration::hours(1),
            account_threshold: 50,
            account_base: Duration::seconds(30),
            account_max: Duration::minutes(15),
            window: Duration::minutes(15),
        }
    }
}

/// `base` doubled for every failure past `threshold`, capped at `max`; none below the threshold.
pub(super) fn lock_length(failures: i64, threshold: i64, base: Duration, max: Duration) -> Option<Duration> {
    if failures < threshold {
        return None;
    }
    let doublings = u32::try_from((failures - threshold).min(20)).unwrap_or(20);
    let secs = base.num_seconds().saturating_mul(1_i64 << doublings);
    Some(Duration::seconds(secs).min(max))
}

/// The counters' key for what the user typed: trimmed and lower-cased, bounded.
pub(super) fn email_key(typed: &str) -> String {
    typed.trim().to_lowercase().chars().take(254).collect()
}

pub(super) fn client_key(client: &ClientInfo) -> String {
    client.ip.clone().unwrap_or_else(|| "unknown".to_owned())
}

impl AuthService {
    pub(super) async fn check_lockout(&self, email: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let now = self.clock.now();
        let key = client_key(client);
        if let Some(until) = self.store.lock_until(email, &[key.as_str(), ACCOUNT], now).await? {
            return Err(locked(until, now));
        }
        Ok(())
    }

    /// Counts a failure for (email, client) and for the email; sets a lock where a threshold is
    /// crossed (and audits it).
    pub(super) async fn count_failure(
        &self,
        email: &str,
        user: Option<Uuid>,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let p = &self.settings.lockout;
        let now = self.clock.now();
        let window_start = now - p.window;
        let key = client_key(client);
        for (k, threshold, base, max) in [
            (key.as_str(), p.client_threshold, p.client_base, p.client_max),
            (ACCOUNT, p.account_threshold, p.account_base, p.account_max),
        ] {
            let failures = self.store.add_failure(email, k, now, window_start).await?;
            if let Some(length) = lock_length(failures, threshold, base, max) {
                self.store.set_lock(email, k, now + length).await?;
                let scope = if k == ACCOUNT { "account" } else { "client" };
                let details = json!({"scope": scope, "failures": failures, "seconds": length.num_seconds()});
                self.audit("account_locked", user, None, client, details).await;
            }
        }
        Ok(())
    }
}

fn locked(until: DateTime<Utc>, now: DateTime<Utc>) -> AuthError {
    let secs = (until - now).num_seconds().max(1);
    AuthError::AccountLocked { retry_after: std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(1)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_start_at_the_threshold_double_and_stop_at_the_cap() {
        let (b, m) = (Duration::minutes(1), Duration::hours(1));
        assert_eq!(lock_length(4, 5, b, m), None);
        assert_eq!(lock_length(5, 5, b, m), Some(Duration::minutes(1)));
        assert_eq!(lock_length(6, 5, b, m), Some(Duration::minutes(2)));
        assert_eq!(lock_length(12, 5, b, m), Some(Duration::hours(1)));
        assert_eq!(lock_length(10_000, 5, b, m), Some(Duration::hours(1)));
    }
}
