//! Client IP behind proxies, security headers on every response, CORS.
use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp, wait_for};

/// Registers with the given extra headers and returns the IP the session recorded.
async fn recorded_ip(app: &TestApp, email: &str, headers: &[(&str, &str)]) -> String {
    let mut req = Request::post("/auth/register").header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = json!({"email": email, "password": PASSWORD}).to_string();
    let r = app.send(req.body(Body::from(body)).unwrap()).await;
    r.assert(201, "");
    let p = app.auth.authenticate(&r.str("access_token")).await.unwrap();
    p.session.ip_address.unwrap_or_default()
}

async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ip = recorded_ip(&app, "spoof@example.com", &[("x-forwarded-for", "1.2.3.4")]).await;
    assert_eq!(ip, "203.0.113.7", "the socket peer, not the header");
}

async fn through_a_trusted_proxy_the_forwarded_client_is_used(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("TRUSTED_PROXIES", "203.0.113.0/24")]).await;
    let ip = recorded_ip(&app, "a@example.com", &[("x-forwarded-for", "198.51.100.20")]).await;
    assert_eq!(ip, "198.51.100.20");
    // The client's own (spoofed) entry stands left of what the proxy appended: ignored.
    let ip = recorded_ip(&app, "b@example.com", &[("x-forwarded-for", "6.6.6.6, 198.51.100.21")]).await;
    assert_eq!(ip, "198.51.100.21");
}

async fn security_headers_are_on_every_response_errors_included(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let responses = [
        app.call(Method::GET, "/health", None, None).await,
        app.call(Method::GET, "/nowhere", None, None).await,
        app.call(Method::GET, "/auth/me", None, None).await,
        app.call(Method::GET, "/auth/login", None, None).await,
        app.call(Method::GET, "/__test/panic", None, None).await,
        app.post("/auth/login", json!({})).await,
    ];
    for r in &responses {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{}", r.status);
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-xss-protection"), Some("1; mode=block"));
        assert_eq!(r.header("referrer-policy"), Some("strict-origin-when-cross-origin"));
        assert_eq!(r.header("content-security-policy"), Some("default-src 'none'; frame-ancestors 'none'"));
        assert!(r.header("strict-transport-security").is_none(), "plain HTTP from an untrusted peer: no HSTS");
    }
    let req = Request::get("/health").header("x-forwarded-proto", "https").body(Body::empty()).unwrap();
    assert!(app.send(req).await.header("strict-transport-security").is_none(), "only a trusted proxy says https");
}

async fn hsts_behind_a_trusted_tls_proxy_or_always_when_asked(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("TRUSTED_PROXIES", "203.0.113.7")]).await;
    let req = Request::get("/health").header("x-forwarded-proto", "https").body(Body::empty()).unwrap();
    assert_eq!(app.send(req).await.header("strict-transport-security"), Some("max-age=31536000; includeSubDomains"));
    let always = TestApp::spawn_with(backend, &[("HSTS_ALWAYS", "true"), ("CSP_POLICY", "default-src 'self'")]).await;
    let r = always.call(Method::GET, "/nowhere", None, None).await;
    assert_eq!(r.header("strict-transport-security"), Some("max-age=31536000; includeSubDomains"));
    assert_eq!(r.header("content-security-policy"), Some("default-src 'self'"));
    let off = TestApp::spawn_with(backend, &[("ENABLE_SECURITY_HEADERS", "false")]).await;
    assert!(off.call(Method::GET, "/health", None, None).await.header("x-frame-options").is_none());
}

async fn cors_answers_allowed_origins_only_with_credentials(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("CORS_ALLOWED_ORIGINS", "https://app.example.com")]).await;
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/auth/login")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-csrf-token")
            .body(Body::empty())
            .unwrap()
    };
    let ok = app.send(preflight("https://app.example.com")).await;
    assert!(ok.status.is_success(), "{}", ok.status);
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    let allowed = ok.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
    assert!(allowed.contains("x-csrf-token") && allowed.contains("authorization"), "{allowed}");
    let evil = app.send(preflight("https://evil.example.com")).await;
    assert!(evil.header("access-control-allow-origin").is_none());
    // An actual cross-origin call, even one that fails, carries the header for the allowed origin.
    let req = Request::get("/auth/me").header("origin", "https://app.example.com").body(Body::empty()).unwrap();
    let r = app.send(req).await;
    r.assert(401, "UNAUTHORIZED");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
}

