//! `/metrics`: Prometheus text with bounded labels, the service's counters, and its protection.
//! The recorder is process-wide and tests run in parallel, so counters are compared as deltas.
use axum::http::Method;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp};

both_backends!(metrics_count_requests_by_route_template_and_outcomes, metrics_can_require_a_token);

/// The value of the sample whose name-and-labels text starts with `series` (0 when absent).
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn scrape(app: &TestApp) -> String {
    let r = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    r.text
}

async fn metrics_count_requests_by_route_template_and_outcomes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before = scrape(&app).await;
    let user = app.signed_up("metrics@example.com").await;
    app.login("metrics@example.com", "WrongPass1!").await.assert(401, "INVALID_CREDENTIALS");
    app.login("metrics@example.com", PASSWORD).await.assert(200, "");
    app.refresh(&user.str("refresh_token")).await.assert(200, "");
    let id = uuid::Uuid::new_v4();
    app.call(Method::DELETE, &format!("/auth/sessions/{id}"), None, Some(&user.str("access_token"))).await;
    app.call(Method::GET, "/no/such/path", None, None).await.assert(404, "NOT_FOUND");
    let after = scrape(&app).await;

    let delta = |series: &str| value(&after, series) - value(&before, series);
    assert!(delta(r#"fraise_logins_total{outcome="invalid_credentials"}"#) >= 1.0, "{after}");
    assert!(delta(r#"fraise_logins_total{outcome="success"}"#) >= 1.0);
    assert!(delta(r#"fraise_refreshes_total{outcome="success"}"#) >= 1.0);
    assert!(delta("fraise_registrations_total") >= 1.0);
    assert!(delta(r#"fraise_http_requests_total{method="POST",route="/auth/login",status="401"}"#) >= 1.0, "{after}");
    assert!(
        delta(r#"fraise_http_requests_total{method="DELETE",route="/auth/sessions/{session_id}""#) >= 1.0,
        "{after}"
    );
    assert!(delta(r#"fraise_http_requests_total{method="GET",route="unmatched",status="404"}"#) >= 1.0);
    assert!(!after.contains(&id.to_string()), "a raw path became a label");
    assert!(!after.contains("/no/such/path"), "a raw path became a label");
    assert!(delta("fraise_hash_wait_seconds_count") >= 3.0, "{after}");
    assert!(
        after.contains(r#"fraise_http_request_duration_seconds_bucket{method="POST",route="/auth/login",le="0.005"}"#)
    );
    assert!(
        after.contains(r#"fraise_db_pool_connections{state="idle"}"#)
            && after.contains("fraise_db_pool_max_connections 5")
    );
    assert!(after.contains("fraise_hash_queue_depth "), "{after}");
    if backend == Backend::Postgres {
        // Values are set at each scrape from the scraping app's store, and other tests scrape in
        // parallel: only that the series is exported is checked here (tests/api/batching.rs
        // checks the worker's busy time itself).
        assert!(after.contains("\nfraise_refresh_batch_busy_microseconds_total "), "{after}");
    }
}

async fn metrics_can_require_a_token(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("METRICS_TOKEN", "scrape-token-123")]).await;
    let r = app.call(Method::GET, "/metrics", None, None).await;
    r.assert(401, "UNAUTHORIZED");
    app.call(Method::GET, "/metrics", None, Some("wrong")).await.assert(401, "UNAUTHORIZED");
    let r = app.call(Method::GET, "/metrics", None, Some("scrape-token-123")).await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(r.text.contains("fraise_http_requests_total"));
}

/// `METRICS_BIND` moves /metrics to its own listener: the main port answers 404 for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_bind_serves_them_on_another_listener_only() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("METRICS_BIND", "127.0.0.1:9")]).await;
    app.call(Method::GET, "/metrics", None, None).await.assert(404, "NOT_FOUND");
    let off = TestApp::spawn_with(Backend::Sqlite, &[("METRICS_ENABLED", "false")]).await;
    off.call(Method::GET, "/metrics", None, None).await.assert(404, "NOT_FOUND");

    // The real process: metrics on the second port, not on the first.
    let (main_port, metrics_port) = (crate::cli_ops::free_port(), crate::cli_ops::free_port());
    let bind = format!("127.0.0.1:{metrics_port}");
    let _server = crate::cli_ops::serve_on(&app, main_port, &[("METRICS_BIND", &bind)]).await;
    let text = reqwest::get(format!("http://{bind}/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains("fraise_http_requests_total"), "{text}");
    let main = reqwest::get(format!("http://127.0.0.1:{main_port}/metrics")).await.unwrap();
    assert_eq!(main.status().as_u16(), 404);
}
