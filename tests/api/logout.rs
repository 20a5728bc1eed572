//! Logout: by refresh token, by bearer, everything with `all`.
use chrono::Duration;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp};

async fn logout_kills_the_sessions_access_token_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("out@example.com").await;
    app.me(&reg.str("access_token")).await.assert(200, "");
    app.logout(json!({"refresh_token": reg.str("refresh_token")}), None).await.assert(200, "");
    app.me(&reg.str("access_token")).await.assert(401, "INVALID_TOKEN");
}

async fn logout_with_only_a_bearer_ends_that_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("bearer@example.com").await;
    let other = app.login("bearer@example.com", PASSWORD).await;
    app.logout(json!({}), Some(&reg.str("access_token"))).await.assert(200, "");
    app.me(&reg.str("access_token")).await.assert(401, "INVALID_TOKEN");
    app.refresh(&reg.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
    app.me(&other.str("access_token")).await.assert(200, "");
}

async fn logout_all_ends_every_session_of_the_user_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let a1 = app.signed_up("all@example.com").await;
    let a2 = app.login("all@example.com", PASSWORD).await;
    let b = app.signed_up("bystander@example.com").await;
    app.logout(json!({"all": true}), Some(&a1.str("access_token"))).await.assert(200, "");
    for r in [&a1, &a2] {
        app.me(&r.str("access_token")).await.assert(401, "INVALID_TOKEN");
        app.refresh(&r.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
    }
    app.me(&b.str("access_token")).await.assert(200, "");
}

async fn logout_all_without_a_bearer_is_unauthorized(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("noall@example.com").await;
    app.logout(json!({"all": true}), None).await.assert(401, "UNAUTHORIZED");
    app.logout(json!({"all": true, "refresh_token": reg.str("refresh_token")}), None).await.assert(401, "UNAUTHORIZED");
    app.me(&reg.str("access_token")).await.assert(200, "");
}

async fn bad_or_reused_refresh_tokens_at_logout_are_400_invalid_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("bad@example.com").await;
    app.logout(json!({"refresh_token": "garbage"}), None).await.assert(400, "INVALID_TOKEN");
    app.logout(json!({"refresh_token": reg.str("refresh_token")}), None).await.assert(200, "");
    app.logout(json!({"refresh_token": reg.str("refresh_token")}), None).await.assert(400, "INVALID_TOKEN");
    app.logout(json!({}), Some("not-a-jwt")).await.assert(400, "INVALID_TOKEN");
    let r = app.logout(json!({}), None).await;
    r.assert(400, "VALIDATION_ERROR");
    assert_eq!(r.body["detail"]["field"], "refresh_token");
}

async fn an_expired_bearer_does_not_block_logout_by_refresh_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("late@example.com").await;
    app.clock.advance(Duration::minutes(20));
    app.logout(json!({"refresh_token": reg.str("refresh_token")}), Some(&reg.str("access_token")))
        .await
        .assert(200, "");
    app.refresh(&reg.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
}

async fn one_user_cannot_log_out_anothers_session_with_a_bearer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mallory = app.signed_up("mallory@example.com").await;
    let alice = app.signed_up("alice@example.com").await;
    // Mallory holding Alice's refresh token is already game over, but mixing identities is refused.
    app.logout(json!({"refresh_token": alice.str("refresh_token")}), Some(&mallory.str("access_token")))
        .await
        .assert(400, "INVALID_TOKEN");
    app.me(&alice.str("access_token")).await.assert(200, "");
}

async fn logout_with_a_bearer_and_no_body_at_all(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("nobody@example.com").await;
    let req = axum::http::Request::post("/auth/logout")
        .header("authorization", format!("Bearer {}", reg.str("access_token")))
        .body(axum::body::Body::empty())
        .unwrap();
    app.send(req).await.assert(200, "");
    app.me(&reg.str("access_token")).await.assert(401, "INVALID_TOKEN");
}

async fn a_stale_refresh_token_at_logout_is_treated_as_theft(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("stale@example.com").await;
    let newest = app.refresh(&reg.str("refresh_token")).await;
    app.clock.advance(Duration::seconds(30));
    app.logout(json!({"refresh_token": reg.str("refresh_token")}), None).await.assert(403, "TOKEN_THEFT_DETECTED");
    app.refresh(&newest.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
    assert_eq!(crate::storage::count_audit(&app, "token_theft_detected").await, 1);
}

both_backends!(
    logout_kills_the_sessions_access_token_at_once,
    logout_with_only_a_bearer_ends_that_session,
    logout_all_ends_every_session_of_the_user_only,
    logout_all_without_a_bearer_is_unauthorized,
    bad_or_reused_refresh_tokens_at_logout_are_400_invalid_token,
    an_expired_bearer_does_not_block_logout_by_refresh_token,
    one_user_cannot_log_out_anothers_session_with_a_bearer,
    logout_with_a_bearer_and_no_body_at_all,
    a_stale_refresh_token_at_logout_is_treated_as_theft,
);