/// A login attempt from the given extra headers.
async fn login_from(app: &TestApp, headers: &[(&str, &str)]) -> crate::helpers::Res {
    let mut req = Request::post("/auth/login").header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.send(req.body(Body::from(json!({"email": "x@example.com", "password": "Wrong123!x"}).to_string())).unwrap())
        .await
}

const LIMITED: &[(&str, &str)] = &[
    ("ENABLE_RATE_LIMITING", "true"),
    ("RATE_LIMIT_AUTH_REQUESTS_PER_MINUTE", "3"),
    ("RATE_LIMIT_REQUESTS_PER_MINUTE", "100"),
];

async fn the_auth_bucket_refuses_the_fourth_attempt_with_429_and_headers(backend: Backend) {
    let app = TestApp::spawn_with(backend, LIMITED).await;
    for remaining in ["2", "1", "0"] {
        let r = login_from(&app, &[]).await;
        r.assert(401, "INVALID_CREDENTIALS");
        assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some(remaining));
        let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(reset >= now && reset <= now + 61, "reset {reset} is Unix seconds within a minute of {now}");
    }
    let r = login_from(&app, &[]).await;
    r.assert(429, "RATE_LIMITED");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert!(r.header("x-request-id").is_some() && r.header("x-frame-options").is_some());
    // A spoofed X-Forwarded-For from an untrusted peer does not buy a fresh key.
    login_from(&app, &[("x-forwarded-for", "9.9.9.9")]).await.assert(429, "RATE_LIMITED");
    // Other routes use the general bucket; probes are never limited.
    app.call(Method::GET, "/auth/me", None, None).await.assert(401, "UNAUTHORIZED");
    let h = app.call(Method::GET, "/health/live", None, None).await;
    assert!(h.status.is_success() && h.header("x-ratelimit-limit").is_none());
}

async fn behind_a_trusted_proxy_each_client_has_its_own_bucket(backend: Backend) {
    let mut cfg = LIMITED.to_vec();
    cfg.push(("TRUSTED_PROXIES", "203.0.113.7"));
    let app = TestApp::spawn_with(backend, &cfg).await;
    for _ in 0..3 {
        login_from(&app, &[("x-forwarded-for", "198.51.100.1")]).await.assert(401, "INVALID_CREDENTIALS");
    }
    login_from(&app, &[("x-forwarded-for", "198.51.100.1")]).await.assert(429, "RATE_LIMITED");
    login_from(&app, &[("x-forwarded-for", "198.51.100.2")]).await.assert(401, "INVALID_CREDENTIALS");
}

