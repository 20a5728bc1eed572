//! `/ui/`: the hosted page is off by default; on, it is served from the binary with the right
//! content types, revalidation caching, a CSP of its own without inline script, and no rate limit
//! on its static files; every API route keeps the API's policy.
use axum::body::Body;
use axum::http::{Method, Request};

use crate::helpers::{Backend, TestApp};

const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

#[tokio::test]
async fn the_hosted_page_is_off_unless_ui_enabled() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for path in ["/ui", "/ui/", "/ui/app.js"] {
        app.call(Method::GET, path, None, None).await.assert(404, "NOT_FOUND");
    }
}

#[tokio::test]
async fn the_hosted_page_and_its_files_are_served_with_their_types_and_its_own_csp() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("UI_ENABLED", "true"), ("AUTH_PREFIX", "/id")]).await;
    let r = app.call(Method::GET, "/ui", None, None).await;
    assert_eq!((r.status.as_u16(), r.header("location")), (303, Some("/ui/")));

    let page = app.call(Method::GET, "/ui/", None, None).await;
    assert_eq!(page.status.as_u16(), 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.header("content-security-policy"), Some(fraise_http::ui::UI_CSP));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert!(page.text.contains(r#"<meta name="fraise-auth-prefix" content="/id">"#), "{}", page.text);
    assert!(page.text.contains(r#"<script type="module" src="./app.js"></script>"#));

    for (file, ct) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("client/index.js", "text/javascript; charset=utf-8"),
        ("client/client.js", "text/javascript; charset=utf-8"),
    ] {
        let r = app.call(Method::GET, &format!("/ui/{file}"), None, None).await;
        assert_eq!((r.status.as_u16(), r.header("content-type")), (200, Some(ct)), "{file}");
        assert_eq!(r.header("content-security-policy"), Some(fraise_http::ui::UI_CSP), "{file}");
        assert!(r.header("etag").is_some(), "{file}");
    }
    // The emailed links' landing points are the page itself.
    for path in ["/ui/reset-password?token=abc", "/ui/verify-email?token=abc"] {
        let r = app.call(Method::GET, path, None, None).await;
        assert_eq!(r.status.as_u16(), 200, "{path}");
        assert_eq!(r.text, page.text, "{path}");
    }
    // The relaxed policy is the page's alone: not an unknown file's 404, not the API.
    app.call(Method::GET, "/ui/nope.js", None, None).await.assert(404, "NOT_FOUND");
    for path in ["/ui/nope.js", "/id/me", "/openapi.json", "/health"] {
        let r = app.call(Method::GET, path, None, None).await;
        assert_eq!(r.header("content-security-policy"), Some(DEFAULT_CSP), "{path}");
    }
    let csp = fraise_http::ui::UI_CSP;
    assert!(csp.contains("script-src 'self';") && !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
}

#[tokio::test]
async fn an_unchanged_file_is_a_304_on_revalidation() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("UI_ENABLED", "true")]).await;
    let first = app.call(Method::GET, "/ui/app.js", None, None).await;
    let etag = first.header("etag").unwrap().to_owned();
    let req =
        |tag: &str| Request::builder().uri("/ui/app.js").header("if-none-match", tag).body(Body::empty()).unwrap();
    let again = app.send(req(&etag)).await;
    assert_eq!(again.status.as_u16(), 304);
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert!(again.text.is_empty());
    assert_eq!(app.send(req("\"other\"")).await.status.as_u16(), 200);
}

#[tokio::test]
async fn page_loads_do_not_spend_the_clients_rate_limit() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("UI_ENABLED", "true"), ("ENABLE_RATE_LIMITING", "true"), ("RATE_LIMIT_REQUESTS_PER_MINUTE", "2")],
    )
    .await;
    for _ in 0..5 {
        let r = app.call(Method::GET, "/ui/client/index.js", None, None).await;
        assert_eq!(r.status.as_u16(), 200);
        assert_eq!(r.header("x-ratelimit-limit"), None);
    }
    // The API still counts: the third call in the minute is refused.
    app.call(Method::GET, "/auth/me", None, None).await.assert(401, "UNAUTHORIZED");
    app.call(Method::GET, "/auth/me", None, None).await.assert(401, "UNAUTHORIZED");
    app.call(Method::GET, "/auth/me", None, None).await.assert(429, "RATE_LIMITED");
}
