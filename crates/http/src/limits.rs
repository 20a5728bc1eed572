//! Rate limits: GCRA per client, in two buckets.
//!
//! - `auth`: POST login, register, forgot-password, reset-password, change-password, mfa/verify,
//!   the passkey sign-in (webauthn/login/start, /finish), and DELETE mfa/totp: every route that
//!   checks a password, a code or a passkey (default 5 a minute);
//! - `general`: every other route (default 60 a minute); health probes and the hosted page's
//!   static files (`GET /ui/...`) are never limited.
//!
//! Limited responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
//! (Unix seconds when the bucket is full again); a refusal is 429 RATE_LIMITED with
//! `Retry-After`. Clients in `RATE_LIMIT_ALLOWLIST` are exempt. The client is the one
//! `protect::client_layer` established, so a spoofed `X-Forwarded-For` cannot pick its own key.
//!
//! Two stores: in memory (governor; each node counts on its own; memory bounded by dropping
//! recovered keys once too many are tracked), or Redis (`REDIS_URL`; every node shares one count:
//! one Lua script per decision, GCRA on Redis's own clock, keys that expire). When Redis cannot
//! be reached the configured policy applies: `open` lets requests through (logged), `closed`
//! answers 503 SERVICE_UNAVAILABLE; `/health` reports which.
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

/// Past this many tracked clients per bucket, fully recovered entries are dropped; past twice as
/// many (a flood of distinct addresses all active within the window) the bucket starts afresh:
/// memory stays bounded, at the price of forgetting counts during such a flood.
const MAX_TRACKED: usize = 100_000;

/// Settings of the limiter.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub general_per_minute: u32,
    pub auth_per_minute: u32,
    pub allowlist: Vec<IpNet>,
    /// `Some` for the shared Redis store.
    pub redis: Option<RedisSettings>,
}

#[derive(Clone)]
pub struct RedisSettings {
    /// The connection URL (may hold a password: not shown by `Debug`).
    pub url: String,
    /// Prefix of every key, so several deployments can share one Redis.
    pub prefix: String,
    /// `true`: let requests through while Redis is unreachable; `false`: refuse them with 503.
    pub fail_open: bool,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings").field("prefix", &self.prefix).field("fail_open", &self.fail_open).finish()
    }
}

/// GCRA in one atomic step, on Redis's clock (nodes' clocks need not agree).
/// KEYS[1] = the client's key; ARGV[1] = emission interval T in microseconds, ARGV[2] = limit.
/// Returns {allowed, remaining, retry_after_us, full_in_us}.
const GCRA: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local t = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tau = t * limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + t
if new_tat - tau > now then
  return {0, 0, new_tat - tau - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now + tau - new_tat) / t), 0, new_tat - now}
"#;

/// The shared store.
struct RedisStore {
    settings: RedisSettings,
    client: redis::Client,
    conn: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    script: redis::Script,
}

/// What a store decided.
struct Decision {
    allowed: bool,
    remaining: u32,
    retry_after: Duration,
    full_in: Duration,
}

impl RedisStore {
    async fn connection(&self) -> redis::RedisResult<redis::aio::ConnectionManager> {
        let conn = self
            .conn
            .get_or_try_init(|| {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_millis(500)))
                    .set_response_timeout(Some(Duration::from_millis(500)))
                    .set_number_of_retries(1);
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await?;
        Ok(conn.clone())
    }

    async fn check(&self, bucket: &str, per_minute: u32, client: IpAddr) -> redis::RedisResult<Decision> {
        let mut conn = self.connection().await?;
        let key = format!("{}{bucket}:{client}", self.settings.prefix);
        let t_us = 60_000_000 / u64::from(per_minute.max(1));
        let (allowed, remaining, retry_us, full_us): (i64, i64, i64, i64) =
            self.script.key(key).arg(t_us).arg(per_minute).invoke_async(&mut conn).await?;
        let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Decision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining).unwrap_or(0),
            retry_after: us(retry_us),
            full_in: us(full_us),
        })
    }

    /// For `/health`: can Redis be reached right now?
    async fn ping(&self) -> bool {
        match self.connection().await {
            Ok(mut c) => redis::cmd("PING").query_async::<String>(&mut c).await.is_ok(),
            Err(_) => false,
        }
    }
}