async fn allowlisted_clients_are_not_limited(backend: Backend) {
    let mut cfg = LIMITED.to_vec();
    cfg.push(("RATE_LIMIT_ALLOWLIST", "203.0.113.0/24"));
    let app = TestApp::spawn_with(backend, &cfg).await;
    for _ in 0..5 {
        let r = login_from(&app, &[]).await;
        r.assert(401, "INVALID_CREDENTIALS");
        assert!(r.header("x-ratelimit-limit").is_none());
    }
}

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// Fails (never skips) when the test Redis is down: a store that is not tested is not supported.
async fn require_redis() {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap_or_else(|e| {
        panic!("Redis is unreachable at {}: {e}. Start it (see README) or set TEST_REDIS_URL.", redis_url())
    });
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

async fn two_nodes_sharing_redis_hold_the_auth_limit_in_total(backend: Backend) {
    require_redis().await;
    let prefix = format!("fraise-test:{}:{}:", std::process::id(), uuid::Uuid::new_v4());
    let url = redis_url();
    let mut cfg = LIMITED.to_vec();
    cfg.push(("REDIS_URL", &url));
    cfg.push(("RATE_LIMIT_REDIS_PREFIX", &prefix));
    let (a, b) = (TestApp::spawn_with(backend, &cfg).await, TestApp::spawn_with(backend, &cfg).await);
    let seen: Vec<String> = [login_from(&a, &[]).await, login_from(&b, &[]).await, login_from(&a, &[]).await]
        .iter()
        .map(|r| {
            r.assert(401, "INVALID_CREDENTIALS");
            r.header("x-ratelimit-remaining").unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(seen, ["2", "1", "0"], "one count across both nodes");
    login_from(&b, &[]).await.assert(429, "RATE_LIMITED");
    login_from(&a, &[]).await.assert(429, "RATE_LIMITED");
    let h = a.call(Method::GET, "/health", None, None).await;
    assert_eq!(h.body["rate_limiter"], json!({"store": "redis", "status": "ok", "failure_policy": "open"}));
}

async fn an_unreachable_redis_follows_the_failure_policy(backend: Backend) {
    // Port 1 on loopback: connections are refused at once, like a stopped Redis.
    let mut open = LIMITED.to_vec();
    open.push(("REDIS_URL", "redis://127.0.0.1:1/0"));
    let app = TestApp::spawn_with(backend, &open).await;
    for _ in 0..5 {
        let r = login_from(&app, &[]).await;
        r.assert(401, "INVALID_CREDENTIALS");
        assert!(r.header("x-ratelimit-limit").is_none(), "fail open: not limited");
    }
    let h = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(h.status.as_u16(), 200, "fail-open keeps serving: {}", h.text);
    assert_eq!(h.body["rate_limiter"]["status"], "unreachable");

    let mut closed = open.clone();
    closed.push(("RATE_LIMIT_REDIS_FAILURE", "closed"));
    let app = TestApp::spawn_with(backend, &closed).await;
    let r = login_from(&app, &[]).await;
    r.assert(503, "SERVICE_UNAVAILABLE");
    assert!(r.header("retry-after").is_some());
    let h = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(h.status.as_u16(), 503);
    assert_eq!(h.body["rate_limiter"]["failure_policy"], "closed");
}

both_backends!(
    two_nodes_sharing_redis_hold_the_auth_limit_in_total,
    an_unreachable_redis_follows_the_failure_policy,
    the_auth_bucket_refuses_the_fourth_attempt_with_429_and_headers,
    behind_a_trusted_proxy_each_client_has_its_own_bucket,
    allowlisted_clients_are_not_limited,
    a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored,
    through_a_trusted_proxy_the_forwarded_client_is_used,
    security_headers_are_on_every_response_errors_included,
    hsts_behind_a_trusted_tls_proxy_or_always_when_asked,
    cors_answers_allowed_origins_only_with_credentials,
);

/// How long until the server closes `stream`, which has sent `sent` and then nothing: the read
/// returns end-of-file (or a reset) once the header-read timeout has fired. Panics after `limit`.
async fn closed_after(
    mut stream: tokio::net::TcpStream,
    sent: &[u8],
    limit: std::time::Duration,
) -> std::time::Duration {
    stream.write_all(sent).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => panic!("the connection was still open after {limit:?}"),
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            // A 408 for a half-sent head is allowed; only the close counts.
            Ok(Ok(_)) => {}
        }
    }
}

/// Slowloris: a connection that sends its head slowly, or nothing, or sits idle after a request,
/// is closed after `HEADER_READ_TIMEOUT_SECONDS`; one that keeps sending requests is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_their_headers_are_closed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let port = crate::cli_ops::free_port();
    let _server = crate::cli_ops::serve_on(&app, port, &[("HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let addr = format!("127.0.0.1:{port}");
    let connect = || tokio::net::TcpStream::connect(addr.clone());
    let limit = std::time::Duration::from_secs(10);
    let second = std::time::Duration::from_millis(900);

    let silent = closed_after(connect().await.unwrap(), b"", limit).await;
    let partial = closed_after(connect().await.unwrap(), b"GET /health/live HTTP/1.1\r\nHost: x\r\n", limit).await;
    assert!(silent >= second && partial >= second, "closed too early: {silent:?}, {partial:?}");

    // A keep-alive connection serves request after request, each within the timeout...
    let mut stream = connect().await.unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..3 {
        stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    // ...and is closed once idle for longer.
    let idle = closed_after(stream, b"", limit).await;
    assert!(idle >= std::time::Duration::from_millis(400), "{idle:?}");

    // The server still answers new connections.
    let r = reqwest::get(format!("http://{addr}/health/live")).await.unwrap();
    assert_eq!(r.status(), 200);
}

/// SIGTERM: the listener closes at once, a request already on its way is still answered, and the
/// process then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_requests_in_flight_finish_and_new_connections_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let port = crate::cli_ops::free_port();
    let mut server = crate::cli_ops::serve_on(&app, port, &[]).await;
    let addr = format!("127.0.0.1:{port}");
    let body = json!({"email": "nobody@example.com", "password": "WrongPass123!"}).to_string();
    let (first, rest) = body.split_at(10);
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let pid = server.0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let signalled = std::time::Instant::now();
    wait_for("the listener to refuse connections", || std::net::TcpStream::connect(&addr).is_err()).await;
    assert!(
        signalled.elapsed() < std::time::Duration::from_millis(2500),
        "refused only after {:?}",
        signalled.elapsed()
    );

    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("INVALID_CREDENTIALS"), "{answer}");
    let mut exited = None;
    wait_for("the server to exit", || {
        exited = server.0.try_wait().unwrap();
        exited.is_some()
    })
    .await;
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
}
