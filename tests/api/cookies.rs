//! Refresh token in an HttpOnly cookie, and the double-submit CSRF check that goes with it.
use axum::body::Body;
use axum::http::Request;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, Res, TestApp};

/// `name=value` of the Set-Cookie header for `name`, and its attributes.
fn set_cookie<'a>(r: &'a Res, name: &str) -> Option<&'a str> {
    r.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find(|c| c.starts_with(&format!("{name}=")))
}

fn value(set_cookie: &str) -> String {
    set_cookie.split(';').next().and_then(|kv| kv.split_once('=')).map(|(_, v)| v.to_owned()).unwrap_or_default()
}

async fn post_with_cookies(app: &TestApp, path: &str, cookies: &str, csrf: Option<&str>) -> Res {
    let mut req = Request::post(path).header("cookie", cookies);
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    app.send(req.body(Body::empty()).unwrap()).await
}

async fn in_cookie_mode_the_refresh_token_never_reaches_page_scripts(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("TOKEN_TRANSPORT", "cookie")]).await;
    app.signed_up("cookie@example.com").await;
    let login = app.login("cookie@example.com", PASSWORD).await;
    login.assert(200, "");
    assert!(login.body.get("refresh_token").is_none(), "not in the JSON: {}", login.text);
    let rc = set_cookie(&login, "fraise_refresh").expect("refresh cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/auth"] {
        assert!(rc.contains(attr), "{attr} missing from {rc}");
    }
    let csrf = set_cookie(&login, "csrf_token").expect("csrf cookie");
    assert!(!csrf.contains("HttpOnly"), "the page must be able to read the CSRF cookie");

    let jar = format!("fraise_refresh={}", value(rc));
    let refreshed = post_with_cookies(&app, "/auth/refresh", &jar, None).await;
    refreshed.assert(200, "");
    let next = value(set_cookie(&refreshed, "fraise_refresh").expect("rotated cookie"));
    assert_ne!(next, value(rc));
    app.me(&refreshed.str("access_token")).await.assert(200, "");

    let out = post_with_cookies(&app, "/auth/logout", &format!("fraise_refresh={next}"), None).await;
    out.assert(200, "");
    assert!(set_cookie(&out, "fraise_refresh").is_some_and(|c| c.contains("Max-Age=0")));
    post_with_cookies(&app, "/auth/refresh", &format!("fraise_refresh={next}"), None)
        .await
        .assert(401, "INVALID_TOKEN");
}

async fn csrf_requires_the_header_to_match_the_cookie(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("TOKEN_TRANSPORT", "both"), ("ENABLE_CSRF_PROTECTION", "true")]).await;
    // No cookie yet: nothing to forge, no check.
    let reg = app.signed_up("csrf@example.com").await;
    assert!(reg.body.get("refresh_token").is_some(), "both: body and cookie");
    let rt = value(set_cookie(&reg, "fraise_refresh").unwrap());
    let csrf = value(set_cookie(&reg, "csrf_token").unwrap());
    let jar = format!("fraise_refresh={rt}; csrf_token={csrf}");
    post_with_cookies(&app, "/auth/refresh", &jar, None).await.assert(403, "CSRF_FAILED");
    post_with_cookies(&app, "/auth/refresh", &jar, Some("forged-value")).await.assert(403, "CSRF_FAILED");
    post_with_cookies(&app, "/auth/refresh", &format!("fraise_refresh={rt}"), Some(&csrf))
        .await
        .assert(403, "CSRF_FAILED");
    // The refused attempts changed nothing: the real one rotates the original token.
    post_with_cookies(&app, "/auth/refresh", &jar, Some(&csrf)).await.assert(200, "");
    // Without the cookie there is no CSRF check: a body-token refresh goes through (here the
    // previous token inside the grace window, which answers with the current one).
    let r = app.post("/auth/refresh", json!({"refresh_token": reg.str("refresh_token")})).await;
    r.assert(200, "");
    app.login("csrf@example.com", PASSWORD).await.assert(200, "");
}

both_backends!(
    in_cookie_mode_the_refresh_token_never_reaches_page_scripts,
    csrf_requires_the_header_to_match_the_cookie
);
