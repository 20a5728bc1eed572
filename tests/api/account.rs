//! Password change and reset, profile edits, email verification, and delivery over real SMTP.
use std::sync::{Arc, Mutex};

use axum::http::Method;
use chrono::Duration;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp, token_after};

const NEW_PASSWORD: &str = "BrandNew456$";

async fn change_password_keeps_this_session_and_ends_the_others(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mine = app.signed_up("chg@example.com").await;
    let other = app.login("chg@example.com", PASSWORD).await;
    let at = mine.str("access_token");
    let change = |current: &str, new: &str| json!({"current_password": current, "new_password": new});

    let wrong =
        app.call(Method::POST, "/auth/change-password", Some(&change("Nope123!x", NEW_PASSWORD)), Some(&at)).await;
    wrong.assert(400, "VALIDATION_ERROR");
    assert_eq!(wrong.body["detail"]["field"], "current_password");
    let weak = app.call(Method::POST, "/auth/change-password", Some(&change(PASSWORD, "weak")), Some(&at)).await;
    weak.assert(400, "WEAK_PASSWORD");
    assert_eq!(weak.body["detail"]["field"], "new_password");
    app.call(Method::POST, "/auth/change-password", Some(&json!({})), Some(&at)).await.assert(400, "VALIDATION_ERROR");
    app.call(Method::POST, "/auth/change-password", Some(&change(PASSWORD, NEW_PASSWORD)), None)
        .await
        .assert(401, "UNAUTHORIZED");

    let ok = app.call(Method::POST, "/auth/change-password", Some(&change(PASSWORD, NEW_PASSWORD)), Some(&at)).await;
    ok.assert(200, "");
    assert_eq!(ok.body["message"], "Password changed successfully");
    app.me(&at).await.assert(200, "");
    app.refresh(&mine.str("refresh_token")).await.assert(200, "");
    app.me(&other.str("access_token")).await.assert(401, "INVALID_TOKEN");
    app.refresh(&other.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
    app.login("chg@example.com", PASSWORD).await.assert(401, "INVALID_CREDENTIALS");
    app.login("chg@example.com", NEW_PASSWORD).await.assert(200, "");
    assert_eq!(crate::storage::count_audit(&app, "password_changed").await, 1);
}

async fn patch_me_changes_name_and_metadata_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let at = app.signed_up("patch@example.com").await.str("access_token");
    let patch = |body: serde_json::Value| {
        let app = &app;
        let at = at.clone();
        async move { app.call(Method::PATCH, "/auth/me", Some(&body), Some(&at)).await }
    };
    app.clock.advance(Duration::seconds(5));
    let r = patch(json!({"name": "  Ada Lovelace ", "metadata": {"theme": "dark", "n": [1, 2]}})).await;
    r.assert(200, "");
    assert_eq!(r.body["name"], "Ada Lovelace");
    assert_eq!(r.body["metadata"], json!({"theme": "dark", "n": [1, 2]}));
    assert!(r.body["updated_at"].as_str() > r.body["created_at"].as_str());
    // Only the name: metadata untouched. Then null clears the name.
    assert_eq!(patch(json!({"name": "Ada"})).await.body["metadata"]["theme"], "dark");
    assert!(patch(json!({"name": null})).await.body["name"].is_null());
    for (body, field) in [
        (json!({"roles": ["admin"]}), None),
        (json!({"email": "evil@example.com"}), None),
        (json!({"metadata": [1, 2]}), Some("metadata")),
        (json!({"metadata": "x"}), Some("metadata")),
        (json!({"metadata": {"blob": "x".repeat(20_000)}}), Some("metadata")),
        (json!({"name": "x".repeat(300)}), Some("name")),
        (json!({"name": 42}), Some("name")),
        (json!({"metadata": {"nul": "a\u{0}b"}}), Some("metadata")),
    ] {
        let r = patch(body.clone()).await;
        r.assert(400, "VALIDATION_ERROR");
        if let Some(f) = field {
            assert_eq!(r.body["detail"]["field"], f, "{body:.60}");
        }
    }
    let me = app.me(&at).await;
    assert_eq!(me.body["roles"], json!([]));
    assert_eq!(me.body["email"], "patch@example.com");
}

