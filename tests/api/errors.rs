//! Every error each route can return, in the one envelope; hostile input never yields a 5xx.
use axum::body::Body;
use axum::http::{Method, Request};
use chrono::Duration;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp};

async fn register_validates_every_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"email": "not-an-email", "password": PASSWORD}), "email"),
        (json!({"email": "a@localhost", "password": PASSWORD}), "email"),
        (json!({"email": "", "password": PASSWORD}), "email"),
        (json!({"email": format!("{}@example.com", "a".repeat(300)), "password": PASSWORD}), "email"),
        (json!({"email": "weak@example.com", "password": "weak"}), "password"),
        (json!({"email": "weak@example.com", "password": "WeakPassword"}), "password"),
        (json!({"email": "weak@example.com", "password": "weakpass123"}), "password"),
        (json!({"email": "weak@example.com", "password": "WEAKPASS123!"}), "password"),
        (json!({"email": "weak@example.com", "password": format!("Aa1!{}", "x".repeat(1100))}), "password"),
        (json!({"email": "n@example.com", "password": PASSWORD, "name": "x".repeat(256)}), "name"),
        (json!({"email": "n@example.com", "password": PASSWORD, "name": "bell\u{7}"}), "name"),
        (json!({"password": PASSWORD}), "email"),
        (json!({"email": "m@example.com"}), "password"),
        (json!({"email": null, "password": PASSWORD}), "email"),
        (json!({"email": 12, "password": PASSWORD}), "email"),
        (json!({"email": "t@example.com", "password": true}), "password"),
        (json!({"email": "t@example.com", "password": PASSWORD, "name": 5}), "name"),
    ];
    for (body, field) in cases {
        let r = app.post("/auth/register", body.clone()).await;
        r.assert(400, "VALIDATION_ERROR");
        assert_eq!(r.body["detail"]["field"], field, "{body}");
    }
    let weak = app.post("/auth/register", json!({"email": "w@example.com", "password": "weak"})).await;
    assert!(
        weak.body["detail"]["message"].as_str().unwrap().starts_with("Password does not meet security requirements")
    );
    // Nothing was created by any of it.
    app.login("weak@example.com", "weak").await.assert(401, "INVALID_CREDENTIALS");
}

async fn register_twice_is_a_conflict_whatever_the_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_up("dup@example.com").await;
    for email in ["dup@example.com", "DUP@Example.com", "  dup@EXAMPLE.com  "] {
        app.register(email, PASSWORD).await.assert(409, "EMAIL_ALREADY_EXISTS");
    }
}

async fn concurrent_registrations_of_one_email_make_one_account(backend: Backend) {
    let app = std::sync::Arc::new(TestApp::spawn(backend).await);
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let app = app.clone();
            let email = if i % 2 == 0 { "same@example.com" } else { "SAME@example.com" };
            tokio::spawn(async move { app.register(email, PASSWORD).await })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            201 => created += 1,
            409 => {
                r.assert(409, "EMAIL_ALREADY_EXISTS");
            }
            _ => panic!("unexpected {}", r.text),
        };
    }
    assert_eq!(created, 1);
}

async fn login_answers_one_error_for_unknown_email_and_wrong_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_up("known@example.com").await;
    let wrong = app.login("known@example.com", "WrongPass123!").await;
    let unknown = app.login("unknown@example.com", PASSWORD).await;
    let garbage = app.login("not an email", PASSWORD).await;
    wrong.assert(401, "INVALID_CREDENTIALS");
    unknown.assert(401, "INVALID_CREDENTIALS");
    garbage.assert(401, "INVALID_CREDENTIALS");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body, garbage.body);
    for body in [json!({}), json!({"email": "known@example.com"}), json!({"email": 1, "password": "x"})] {
        app.post("/auth/login", body).await.assert(400, "VALIDATION_ERROR");
    }
    let huge = app.login("known@example.com", &"A".repeat(5000)).await;
    huge.assert(400, "VALIDATION_ERROR");
    assert_eq!(huge.body["detail"]["field"], "password");
}

