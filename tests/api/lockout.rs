//! Brute force: lock per (account, client), slow the account down only at a higher threshold.
use axum::body::Body;
use axum::http::Request;
use chrono::Duration;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, Res, TestApp};

const WRONG: &str = "Wrong123!x";

/// The test peer is a trusted proxy, so X-Forwarded-For picks the client.
async fn spawn(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut cfg = vec![("TRUSTED_PROXIES", "203.0.113.7")];
    cfg.extend_from_slice(extra);
    TestApp::spawn_with(backend, &cfg).await
}

async fn login_as(app: &TestApp, client: &str, email: &str, password: &str) -> Res {
    let req = Request::post("/auth/login")
        .header("content-type", "application/json")
        .header("x-forwarded-for", client)
        .body(Body::from(json!({"email": email, "password": password}).to_string()))
        .unwrap();
    app.send(req).await
}

async fn one_client_is_locked_out_but_others_still_get_in(backend: Backend) {
    let app = spawn(backend, &[]).await;
    app.signed_up("victim@example.com").await;
    for _ in 0..5 {
        login_as(&app, "198.51.100.66", "victim@example.com", WRONG).await.assert(401, "INVALID_CREDENTIALS");
    }
    // Locked from here, even with the right password, and without a hash being computed.
    let before = app.auth.pool().started();
    let r = login_as(&app, "198.51.100.66", "victim@example.com", PASSWORD).await;
    r.assert(423, "ACCOUNT_LOCKED");
    assert_eq!(r.header("retry-after"), Some("60"));
    assert_eq!(app.auth.pool().started(), before, "a locked answer costs no hash");
    // The real user, elsewhere, is not locked out.
    login_as(&app, "192.0.2.10", "victim@example.com", PASSWORD).await.assert(200, "");
    // The lock ends; the next failure doubles it.
    app.clock.advance(Duration::seconds(61));
    login_as(&app, "198.51.100.66", "victim@example.com", WRONG).await.assert(401, "INVALID_CREDENTIALS");
    let r = login_as(&app, "198.51.100.66", "victim@example.com", PASSWORD).await;
    r.assert(423, "ACCOUNT_LOCKED");
    assert_eq!(r.header("retry-after"), Some("120"));
    assert!(crate::storage::count_audit(&app, "account_locked").await >= 2);
}

async fn unknown_emails_lock_like_known_ones(backend: Backend) {
    let app = spawn(backend, &[]).await;
    for _ in 0..5 {
        login_as(&app, "198.51.100.7", "ghost@example.com", WRONG).await.assert(401, "INVALID_CREDENTIALS");
    }
    login_as(&app, "198.51.100.7", "ghost@example.com", WRONG).await.assert(423, "ACCOUNT_LOCKED");
}

async fn a_success_clears_the_count(backend: Backend) {
    let app = spawn(backend, &[]).await;
    app.signed_up("forgetful@example.com").await;
    for _ in 0..2 {
        for _ in 0..4 {
            login_as(&app, "198.51.100.8", "forgetful@example.com", WRONG).await.assert(401, "INVALID_CREDENTIALS");
        }
        login_as(&app, "198.51.100.8", "forgetful@example.com", PASSWORD).await.assert(200, "");
    }
}

async fn many_clients_slow_the_account_down_only_at_the_higher_threshold(backend: Backend) {
    let app = spawn(backend, &[("LOCKOUT_CLIENT_THRESHOLD", "5"), ("LOCKOUT_ACCOUNT_THRESHOLD", "8")]).await;
    app.signed_up("popular@example.com").await;
    for client in ["198.51.100.1", "198.51.100.2"] {
        for _ in 0..4 {
            login_as(&app, client, "popular@example.com", WRONG).await.assert(401, "INVALID_CREDENTIALS");
        }
    }
    // 8 failures in all, none of the clients at its own threshold: the account is slowed down for
    // everyone, but the owner with the right password still gets in (after the wait).
    let started = std::time::Instant::now();
    login_as(&app, "192.0.2.99", "popular@example.com", PASSWORD).await.assert(200, "");
    assert!(started.elapsed() >= std::time::Duration::from_secs(2), "slowed: {:?}", started.elapsed());
    // Once failures stop for a window, full speed again.
    app.clock.advance(Duration::minutes(16));
    let started = std::time::Instant::now();
    login_as(&app, "192.0.2.99", "popular@example.com", PASSWORD).await.assert(200, "");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

async fn a_password_reset_lifts_the_lock(backend: Backend) {
    let app = spawn(backend, &[]).await;
    app.signed_up("locked@example.com").await;
    for _ in 0..5 {
        login_as(&app, "198.51.100.9", "locked@example.com", WRONG).await;
    }
    login_as(&app, "198.51.100.9", "locked@example.com", PASSWORD).await.assert(423, "ACCOUNT_LOCKED");
    app.post("/auth/forgot-password", json!({"email": "locked@example.com"})).await.assert(200, "");
    let token = app.outbox_tokens("/reset-password", 1).await.remove(0);
    app.post("/auth/reset-password", json!({"token": token, "new_password": "Fresh789%x"})).await.assert(200, "");
    login_as(&app, "198.51.100.9", "locked@example.com", "Fresh789%x").await.assert(200, "");
    assert_eq!(crate::storage::count_audit(&app, "account_unlocked").await, 1);
}

async fn change_password_is_no_unlimited_password_oracle(backend: Backend) {
    let app = spawn(backend, &[]).await;
    let at = app.signed_up("oracle@example.com").await.str("access_token");
    let change = |current: &str| {
        let body = json!({"current_password": current, "new_password": "NewPass456$x"}).to_string();
        Request::post("/auth/change-password")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {at}"))
            .header("x-forwarded-for", "198.51.100.50")
            .body(Body::from(body))
            .unwrap()
    };
    for _ in 0..5 {
        app.send(change(WRONG)).await.assert(400, "VALIDATION_ERROR");
    }
    app.send(change(PASSWORD)).await.assert(423, "ACCOUNT_LOCKED");
}

both_backends!(
    change_password_is_no_unlimited_password_oracle,
    one_client_is_locked_out_but_others_still_get_in,
    unknown_emails_lock_like_known_ones,
    a_success_clears_the_count,
    many_clients_slow_the_account_down_only_at_the_higher_threshold,
    a_password_reset_lifts_the_lock,
);
