//! PostgreSQL unreachable: every route that needs it answers 503 SERVICE_UNAVAILABLE with
//! `Retry-After`, health says what is down, liveness stays up, and nothing panics.
use std::sync::Arc;

use axum::http::Method;
use fraise_auth::boot::{self, Db};
use fraise_auth::config::{Config, Sources};
use fraise_core::ManualClock;
use serde_json::json;

use crate::helpers::{PASSWORD, SECRET, start_time};

#[tokio::test]
async fn an_unreachable_database_yields_503_not_500() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    // Port 1 on loopback: nothing listens there, connections are refused at once.
    let cfg = Config::from_sources(&Sources::from_pairs(&[
        ("DATA_DIR", &data),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere"),
        ("DATABASE_POOL_TIMEOUT_SECONDS", "1"),
        ("JWT_SECRET_KEY", SECRET),
        ("ARGON2_MEMORY_COST", "8192"),
        ("ARGON2_TIME_COST", "1"),
        ("ARGON2_PARALLELISM", "1"),
    ]))
    .unwrap();
    let db = Db::open(&cfg).await.expect("a lazy pool opens even while the database is down");
    assert!(db.migrate().await.is_err());
    let auth = boot::service(&cfg, db.store(), SECRET.as_bytes(), Arc::new(ManualClock::new(start_time()))).unwrap();
    let app = fraise_http::app(boot::state(&cfg, auth, None).unwrap());
    let t = crate::helpers::RawApp(app);

    for (path, body) in [
        ("/auth/register", json!({"email": "x@example.com", "password": PASSWORD})),
        ("/auth/login", json!({"email": "x@example.com", "password": PASSWORD})),
    ] {
        let r = t.call(Method::POST, path, Some(&body), None).await;
        r.assert(503, "SERVICE_UNAVAILABLE");
        assert_eq!(r.header("retry-after"), Some("5"));
        assert!(!r.text.contains("127.0.0.1"), "no connection details leak: {}", r.text);
    }
    let h = t.call(Method::GET, "/health", None, None).await;
    assert_eq!(h.status.as_u16(), 503);
    assert_eq!(h.body["database"]["status"], "unreachable");
    assert_eq!(t.call(Method::GET, "/health/ready", None, None).await.status.as_u16(), 503);
    assert_eq!(t.call(Method::GET, "/health/live", None, None).await.status.as_u16(), 200);
}
