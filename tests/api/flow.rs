//! The whole happy path, and the shapes API.md promises.
use axum::http::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp};

async fn register_me_refresh_me_logout_then_everything_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let reg = app.register("  Alice@Example.COM ", PASSWORD).await;
    reg.assert(201, "");
    let user = &reg.body["user"];
    assert_eq!(user["email"], "alice@example.com", "email is trimmed and lower-cased");
    assert_eq!(user["name"], "Test User");
    assert_eq!(user["roles"], json!([]));
    assert_eq!(user["permissions"], json!([]));
    assert_eq!(user["metadata"], json!({}));
    assert_eq!(user["is_active"], true);
    assert_eq!(user["email_verified"], false);
    assert_eq!(reg.body["token_type"], "bearer");
    for key in ["created_at", "updated_at"] {
        let t = user[key].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == "2025-01-22T10:00:00.000Z".len(), "{key}: {t}");
    }
    let expires_at = chrono::DateTime::parse_from_rfc3339(&reg.str("expires_at")).unwrap();
    assert_eq!(expires_at.timestamp() - app.clock_now().timestamp(), 15 * 60, "expires_at is the access token's exp");

    let me = app.me(&reg.str("access_token")).await;
    me.assert(200, "");
    assert_eq!(me.body, *user);

    let login = app.login("ALICE@example.com", PASSWORD).await;
    login.assert(200, "");
    assert_eq!(login.body["user"]["id"], user["id"]);

    let refreshed = app.refresh(&login.str("refresh_token")).await;
    refreshed.assert(200, "");
    assert!(refreshed.body.get("user").is_none(), "TokenResponse has no user");
    assert_ne!(refreshed.str("refresh_token"), login.str("refresh_token"));
    app.me(&refreshed.str("access_token")).await.assert(200, "");

    app.logout(json!({"refresh_token": refreshed.str("refresh_token")}), None).await.assert(200, "");
    app.me(&refreshed.str("access_token")).await.assert(401, "INVALID_TOKEN");
    app.me(&login.str("access_token")).await.assert(401, "INVALID_TOKEN");
    app.refresh(&refreshed.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
    // The registration's session is a different one and still works.
    app.me(&reg.str("access_token")).await.assert(200, "");
}

async fn logout_message_is_the_documented_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("bob@example.com").await;
    let out = app.logout(json!({"refresh_token": reg.str("refresh_token")}), None).await;
    out.assert(200, "");
    assert_eq!(out.body, json!({"message": "Successfully logged out"}));
}

async fn health_endpoints_report_ok(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let h = app.call(Method::GET, "/health", None, None).await;
    h.assert(200, "");
    assert_eq!(h.body["status"], "ok");
    assert_eq!(h.body["database"]["status"], "ok");
    let expected = if backend == Backend::Sqlite { "sqlite" } else { "postgres" };
    assert_eq!(h.body["database"]["backend"], expected);
    app.call(Method::GET, "/health/live", None, None).await.assert(200, "");
    let ready = app.call(Method::GET, "/health/ready", None, None).await;
    ready.assert(200, "");
    assert_eq!(ready.body["status"], "ok");
}

async fn sessions_record_the_client(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("carol@example.com").await;
    let p = app.auth.authenticate(&reg.str("access_token")).await.unwrap();
    assert_eq!(p.session.ip_address.as_deref(), Some("203.0.113.7"));
    assert_eq!(p.session.refresh_counter, 0);
    assert_eq!(p.claims.session_id, p.session.id.to_string());
    assert!(p.claims.session_id.starts_with("sess_"));
}

both_backends!(
    register_me_refresh_me_logout_then_everything_is_refused,
    logout_message_is_the_documented_one,
    health_endpoints_report_ok,
    sessions_record_the_client,
);