async fn bearer_routes_distinguish_missing_malformed_invalid_and_expired(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("me@example.com").await;
    let no_header = app.call(Method::GET, "/auth/me", None, None).await;
    no_header.assert(401, "UNAUTHORIZED");
    assert_eq!(no_header.header("www-authenticate"), Some("Bearer"));
    for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "token-without-scheme"] {
        let req = Request::get("/auth/me").header("authorization", value).body(Body::empty()).unwrap();
        app.send(req).await.assert(401, "UNAUTHORIZED");
    }
    let invalid = app.me("a.b.c").await;
    invalid.assert(401, "INVALID_TOKEN");
    assert_eq!(invalid.body["detail"]["message"], "Token is invalid or expired");
    assert!(invalid.header("www-authenticate").unwrap().contains("invalid_token"));
    app.me(&"A".repeat(100_000)).await.assert(401, "INVALID_TOKEN");
    // The refresh token is not an access token.
    app.me(&reg.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
    app.clock.advance(Duration::minutes(15));
    app.me(&reg.str("access_token")).await.assert(401, "TOKEN_EXPIRED");
}

async fn a_token_signed_with_another_secret_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other =
        TestApp::spawn_with(backend, &[("JWT_SECRET_KEY", "another-secret-another-secret-another-secret")]).await;
    let reg = app.signed_up("x@example.com").await;
    other.me(&reg.str("access_token")).await.assert(401, "INVALID_TOKEN");
    other.refresh(&reg.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
}

async fn layers_answer_in_the_envelope_too(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app.call(Method::GET, "/no/such/route", None, None).await;
    r.assert(404, "NOT_FOUND");
    let r = app.call(Method::GET, "/auth/login", None, None).await;
    r.assert(405, "METHOD_NOT_ALLOWED");
    assert!(r.header("allow").unwrap().contains("POST"));
    app.post_raw("/auth/login", Some("text/plain"), r#"{"email":"a@b.co","password":"x"}"#)
        .await
        .assert(415, "UNSUPPORTED_MEDIA_TYPE");
    app.post_raw("/auth/login", None, r#"{"email":"a@b.co","password":"x"}"#)
        .await
        .assert(415, "UNSUPPORTED_MEDIA_TYPE");
    let big = format!(r#"{{"email":"a@b.co","password":"{}"}}"#, "x".repeat(70 * 1024));
    app.post_raw("/auth/login", Some("application/json"), big).await.assert(413, "PAYLOAD_TOO_LARGE");
    let r = app.call(Method::GET, "/__test/panic", None, None).await;
    r.assert(500, "INTERNAL_ERROR");
    assert!(!r.text.contains("deliberate"), "the panic message stays in the log");
    // The process (router) keeps serving after a panic.
    app.call(Method::GET, "/health/live", None, None).await.assert(200, "");
}

async fn every_response_carries_a_request_id_and_echoes_the_clients(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in ["/health", "/nowhere", "/auth/me"] {
        let r = app.call(Method::GET, path, None, None).await;
        assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()), "{path}");
    }
    let req = Request::get("/health/live").header("x-request-id", "trace-me-42").body(Body::empty()).unwrap();
    assert_eq!(app.send(req).await.header("x-request-id"), Some("trace-me-42"));
    let r = app.call(Method::GET, "/__test/panic", None, None).await;
    assert!(r.header("x-request-id").is_some());
}

async fn hostile_bodies_never_cause_a_5xx(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_up("target@example.com").await;
    let bodies: Vec<&[u8]> = vec![
        b"",
        b"{",
        b"null",
        b"[]",
        b"\"string\"",
        b"{\"email\": \"a@b.co\", \"password\": \"x\"} trailing",
        b"{\"email\": \"\\ud800\", \"password\": \"x\"}",
        b"\xff\xfe\xfd",
        b"{\"email\": {\"$ne\": null}, \"password\": {\"$ne\": null}}",
        b"{\"email\": \"target@example.com' OR '1'='1\", \"password\": \"x' OR '1'='1\"}",
        b"{\"email\": \"target@example.com\", \"password\": \"TestPass123!\\u0000\"}",
        b"{\"email\": [\"target@example.com\"], \"password\": \"TestPass123!\"}",
        b"{\"refresh_token\": \"\xc3\x28\"}",
        b"{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}}}}",
    ];
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    for path in ["/auth/register", "/auth/login", "/auth/refresh", "/auth/logout"] {
        for body in bodies.iter().copied().chain(std::iter::once(deep.as_bytes())) {
            let r = app.post_raw(path, Some("application/json"), body.to_vec()).await;
            assert!(
                r.status.is_client_error(),
                "{path} {:?} -> {} {}",
                String::from_utf8_lossy(body),
                r.status,
                r.text
            );
            assert!(!r.code().is_empty(), "{path}: no envelope in {}", r.text);
        }
    }
    let unicode = json!({"email": "ünï@exämple.com", "password": "Pässwörd-ünïcode-9Ü", "name": "名前 🍓"});
    let r = app.post("/auth/register", unicode).await;
    r.assert(201, "");
    assert_eq!(r.body["user"]["name"], "名前 🍓");
    app.login("ÜNÏ@exämple.com", "Pässwörd-ünïcode-9Ü").await.assert(200, "");
}

async fn token_responses_are_not_cacheable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("cache@example.com").await;
    let login = app.login("cache@example.com", PASSWORD).await;
    let refreshed = app.refresh(&login.str("refresh_token")).await;
    for r in [&reg, &login, &refreshed] {
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("pragma"), Some("no-cache"));
    }
}

