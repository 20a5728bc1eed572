//! Refresh-token rotation: the chain, the grace window, theft detection, concurrency.
use chrono::Duration;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp};

async fn each_refresh_rotates_and_the_new_token_works(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut rt = app.signed_up("a@example.com").await.str("refresh_token");
    for _ in 0..5 {
        app.clock.advance(Duration::seconds(30));
        let r = app.refresh(&rt).await;
        r.assert(200, "");
        assert_ne!(r.str("refresh_token"), rt);
        app.me(&r.str("access_token")).await.assert(200, "");
        rt = r.str("refresh_token");
    }
}

async fn fifty_concurrent_refreshes_of_one_token_agree_on_one_successor(backend: Backend) {
    let app = std::sync::Arc::new(TestApp::spawn(backend).await);
    let rt = app.signed_up("race@example.com").await.str("refresh_token");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let app = app.clone();
            let rt = rt.clone();
            tokio::spawn(async move { app.refresh(&rt).await })
        })
        .collect();
    let mut successors = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(!r.status.is_server_error(), "5xx under concurrency: {}", r.text);
        r.assert(200, "");
        successors.insert(r.str("refresh_token"));
    }
    assert_eq!(successors.len(), 1, "every success carries the same new refresh token");
    let next = successors.into_iter().next().unwrap();
    let r = app.refresh(&next).await;
    r.assert(200, "");
    app.me(&r.str("access_token")).await.assert(200, "");
    // The chain moved exactly twice: no fork.
    let p = app.auth.authenticate(&r.str("access_token")).await.unwrap();
    assert_eq!(p.session.refresh_counter, 2);
}

async fn replay_inside_the_grace_window_returns_the_current_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let old = app.signed_up("grace@example.com").await.str("refresh_token");
    let first = app.refresh(&old).await;
    first.assert(200, "");
    app.clock.advance(Duration::seconds(10));
    let again = app.refresh(&old).await;
    again.assert(200, "");
    assert_eq!(again.str("refresh_token"), first.str("refresh_token"), "no fork: the same current token");
    app.me(&again.str("access_token")).await.assert(200, "");
    app.refresh(&first.str("refresh_token")).await.assert(200, "");
}

async fn replay_after_the_grace_window_is_theft_and_ends_every_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("victim@example.com").await;
    let other = app.login("victim@example.com", PASSWORD).await;
    let stolen = reg.str("refresh_token");
    let newest = app.refresh(&stolen).await;
    newest.assert(200, "");
    app.clock.advance(Duration::seconds(11));

    let replay = app.refresh(&stolen).await;
    replay.assert(403, "TOKEN_THEFT_DETECTED");

    // The newest refresh and access tokens of the replayed session are dead...
    app.refresh(&newest.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
    app.me(&newest.str("access_token")).await.assert(401, "INVALID_TOKEN");
    // ...and so are the user's other sessions (THEFT_REVOKE_SCOPE=user, the default).
    app.refresh(&other.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
    app.me(&other.str("access_token")).await.assert(401, "INVALID_TOKEN");
    // Replaying again is refused as well, and the user can still log in afresh.
    assert!(app.refresh(&stolen).await.status.is_client_error());
    app.login("victim@example.com", PASSWORD).await.assert(200, "");
}

async fn theft_scope_session_ends_only_the_replayed_session(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("THEFT_REVOKE_SCOPE", "session")]).await;
    let reg = app.signed_up("scoped@example.com").await;
    let other = app.login("scoped@example.com", PASSWORD).await;
    let stolen = reg.str("refresh_token");
    let newest = app.refresh(&stolen).await;
    app.clock.advance(Duration::seconds(11));
    app.refresh(&stolen).await.assert(403, "TOKEN_THEFT_DETECTED");
    app.me(&newest.str("access_token")).await.assert(401, "INVALID_TOKEN");
    app.me(&other.str("access_token")).await.assert(200, "");
    app.refresh(&other.str("refresh_token")).await.assert(200, "");
}

async fn an_older_token_is_theft_even_inside_the_window(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let t0 = app.signed_up("older@example.com").await.str("refresh_token");
    let t1 = app.refresh(&t0).await.str("refresh_token");
    let t2 = app.refresh(&t1).await;
    t2.assert(200, "");
    // t0 is two links behind: no grace for it.
    app.refresh(&t0).await.assert(403, "TOKEN_THEFT_DETECTED");
    app.me(&t2.str("access_token")).await.assert(401, "INVALID_TOKEN");
}

