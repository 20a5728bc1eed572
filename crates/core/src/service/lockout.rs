//! Brute-force protection: failed logins counted per (email, client) and per email.
//!
//! A client that keeps guessing one account is locked out of it quickly (from the 5th failure,
//! 1 min, doubling to at most 1 h), while the account as a whole is only *slowed down* at a much
//! higher threshold (from the 50th failure from anywhere, every login attempt on it waits
//! `account_delay` before its password is checked, for as long as failures keep coming): nobody
//! is refused because of someone else's guesses, so an attacker cannot lock a victim out from
//! everywhere, and guessing from many addresses gets slow. Counters are keyed by the email as
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
    /// The wait of every attempt on an account under attack.
    pub account_delay: Duration,
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
            account_delay: Duration::seconds(2),
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
    match client.ip.as_deref().and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) {
        Some(ip) => client_bucket(ip).to_string(),
        None => client.ip.clone().unwrap_or_else(|| "unknown".to_owned()),
    }
}

/// The address that stands for a client in every per-client count (rate limits, lockout,
/// throttles): IPv4 as is (IPv4-mapped IPv6 unmapped first), IPv6 reduced to its /64 - a single
/// host commonly holds a whole /64 and would otherwise get a fresh quota per address.
pub fn client_bucket(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv6Addr};
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl AuthService {
    /// 423 when this client is locked out of this account; a delay (then a normal check) when the
    /// account as a whole is being guessed at.
    pub(super) async fn check_lockout(&self, email: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let now = self.clock.now();
        let key = client_key(client);
        if let Some(until) = self.store.lock_until(email, &[key.as_str()], now).await? {
            return Err(locked(until, now));
        }
        if self.store.lock_until(email, &[ACCOUNT], now).await?.is_some() {
            let delay = self.settings.lockout.account_delay.to_std().unwrap_or_default();
            tokio::time::sleep(delay).await;
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
        // This client: a growing lock from the threshold on.
        let failures = self.store.add_failure(email, &key, now, window_start).await?;
        if let Some(length) = lock_length(failures, p.client_threshold, p.client_base, p.client_max) {
            self.store.set_lock(email, &key, now + length).await?;
            let details = json!({"scope": "client", "failures": failures, "seconds": length.num_seconds()});
            self.audit("account_locked", user, None, client, details).await;
        }
        // The account: from its (higher) threshold, slowed down while failures keep coming.
        let failures = self.store.add_failure(email, ACCOUNT, now, window_start).await?;
        if failures >= p.account_threshold {
            self.store.set_lock(email, ACCOUNT, now + p.window).await?;
            if failures == p.account_threshold {
                let details = json!({"scope": "account", "failures": failures, "slowdown": true});
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
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let key = |ip: &str| client_key(&ClientInfo { ip: Some(ip.to_owned()), user_agent: None });
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
    }

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