async fn a_request_that_never_finishes_its_body_times_out_with_408(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("REQUEST_TIMEOUT_SECONDS", "1")]).await;
    let stalled = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
    let req = Request::post("/auth/login")
        .header("content-type", "application/json")
        .body(Body::from_stream(stalled))
        .unwrap();
    app.send(req).await.assert(408, "REQUEST_TIMEOUT");
}

async fn beyond_the_concurrency_cap_requests_are_shed_with_503(backend: Backend) {
    let app = std::sync::Arc::new(
        TestApp::spawn_with(backend, &[("MAX_CONCURRENT_REQUESTS", "1"), ("REQUEST_TIMEOUT_SECONDS", "2")]).await,
    );
    // Occupies the only slot: a body that never finishes (until the 2 s timeout).
    let holder = {
        let app = app.clone();
        tokio::spawn(async move {
            let stalled = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
            let req = Request::post("/auth/login")
                .header("content-type", "application/json")
                .body(Body::from_stream(stalled));
            app.send(req.unwrap()).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let shed = app.call(Method::GET, "/auth/me", None, None).await;
    shed.assert(503, "SERVICE_UNAVAILABLE");
    assert_eq!(shed.header("retry-after"), Some("1"));
    // Probes are never shed: a busy node is not a dead one.
    app.call(Method::GET, "/health/live", None, None).await.assert(200, "");
    holder.await.unwrap().assert(408, "REQUEST_TIMEOUT");
    app.call(Method::GET, "/auth/me", None, None).await.assert(401, "UNAUTHORIZED");
}

both_backends!(
    beyond_the_concurrency_cap_requests_are_shed_with_503,
    token_responses_are_not_cacheable,
    a_request_that_never_finishes_its_body_times_out_with_408,
    register_validates_every_field,
    register_twice_is_a_conflict_whatever_the_case,
    concurrent_registrations_of_one_email_make_one_account,
    login_answers_one_error_for_unknown_email_and_wrong_password,
    bearer_routes_distinguish_missing_malformed_invalid_and_expired,
    a_token_signed_with_another_secret_is_refused,
    layers_answer_in_the_envelope_too,
    every_response_carries_a_request_id_and_echoes_the_clients,
    hostile_bodies_never_cause_a_5xx,
);