async fn forgot_password_answers_the_same_and_the_reset_link_works_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("reset@example.com").await;
    let other = app.login("reset@example.com", PASSWORD).await;
    let known = app.post("/auth/forgot-password", json!({"email": "RESET@example.com"})).await;
    let unknown = app.post("/auth/forgot-password", json!({"email": "nobody@example.com"})).await;
    known.assert(200, "");
    assert_eq!(known.body, unknown.body, "no account enumeration");
    app.post("/auth/forgot-password", json!({"email": "not-an-email"})).await.assert(400, "VALIDATION_ERROR");

    let tokens = app.outbox_tokens("/reset-password", 1).await;
    let token = &tokens[0];
    let reset = |token: &str, pw: &str| app.post("/auth/reset-password", json!({"token": token, "new_password": pw}));
    reset(token, "weak").await.assert(400, "WEAK_PASSWORD");
    reset("x".repeat(43).as_str(), NEW_PASSWORD).await.assert(400, "INVALID_RESET_TOKEN");
    reset("short", NEW_PASSWORD).await.assert(400, "INVALID_RESET_TOKEN");
    let ok = reset(token, NEW_PASSWORD).await;
    ok.assert(200, "");
    // Used once: gone. Every session ended. The password really changed.
    reset(token, "Another789%").await.assert(400, "INVALID_RESET_TOKEN");
    for r in [&reg, &other] {
        app.me(&r.str("access_token")).await.assert(401, "INVALID_TOKEN");
        app.refresh(&r.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
    }
    app.login("reset@example.com", PASSWORD).await.assert(401, "INVALID_CREDENTIALS");
    app.login("reset@example.com", NEW_PASSWORD).await.assert(200, "");
    assert_eq!(crate::storage::count_audit(&app, "password_reset_completed").await, 1);
}

async fn reset_links_expire_and_a_new_one_voids_the_old(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_up("exp@example.com").await;
    app.post("/auth/forgot-password", json!({"email": "exp@example.com"})).await.assert(200, "");
    let first = app.outbox_tokens("/reset-password", 1).await.remove(0);
    // Throttled: a second request within a minute sends nothing new.
    app.post("/auth/forgot-password", json!({"email": "exp@example.com"})).await.assert(200, "");
    app.clock.advance(Duration::minutes(2));
    app.post("/auth/forgot-password", json!({"email": "exp@example.com"})).await.assert(200, "");
    let tokens = app.outbox_tokens("/reset-password", 2).await;
    assert_eq!(tokens.len(), 2, "the throttled request sent nothing");
    let second = tokens[1].clone();
    assert_ne!(first, second);
    let reset = |token: &str| app.post("/auth/reset-password", json!({"token": token, "new_password": NEW_PASSWORD}));
    reset(&first).await.assert(400, "INVALID_RESET_TOKEN");
    app.clock.advance(Duration::minutes(61));
    reset(&second).await.assert(400, "INVALID_RESET_TOKEN");
    app.login("exp@example.com", PASSWORD).await.assert(200, "");
}

async fn email_verification_sets_the_flag_and_unlocks_login_when_required(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("REQUIRE_EMAIL_VERIFICATION", "true")]).await;
    let reg = app.signed_up("verify@example.com").await;
    app.login("verify@example.com", PASSWORD).await.assert(403, "EMAIL_NOT_VERIFIED");
    let at = reg.str("access_token");
    app.call(Method::POST, "/auth/verify-email/request", None, Some(&at)).await.assert(200, "");
    app.call(Method::POST, "/auth/verify-email/request", None, None).await.assert(401, "UNAUTHORIZED");
    let token = app.outbox_tokens("/verify-email", 1).await.remove(0);
    app.post("/auth/verify-email", json!({"token": "y".repeat(43)})).await.assert(400, "INVALID_RESET_TOKEN");
    let ok = app.post("/auth/verify-email", json!({"token": token})).await;
    ok.assert(200, "");
    assert_eq!(ok.body["email_verified"], true);
    app.post("/auth/verify-email", json!({"token": token})).await.assert(400, "INVALID_RESET_TOKEN");
    app.login("verify@example.com", PASSWORD).await.assert(200, "");
}

async fn new_routes_refuse_hostile_bodies_without_a_5xx(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let at = app.signed_up("hostile@example.com").await.str("access_token");
    let bodies: Vec<&[u8]> = vec![b"", b"{", b"null", b"[]", b"{\"token\": 5}", b"{\"email\": [\"a\"]}", b"\xff\xfe"];
    for path in ["/auth/change-password", "/auth/forgot-password", "/auth/reset-password", "/auth/verify-email"] {
        for body in &bodies {
            let r = app.post_raw(path, Some("application/json"), body.to_vec()).await;
            assert!(r.status.is_client_error(), "{path} {:?}: {}", String::from_utf8_lossy(body), r.text);
        }
    }
    for body in
        [json!({"token": "é".repeat(43), "new_password": NEW_PASSWORD}), json!({"token": "", "new_password": ""})]
    {
        let r = app.post("/auth/reset-password", body).await;
        assert!(r.status.is_client_error(), "{}", r.text);
    }
    let r = app
        .call(Method::PATCH, "/auth/me", Some(&json!({"metadata": {"a": {"b": {"c": [null, true, 1.5]}}}})), Some(&at))
        .await;
    r.assert(200, "");
}