/// One bucket: its quota and its per-client state (replaceable, to start afresh after a flood).
struct Bucket {
    per_minute: u32,
    limiter: std::sync::RwLock<Arc<Keyed>>,
}

impl Bucket {
    fn new(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Self { per_minute: n.get(), limiter: std::sync::RwLock::new(Arc::new(Self::fresh(n))) }
    }

    fn fresh(n: NonZeroU32) -> Keyed {
        RateLimiter::keyed(Quota::per_minute(n)).with_middleware()
    }

    fn current(&self) -> Arc<Keyed> {
        Arc::clone(&self.limiter.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn start_afresh(&self) {
        let n = NonZeroU32::new(self.per_minute).unwrap_or(NonZeroU32::MIN);
        *self.limiter.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Self::fresh(n));
    }
}

/// The two buckets, shared by every request.
pub struct Limits {
    general: Bucket,
    auth: Bucket,
    allowlist: Vec<IpNet>,
    auth_paths: Vec<String>,
    redis: Option<RedisStore>,
    max_tracked: usize,
    /// Unix seconds of the last prune.
    last_prune: std::sync::atomic::AtomicU64,
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
    /// Fails only for a malformed `REDIS_URL`; connecting happens at first use.
    pub fn new(s: &LimitSettings, auth_prefix: &str) -> Result<Self, String> {
        // change-password checks a password too: without this it would be an unlimited oracle.
        // So do the second factor's routes: a code is a guess too; and a passkey sign-in is a login.
        let auth_paths = [
            "login",
            "register",
            "forgot-password",
            "reset-password",
            "change-password",
            "mfa/verify",
            "mfa/totp",
            "webauthn/login/start",
            "webauthn/login/finish",
        ]
        .iter()
        .map(|p| format!("{auth_prefix}/{p}"))
        .collect();
        let redis = match &s.redis {
            None => None,
            Some(r) => Some(RedisStore {
                client: redis::Client::open(r.url.as_str()).map_err(|e| format!("REDIS_URL: {e}"))?,
                settings: r.clone(),
                conn: tokio::sync::OnceCell::new(),
                script: redis::Script::new(GCRA),
            }),
        };
        Ok(Self {
            general: Bucket::new(s.general_per_minute),
            auth: Bucket::new(s.auth_per_minute),
            allowlist: s.allowlist.clone(),
            auth_paths,
            redis,
            max_tracked: MAX_TRACKED,
            last_prune: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn prune_due(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = unix_now();
        let last = self.last_prune.load(Ordering::Relaxed);
        now > last && self.last_prune.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Keys tracked by the in-memory buckets (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.general.current().len() + self.auth.current().len()
    }

    /// What `/health` says about the limiter.
    pub async fn health(&self) -> serde_json::Value {
        match &self.redis {
            None => serde_json::json!({"store": "memory", "status": "ok"}),
            Some(r) => {
                let ok = r.ping().await;
                serde_json::json!({
                    "store": "redis",
                    "status": if ok { "ok" } else { "unreachable" },
                    "failure_policy": if r.settings.fail_open { "open" } else { "closed" },
                })
            }
        }
    }

    /// Decides for one request in `bucket` (a name for the Redis key).
    async fn decide(&self, bucket: &Bucket, name: &str, client: IpAddr) -> Option<Decision> {
        if let Some(r) = &self.redis {
            return match r.check(name, bucket.per_minute, client).await {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, fail_open = r.settings.fail_open, "rate limiter: Redis unreachable");
                    None
                }
            };
        }
        let mut limiter = bucket.current();
        // Pruning scans the whole map: at most once a second, not on every request of a flood.
        if limiter.len() > self.max_tracked && self.prune_due() {
            limiter.retain_recent();
            if limiter.len() > 2 * self.max_tracked {
                tracing::warn!(tracked = limiter.len(), "rate limiter: flood of distinct clients, starting afresh");
                bucket.start_afresh();
                limiter = bucket.current();
            }
        }
        let per_cell = Duration::from_secs(60) / bucket.per_minute;
        Some(match limiter.check_key(&client) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    remaining,
                    retry_after: Duration::ZERO,
                    full_in: per_cell * (bucket.per_minute - remaining),
                }
            }
            Err(not_until) => Decision {
                allowed: false,
                remaining: 0,
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                full_in: per_cell * bucket.per_minute,
            },
        })
    }

