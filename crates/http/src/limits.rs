//! Rate limits: GCRA per client, in two buckets.
//!
//! - `auth`: POST login, register, forgot-password, reset-password (default 5 a minute);
//! - `general`: every other route (default 60 a minute); health probes are never limited.
//!
//! Limited responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
//! (Unix seconds when the bucket is full again); a refusal is 429 RATE_LIMITED with
//! `Retry-After`. Clients in `RATE_LIMIT_ALLOWLIST` are exempt. The client is the one
//! `protect::client_layer` established, so a spoofed `X-Forwarded-For` cannot pick its own key.
//!
//! This store is in memory (governor), so each node counts on its own; its memory is bounded by
//! dropping recovered keys once too many are tracked.
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

use crate::error::ApiError;
use crate::protect::ClientAddr;

type Keyed = governor::DefaultKeyedRateLimiter<IpAddr, StateInformationMiddleware>;

/// Past this many tracked clients per bucket, fully recovered entries are dropped.
const MAX_TRACKED: usize = 100_000;

/// Settings of the limiter.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub general_per_minute: u32,
    pub auth_per_minute: u32,
    pub allowlist: Vec<IpNet>,
}

/// One bucket: its quota and its per-client state.
struct Bucket {
    per_minute: u32,
    limiter: Keyed,
}

impl Bucket {
    fn new(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Self { per_minute: n.get(), limiter: RateLimiter::keyed(Quota::per_minute(n)).with_middleware() }
    }
}

/// The two buckets, shared by every request.
pub struct Limits {
    general: Bucket,
    auth: Bucket,
    allowlist: Vec<IpNet>,
    auth_paths: Vec<String>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("general", &self.general.per_minute)
            .field("auth", &self.auth.per_minute)
            .finish()
    }
}

impl Limits {
    pub fn new(s: &LimitSettings, auth_prefix: &str) -> Self {
        let auth_paths = ["login", "register", "forgot-password", "reset-password"]
            .iter()
            .map(|p| format!("{auth_prefix}/{p}"))
            .collect();
        Self {
            general: Bucket::new(s.general_per_minute),
            auth: Bucket::new(s.auth_per_minute),
            allowlist: s.allowlist.clone(),
            auth_paths,
        }
    }

    fn bucket(&self, method: &Method, path: &str) -> Option<&Bucket> {
        if path == "/health" || path.starts_with("/health/") {
            return None;
        }
        if method == Method::POST && self.auth_paths.iter().any(|p| p == path) {
            Some(&self.auth)
        } else {
            Some(&self.general)
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn headers(h: &mut HeaderMap, limit: u32, remaining: u32, full_in: Duration) {
    let reset = unix_now() + full_in.as_secs() + u64::from(full_in.subsec_nanos() > 0);
    for (name, value) in [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
}

/// The middleware.
pub async fn limit_layer(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let Some(client) = req.extensions().get::<ClientAddr>().map(|c| c.ip) else {
        // No client address (embedded without ConnectInfo): nothing to key on.
        return next.run(req).await;
    };
    if limits.allowlist.iter().any(|net| net.contains(&client)) {
        return next.run(req).await;
    }
    let Some(bucket) = limits.bucket(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    if bucket.limiter.len() > MAX_TRACKED {
        bucket.limiter.retain_recent();
    }
    let per_cell = Duration::from_secs(60) / bucket.per_minute;
    match bucket.limiter.check_key(&client) {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            let mut res = next.run(req).await;
            headers(res.headers_mut(), bucket.per_minute, remaining, per_cell * (bucket.per_minute - remaining));
            res
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut err = ApiError::from(fraise_core::AuthError::RateLimited { retry_after: wait });
            // Retry-After is whole seconds, rounded up: never tell a client to come back early.
            err.retry_after = Some(
                Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(Duration::from_secs(1)),
            );
            let mut res = err.into_response();
            headers(res.headers_mut(), bucket.per_minute, 0, per_cell * bucket.per_minute);
            res
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_routes_use_the_auth_bucket_and_probes_none() {
        let l = Limits::new(&LimitSettings { general_per_minute: 60, auth_per_minute: 5, allowlist: vec![] }, "/auth");
        assert_eq!(l.bucket(&Method::POST, "/auth/login").map(|b| b.per_minute), Some(5));
        assert_eq!(l.bucket(&Method::POST, "/auth/forgot-password").map(|b| b.per_minute), Some(5));
        assert_eq!(l.bucket(&Method::GET, "/auth/login").map(|b| b.per_minute), Some(60));
        assert_eq!(l.bucket(&Method::GET, "/auth/me").map(|b| b.per_minute), Some(60));
        assert!(l.bucket(&Method::GET, "/health/ready").is_none());
    }
}