async fn theft_is_recorded_in_the_audit_trail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let t0 = app.signed_up("audit@example.com").await.str("refresh_token");
    app.refresh(&t0).await.assert(200, "");
    app.clock.advance(Duration::minutes(1));
    app.refresh(&t0).await.assert(403, "TOKEN_THEFT_DETECTED");
    let n = crate::storage::count_audit(&app, "token_theft_detected").await;
    assert_eq!(n, 1);
}

async fn an_expired_refresh_token_is_invalid(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("REFRESH_TOKEN_TTL_DAYS", "1")]).await;
    let reg = app.signed_up("exp@example.com").await;
    app.clock.advance(Duration::hours(23));
    let r = app.refresh(&reg.str("refresh_token")).await;
    r.assert(200, "");
    // Each rotation renews the lifetime: 23 h later the new token is still good...
    app.clock.advance(Duration::hours(23));
    let r2 = app.refresh(&r.str("refresh_token")).await;
    r2.assert(200, "");
    // ...but not after a full day of silence.
    app.clock.advance(Duration::hours(24));
    app.refresh(&r2.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
}

async fn forged_or_malformed_refresh_tokens_are_invalid(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rt = app.signed_up("forge@example.com").await.str("refresh_token");
    let mut flipped = rt.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let access = app.login("forge@example.com", PASSWORD).await.str("access_token");
    for bad in [flipped.as_str(), "", "x", "null", &"A".repeat(75), &"é".repeat(5000), &access] {
        app.refresh(bad).await.assert(401, "INVALID_TOKEN");
    }
    for body in
        [json!({}), json!({"refresh_token": null}), json!({"refresh_token": 42}), json!({"refresh_token": ["a"]})]
    {
        let r = app.post("/auth/refresh", body).await;
        r.assert(400, "VALIDATION_ERROR");
        assert_eq!(r.body["detail"]["field"], "refresh_token");
    }
    // None of this disturbed the real chain.
    app.refresh(&rt).await.assert(200, "");
}

async fn a_disabled_user_cannot_refresh_or_use_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("off@example.com").await;
    let id = app.user_id("off@example.com").await;
    app.auth.store().set_active(id, false, app.clock_now()).await.unwrap();
    app.refresh(&reg.str("refresh_token")).await.assert(403, "ACCOUNT_DISABLED");
    app.me(&reg.str("access_token")).await.assert(403, "ACCOUNT_DISABLED");
    app.login("off@example.com", PASSWORD).await.assert(403, "ACCOUNT_DISABLED");
    // Re-enabled: the chain was not advanced by the refused attempt.
    app.auth.store().set_active(id, true, app.clock_now()).await.unwrap();
    app.refresh(&reg.str("refresh_token")).await.assert(200, "");
}

async fn disabling_an_account_ends_its_sessions_for_good(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("banned@example.com").await;
    let id = app.user_id("banned@example.com").await;
    assert!(app.auth.set_user_active(id, false).await.unwrap());
    app.me(&reg.str("access_token")).await.assert(403, "ACCOUNT_DISABLED");
    assert!(app.auth.set_user_active(id, true).await.unwrap());
    // Re-enabling does not resurrect the old chain.
    app.refresh(&reg.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
    app.me(&reg.str("access_token")).await.assert(401, "INVALID_TOKEN");
    app.login("banned@example.com", PASSWORD).await.assert(200, "");
    assert!(!app.auth.set_user_active(uuid::Uuid::new_v4(), false).await.unwrap());
}

both_backends!(
    disabling_an_account_ends_its_sessions_for_good,
    each_refresh_rotates_and_the_new_token_works,
    fifty_concurrent_refreshes_of_one_token_agree_on_one_successor,
    replay_inside_the_grace_window_returns_the_current_token,
    replay_after_the_grace_window_is_theft_and_ends_every_session,
    theft_scope_session_ends_only_the_replayed_session,
    an_older_token_is_theft_even_inside_the_window,
    theft_is_recorded_in_the_audit_trail,
    an_expired_refresh_token_is_invalid,
    forged_or_malformed_refresh_tokens_are_invalid,
    a_disabled_user_cannot_refresh_or_use_tokens,
);
