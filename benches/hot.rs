//! Micro-benchmarks of the hot functions: `cargo bench --bench hot`.
//!
//! - `argon2id/hash` and `argon2id/verify`: with the configured parameters (ARGON2_* environment
//!   variables, default the guide's m=102400 KiB, t=2, p=8); this is the cost of one login.
//! - `jwt/sign`, `jwt/verify`: HS256 access tokens (every bearer request verifies one).
//! - `refresh/mint`, `refresh/parse`: the HMAC refresh token (every refresh does both).
//! - `http/route_health_live`: one request through the whole router and every layer (request id,
//!   trace span, metrics, load shedding, limits, CSRF, envelope guard, security headers), no I/O.
//! - `http/user_json`: the user object of `/auth/me`, built and encoded as JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use fraise_auth::config::{Config, Sources};
use fraise_core::model::SessionId;
use fraise_core::password::PasswordHasher;
use fraise_core::tokens::{AccessTokens, JwtSettings, RefreshToken, RefreshTokens};
use uuid::Uuid;

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret-0123";

fn argon2(c: &mut Criterion) {
    let sources = Sources::gather(None, &[]).unwrap();
    let params = Config::from_sources(&sources).map(|c| c.argon2).unwrap_or_default();
    let hasher = PasswordHasher::new(params).unwrap();
    let stored = hasher.hash("TestPass123!").unwrap();
    let mut g = c.benchmark_group("argon2id");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function(format!("hash m={},t={},p={}", params.memory_kib, params.iterations, params.parallelism), |b| {
        b.iter(|| hasher.hash("TestPass123!").unwrap())
    });
    g.bench_function("verify", |b| b.iter(|| hasher.verify("TestPass123!", &stored)));
    g.finish();
}

fn jwt(c: &mut Criterion) {
    let tokens = AccessTokens::hs256(SECRET, JwtSettings::default()).unwrap();
    let (user, session, roles) = (Uuid::new_v4(), SessionId::new(), vec!["user".to_owned()]);
    let now = Utc::now();
    let token = tokens.issue(user, session, &roles, &[], None, now).unwrap().0;
    let mut g = c.benchmark_group("jwt");
    g.bench_function("sign", |b| b.iter(|| tokens.issue(user, session, &roles, &[], None, now).unwrap()));
    g.bench_function("verify", |b| b.iter(|| tokens.verify(&token, None, now).unwrap()));
    g.finish();
}

fn refresh(c: &mut Criterion) {
    let keys = RefreshTokens::from_secret(SECRET);
    let t = RefreshToken { session: SessionId::new(), counter: 42 };
    let text = keys.mint(t, "public");
    let mut g = c.benchmark_group("refresh");
    g.bench_function("mint", |b| b.iter(|| keys.mint(t, "public")));
    g.bench_function("parse", |b| b.iter(|| keys.parse(&text, "public").unwrap()));
    g.finish();
}

fn http(c: &mut Criterion) {
    use fraise_auth::boot::{self, Db};
    use tower::ServiceExt as _;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    let secret = std::str::from_utf8(SECRET).unwrap();
    let cfg = Config::from_sources(&Sources::from_pairs(&[("DATA_DIR", &data), ("JWT_SECRET_KEY", secret)])).unwrap();
    let router = rt.block_on(async {
        let db = Db::open(&cfg).await.unwrap();
        db.migrate().await.unwrap();
        let auth = boot::service(&cfg, db.store(), SECRET, std::sync::Arc::new(fraise_core::SystemClock)).unwrap();
        fraise_http::app(boot::state(&cfg, auth, None).unwrap())
    });
    let mut g = c.benchmark_group("http");
    g.bench_function("route_health_live", |b| {
        b.iter(|| {
            let req = axum::http::Request::get("/health/live").body(axum::body::Body::empty()).unwrap();
            let res = rt.block_on(router.clone().oneshot(req)).unwrap();
            assert_eq!(res.status(), 200);
        })
    });
    let now = Utc::now();
    let user = fraise_core::model::User {
        id: Uuid::new_v4(),
        email: "someone@example.com".into(),
        password_hash: "$argon2id$v=19$m=102400,t=2,p=8$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        name: Some("Some One".into()),
        roles: vec!["user".into(), "editor".into()],
        permissions: vec!["posts:write".into()],
        metadata: serde_json::json!({"plan": "pro", "locale": "fr"}),
        is_active: true,
        email_verified: true,
        mfa: fraise_core::mfa::MfaMethods::none(),
        created_at: now,
        updated_at: now,
    };
    g.bench_function("user_json", |b| b.iter(|| serde_json::to_vec(&fraise_http::dto::UserBody::from(&user)).unwrap()));
    g.finish();
}

criterion_group!(benches, argon2, jwt, refresh, http);
criterion_main!(benches);