    fn bucket(&self, method: &Method, path: &str) -> Option<(&Bucket, &'static str)> {
        if path == "/health" || path.starts_with("/health/") {
            return None;
        }
        // The hosted page's static files: one page load is ten of them, none an API call.
        if method == Method::GET && crate::ui::is_ui_path(path) {
            return None;
        }
        if (method == Method::POST || method == Method::DELETE) && self.auth_paths.iter().any(|p| p == path) {
            Some((&self.auth, "auth"))
        } else {
            Some((&self.general, "general"))
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
    let Some(client) = req.extensions().get::<ClientAddr>().map(|c| fraise_core::service::client_bucket(c.ip)) else {
        // No client address (embedded without ConnectInfo): nothing to key on.
        return next.run(req).await;
    };
    if limits.allowlist.iter().any(|net| net.contains(&client)) {
        return next.run(req).await;
    }
    let Some((bucket, name)) = limits.bucket(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let Some(d) = limits.decide(bucket, name, client).await else {
        // The shared store is unreachable: the configured policy decides.
        if limits.redis.as_ref().is_some_and(|r| r.settings.fail_open) {
            return next.run(req).await;
        }
        let mut err = ApiError::from(fraise_core::AuthError::Unavailable("rate limiter unavailable".into()));
        err.retry_after = Some(Duration::from_secs(1));
        return err.into_response();
    };
    if d.allowed {
        let mut res = next.run(req).await;
        headers(res.headers_mut(), bucket.per_minute, d.remaining, d.full_in);
        return res;
    }
    metrics::counter!("fraise_rate_limited_total", "bucket" => name).increment(1);
    let mut err = ApiError::from(fraise_core::AuthError::RateLimited { retry_after: d.retry_after });
    // Retry-After is whole seconds, rounded up: never tell a client to come back early.
    let secs = d.retry_after.as_secs() + u64::from(d.retry_after.subsec_nanos() > 0);
    err.retry_after = Some(Duration::from_secs(secs.max(1)));
    let mut res = err.into_response();
    headers(res.headers_mut(), bucket.per_minute, 0, d.full_in);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_stays_bounded_under_a_flood_of_distinct_clients() {
        let settings = LimitSettings { general_per_minute: 60, auth_per_minute: 5, allowlist: vec![], redis: None };
        let Ok(mut l) = Limits::new(&settings, "/auth") else { panic!("memory limits always build") };
        l.max_tracked = 10;
        for i in 0..200u32 {
            l.last_prune.store(0, std::sync::atomic::Ordering::Relaxed); // every request may prune here
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            let d = l.decide(&l.general, "general", ip).await;
            assert!(d.is_some_and(|d| d.allowed));
            assert!(l.tracked() <= 2 * 10 + 1, "tracked {} after {i}", l.tracked());
        }
    }

    #[test]
    fn auth_routes_use_the_auth_bucket_and_probes_none() {
        let settings = LimitSettings { general_per_minute: 60, auth_per_minute: 5, allowlist: vec![], redis: None };
        let Ok(l) = Limits::new(&settings, "/auth") else { panic!("memory limits always build") };
        assert_eq!(l.bucket(&Method::POST, "/auth/login").map(|b| b.0.per_minute), Some(5));
        assert_eq!(l.bucket(&Method::POST, "/auth/forgot-password").map(|b| b.1), Some("auth"));
        assert_eq!(l.bucket(&Method::POST, "/auth/change-password").map(|b| b.1), Some("auth"));
        assert_eq!(l.bucket(&Method::POST, "/auth/webauthn/login/start").map(|b| b.1), Some("auth"));
        assert_eq!(l.bucket(&Method::POST, "/auth/webauthn/login/finish").map(|b| b.1), Some("auth"));
        assert_eq!(l.bucket(&Method::POST, "/auth/webauthn/register/start").map(|b| b.1), Some("general"));
        assert_eq!(l.bucket(&Method::GET, "/auth/login").map(|b| b.0.per_minute), Some(60));
        assert_eq!(l.bucket(&Method::GET, "/auth/me").map(|b| b.1), Some("general"));
        assert!(l.bucket(&Method::GET, "/health/ready").is_none());
    }
}