/// A real SMTP server on a loopback port (mailin-embedded), collecting what it receives.
#[derive(Clone, Default)]
struct Inbox {
    current: Vec<u8>,
    received: Arc<Mutex<Vec<String>>>,
}

impl mailin_embedded::Handler for Inbox {
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let message = String::from_utf8_lossy(&std::mem::take(&mut self.current)).into_owned();
        self.received.lock().unwrap().push(message);
        mailin_embedded::response::OK
    }
}

async fn reset_email_arrives_over_real_smtp_with_a_working_link(backend: Backend) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut server = mailin_embedded::Server::new(Inbox { current: Vec::new(), received: received.clone() });
    server.with_name("smtp.test").with_ssl(mailin_embedded::SslConfig::None).unwrap().with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });

    let url = format!("smtp://127.0.0.1:{port}?tls=none");
    let app = TestApp::spawn_with(backend, &[("SMTP_URL", &url), ("APP_BASE_URL", "https://app.example.com")]).await;
    app.signed_up("smtp@example.com").await;
    app.post("/auth/forgot-password", json!({"email": "smtp@example.com"})).await.assert(200, "");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let message = loop {
        if let Some(m) = received.lock().unwrap().first().cloned() {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "no message reached the SMTP server");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(message.contains("To: smtp@example.com"), "{message}");
    assert!(message.contains("Subject: Reset your password"), "{message}");
    let token = token_after(&message, "https://app.example.com/reset-password?token=").expect("link in the message");
    app.post("/auth/reset-password", json!({"token": token, "new_password": NEW_PASSWORD})).await.assert(200, "");
    app.login("smtp@example.com", NEW_PASSWORD).await.assert(200, "");
}

async fn an_unverified_user_can_get_a_new_link_without_a_session_but_not_refresh(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("REQUIRE_EMAIL_VERIFICATION", "true")]).await;
    let reg = app.signed_up("late@example.com").await;
    // The register session cannot be extended while unverified...
    app.refresh(&reg.str("refresh_token")).await.assert(403, "EMAIL_NOT_VERIFIED");
    app.login("late@example.com", PASSWORD).await.assert(403, "EMAIL_NOT_VERIFIED");
    // ...but a new link can be had by email, with the same answer as for an unknown address.
    let known = app.post("/auth/verify-email/request", json!({"email": "late@example.com"})).await;
    let unknown = app.post("/auth/verify-email/request", json!({"email": "ghost@example.com"})).await;
    known.assert(200, "");
    assert_eq!(known.body, unknown.body);
    let token = app.outbox_tokens("/verify-email", 1).await.remove(0);
    app.post("/auth/verify-email", json!({"token": token})).await.assert(200, "");
    app.login("late@example.com", PASSWORD).await.assert(200, "");
}

async fn a_password_change_voids_outstanding_reset_links(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let at = app.signed_up("void@example.com").await.str("access_token");
    app.post("/auth/forgot-password", json!({"email": "void@example.com"})).await.assert(200, "");
    let token = app.outbox_tokens("/reset-password", 1).await.remove(0);
    let change = json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD});
    app.call(Method::POST, "/auth/change-password", Some(&change), Some(&at)).await.assert(200, "");
    app.post("/auth/reset-password", json!({"token": token, "new_password": "Another789%"}))
        .await
        .assert(400, "INVALID_RESET_TOKEN");
    app.login("void@example.com", NEW_PASSWORD).await.assert(200, "");
}

async fn a_burst_of_forgot_requests_sends_one_email(backend: Backend) {
    let app = std::sync::Arc::new(TestApp::spawn(backend).await);
    app.signed_up("burst@example.com").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.post("/auth/forgot-password", json!({"email": "burst@example.com"})).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().assert(200, "");
    }
    app.outbox_tokens("/reset-password", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sent = std::fs::read_dir(app.data_dir.join("outbox")).unwrap().count();
    assert_eq!(sent, 1, "the per-email throttle holds under concurrency");
}

both_backends!(
    an_unverified_user_can_get_a_new_link_without_a_session_but_not_refresh,
    a_password_change_voids_outstanding_reset_links,
    a_burst_of_forgot_requests_sends_one_email,
    change_password_keeps_this_session_and_ends_the_others,
    patch_me_changes_name_and_metadata_only,
    forgot_password_answers_the_same_and_the_reset_link_works_once,
    reset_links_expire_and_a_new_one_voids_the_old,
    email_verification_sets_the_flag_and_unlocks_login_when_required,
    new_routes_refuse_hostile_bodies_without_a_5xx,
    reset_email_arrives_over_real_smtp_with_a_working_link,
);
