//! The audit trail as a list, the cleanup job, and the per-client forgot-password limit.
use chrono::Duration;
use fraise_core::store::AuditFilter;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp};

async fn every_lifecycle_event_lands_in_the_audit_trail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("trail@example.com").await;
    app.login("trail@example.com", "Wrong123!x").await.assert(401, "INVALID_CREDENTIALS");
    let other = app.login("trail@example.com", PASSWORD).await;
    let r = app.refresh(&reg.str("refresh_token")).await;
    app.clock.advance(Duration::minutes(1));
    app.refresh(&reg.str("refresh_token")).await.assert(403, "TOKEN_THEFT_DETECTED");
    app.logout(json!({"refresh_token": other.str("refresh_token")}), None).await;
    let id = app.user_id("trail@example.com").await;
    let events =
        app.auth.audit_log(&AuditFilter { user: Some(id), limit: 100, ..AuditFilter::default() }).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for expected in ["register", "login_failure", "login_success", "token_refresh", "token_theft_detected"] {
        assert!(kinds.contains(&expected), "{expected} missing from {kinds:?}");
    }
    assert!(events.windows(2).all(|w| w[0].at >= w[1].at), "newest first");
    assert!(events.iter().all(|e| e.ip_address.as_deref() == Some("203.0.113.7")));
    let only = app
        .auth
        .audit_log(&AuditFilter { kind: Some("login_failure".into()), limit: 10, ..AuditFilter::default() })
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].details["reason"], "bad_password");
    let since = app.clock_now() - Duration::seconds(30);
    let recent =
        app.auth.audit_log(&AuditFilter { since: Some(since), limit: 100, ..AuditFilter::default() }).await.unwrap();
    assert!(recent.iter().all(|e| e.at >= since) && !recent.is_empty());
    drop(r);
}

async fn cleanup_deletes_only_what_is_past_retention(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ended = app.signed_up("old@example.com").await;
    let alive = app.login("old@example.com", PASSWORD).await;
    app.logout(json!({"refresh_token": ended.str("refresh_token")}), None).await.assert(200, "");
    app.post("/auth/forgot-password", json!({"email": "old@example.com"})).await;
    app.outbox_tokens("/reset-password", 1).await;
    // Nothing is old enough yet.
    let r = app.auth.cleanup().await.unwrap();
    assert_eq!((r.sessions, r.one_time_tokens, r.audit_rows), (0, 0, 0));
    // Eight days on: the ended session and the expired reset token go; the live session stays.
    app.clock.advance(Duration::days(8));
    let r = app.auth.cleanup().await.unwrap();
    assert_eq!((r.sessions, r.one_time_tokens), (1, 1));
    app.refresh(&alive.str("refresh_token")).await.assert(200, "");
    // Ninety-one days on: audit rows go too; running again finds nothing.
    app.clock.advance(Duration::days(91));
    let r = app.auth.cleanup().await.unwrap();
    assert!(r.audit_rows > 0);
    assert_eq!(app.auth.cleanup().await.unwrap(), fraise_core::store::CleanupReport::default());
}

/// Small batches (PostgreSQL walks the primary key from batch to batch, with no index on
/// `expires_at`): every ended session goes, however the batches fall, and no live one.
async fn cleanup_in_small_batches_deletes_every_ended_session_and_no_live_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut live = Vec::new();
    let mut ended = 0;
    for u in 0..3 {
        let email = format!("batch{u}@example.com");
        app.signed_up(&email).await;
        for i in 0..4 {
            let r = app.login(&email, PASSWORD).await.str("refresh_token");
            if (u + i) % 3 == 0 {
                live.push(r);
            } else {
                app.logout(json!({"refresh_token": r}), None).await.assert(200, "");
                ended += 1;
            }
        }
    }
    app.clock.advance(Duration::days(8));
    let now = app.clock_now();
    // The register sessions stay: refresh tokens live 30 days.
    let r = app.db.store().cleanup(now, now - Duration::days(7), now - Duration::days(90), 2).await.unwrap();
    assert_eq!(r.sessions, ended, "every ended session, across {} batches of 2", ended.div_ceil(2));
    for token in &live {
        app.refresh(token).await.assert(200, "");
    }
    let again = app.db.store().cleanup(now, now - Duration::days(7), now - Duration::days(90), 2).await.unwrap();
    assert_eq!(again.sessions, 0);
}

async fn forgot_password_is_limited_per_client(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("FORGOT_PASSWORD_PER_CLIENT_PER_HOUR", "2")]).await;
    for i in 0..2 {
        app.post("/auth/forgot-password", json!({"email": format!("u{i}@example.com")})).await.assert(200, "");
    }
    let r = app.post("/auth/forgot-password", json!({"email": "u9@example.com"})).await;
    r.assert(429, "RATE_LIMITED");
    assert!(r.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1));
}

both_backends!(
    every_lifecycle_event_lands_in_the_audit_trail,
    cleanup_deletes_only_what_is_past_retention,
    cleanup_in_small_batches_deletes_every_ended_session_and_no_live_one,
    forgot_password_is_limited_per_client,
);
