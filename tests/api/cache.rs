//! The PostgreSQL session cache (`SESSION_CACHE_SIZE`): bearer checks answered from memory, yet
//! every revocation, disabled account or deleted session is refused, whether it was made on this
//! node (at once), on another node or by hand in SQL (within the notification's latency), and
//! while the change listener is down nothing is served from memory. PostgreSQL only: SQLite has
//! no cache.
use std::time::{Duration, Instant};

use axum::http::Method;
use chrono::Duration as Span;
use fraise_auth::boot::Db;
use fraise_auth::config::Database;
use fraise_core::store::{SessionCacheStats, StoreHealth as _};
use fraise_store::PgStore;
use serde_json::json;
use sqlx::Connection as _;

use crate::helpers::{Backend, PASSWORD, Res, TestApp, pg_url, wait_for};

pub(crate) fn pg(app: &TestApp) -> &PgStore {
    match &app.db {
        Db::Postgres(s) => s,
        Db::Sqlite(_) => unreachable!("PostgreSQL tests"),
    }
}

fn stats(app: &TestApp) -> SessionCacheStats {
    pg(app).session_cache().expect("PostgreSQL keeps a session cache")
}

pub(crate) fn schema(app: &TestApp) -> String {
    let Database::Postgres { schema, .. } = &app.config.database else { unreachable!() };
    schema.clone()
}

/// A second node: another service on the same database and schema as `app`.
async fn second_node(app: &TestApp, extra: &[(&str, &str)]) -> TestApp {
    let schema = schema(app);
    let mut pairs = vec![("DEFAULT_SCHEMA", schema.as_str())];
    pairs.extend_from_slice(extra);
    TestApp::spawn_with(Backend::Postgres, &pairs).await
}

/// Runs `sql` (`{s}` = the app's schema) on a connection of its own, as an operator would.
pub(crate) async fn sql(app: &TestApp, sql: &str) {
    let mut c = sqlx::PgConnection::connect(&pg_url()).await.unwrap();
    let sql = sql.replace("{s}", &format!("\"{}\"", schema(app)));
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
}

/// Signs `email` up on `app` and returns its access token, answered from `app`'s cache from then on.
async fn cached_session(app: &TestApp, email: &str) -> (String, Res) {
    let reg = app.signed_up(email).await;
    let token = reg.str("access_token");
    // The first lookup reads the database and stores the answer, unless an invalidation raced it
    // (any notification on the shared channel, other tests' included, bars that insert): ask
    // until one is answered from the cache.
    let start = Instant::now();
    loop {
        let hits = stats(app).hits;
        app.me(&token).await.assert(200, "");
        if stats(app).hits > hits {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "{email} never answered from the cache");
    }
    (token, reg)
}

/// How soon a change made elsewhere must be refused while the listener is healthy: the
/// notification's latency, with room for a loaded test machine.
const SOON: Duration = Duration::from_secs(1);

/// Asks `app` until `token` is refused with (`status`, `code`), for at most 2 s; returns how long
/// it took. Fails if the cache keeps serving the stale answer longer than `limit`.
async fn refused_within(app: &TestApp, token: &str, status: u16, code: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let r = app.me(token).await;
        if r.status.as_u16() != 200 {
            r.assert(status, code);
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "still accepted {limit:?} after the change");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs `step` with the listener holding every notification back, so only this node's own
/// invalidation can explain a refusal; checks the cache was still answering throughout.
async fn without_notifications<F: std::future::Future<Output = ()>>(app: &TestApp, step: F) {
    wait_for("the cache to be live", || stats(app).live).await;
    pg(app).hold_session_cache_listener(true);
    let started = Instant::now();
    step.await;
    let live = stats(app).live;
    pg(app).hold_session_cache_listener(false);
    assert!(live, "the cache went deaf during the step ({:?}): the refusal proves nothing", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_this_node_are_refused_at_once() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (token, _) = cached_session(&app, "here@example.com").await;
    without_notifications(&app, async {
        app.logout(json!({}), Some(&token)).await.assert(200, "");
        app.me(&token).await.assert(401, "INVALID_TOKEN");
    })
    .await;

    let (token, _) = cached_session(&app, "pw@example.com").await;
    let other = app.login("pw@example.com", PASSWORD).await.str("access_token");
    app.me(&other).await.assert(200, "");
    app.me(&other).await.assert(200, "");
    let change = json!({"current_password": PASSWORD, "new_password": "BrandNew456$"});
    without_notifications(&app, async {
        app.call(Method::POST, "/auth/change-password", Some(&change), Some(&token)).await.assert(200, "");
        app.me(&other).await.assert(401, "INVALID_TOKEN");
        app.me(&token).await.assert(200, "");
    })
    .await;

    let user = app.user_id("pw@example.com").await;
    app.me(&token).await.assert(200, "");
    without_notifications(&app, async {
        assert!(app.db.store().set_active(user, false, app.clock_now()).await.unwrap());
        app.me(&token).await.assert(403, "ACCOUNT_DISABLED");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_listener_stops_the_cache_within_two_seconds_and_is_replaced() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (token, _) = cached_session(&app, "stall@example.com").await;
    let pid = pg(&app).session_cache_listener_pid().expect("listening");
    // The listener stops applying anything, as if its connection had silently stalled: the
    // revocation's notification waits unheard.
    pg(&app).hold_session_cache_listener(true);
    sql(&app, "UPDATE {s}.tb_session SET revoked_at = now(), revoked_reason = 'admin'").await;
    let took = refused_within(&app, &token, 401, "INVALID_TOKEN", Duration::from_millis(2600)).await;
    eprintln!("a revocation behind a stalled listener was refused after {took:?}");
    assert!(!stats(&app).live);
    // Deaf for 5 s: the listener is replaced, and the cache answers again once released.
    wait_for("a new listener", || pg(&app).session_cache_listener_pid().is_some_and(|p| p != pid)).await;
    pg(&app).hold_session_cache_listener(false);
    wait_for("the cache to be live again", || stats(&app).live).await;
    cached_session(&app, "after@example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_another_node_reach_this_nodes_cache() {
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = second_node(&a, &[]).await;

    let (token, _) = cached_session(&a, "two@example.com").await;
    b.logout(json!({}), Some(&token)).await.assert(200, "");
    let took = refused_within(&a, &token, 401, "INVALID_TOKEN", SOON).await;
    eprintln!("logout on node B refused on node A after {took:?}");

    let (token, _) = cached_session(&a, "three@example.com").await;
    let login = b.login("three@example.com", PASSWORD).await;
    let change = json!({"current_password": PASSWORD, "new_password": "BrandNew456$"});
    b.call(Method::POST, "/auth/change-password", Some(&change), Some(&login.str("access_token")))
        .await
        .assert(200, "");
    refused_within(&a, &token, 401, "INVALID_TOKEN", SOON).await;

    let (token, _) = cached_session(&a, "four@example.com").await;
    let four = a.user_id("four@example.com").await;
    assert!(b.db.store().set_active(four, false, b.clock_now()).await.unwrap());
    refused_within(&a, &token, 403, "ACCOUNT_DISABLED", SOON).await;

    let scrape = a.call(Method::GET, "/metrics", None, None).await.text;
    assert!(scrape.contains("fraise_session_cache_lookups_total{outcome=\"hit\"}"), "{scrape}");
    assert!(scrape.contains("fraise_session_cache_live 1"), "{scrape}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_by_hand_in_sql_reach_the_cache() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (token, _) = cached_session(&app, "sql1@example.com").await;
    sql(&app, "UPDATE {s}.tb_session SET revoked_at = now(), revoked_reason = 'admin'").await;
    refused_within(&app, &token, 401, "INVALID_TOKEN", SOON).await;

    let (token, _) = cached_session(&app, "sql2@example.com").await;
    sql(&app, "UPDATE {s}.tb_user SET is_active = FALSE WHERE email = 'sql2@example.com'").await;
    refused_within(&app, &token, 403, "ACCOUNT_DISABLED", SOON).await;

    let (token, _) = cached_session(&app, "sql3@example.com").await;
    sql(&app, "DELETE FROM {s}.tb_session WHERE revoked_at IS NULL").await;
    refused_within(&app, &token, 401, "INVALID_TOKEN", SOON).await;

    let (token, _) = cached_session(&app, "sql5@example.com").await;
    sql(&app, "TRUNCATE {s}.tb_session").await;
    refused_within(&app, &token, 401, "INVALID_TOKEN", SOON).await;

    // Shortening a session's expiry is announced too (a later expiry, a rotation, is not).
    let (token, _) = cached_session(&app, "sql4@example.com").await;
    sql(&app, "UPDATE {s}.tb_session SET expires_at = '2000-01-01' WHERE revoked_at IS NULL").await;
    refused_within(&app, &token, 401, "INVALID_TOKEN", SOON).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_last_active_back_by_hand_reaches_the_cache() {
    let app = TestApp::spawn_with(Backend::Postgres, &[("SESSION_IDLE_TIMEOUT_MINUTES", "30")]).await;
    let (token, _) = cached_session(&app, "idle-sql@example.com").await;
    // An operator ending idle sessions by hand: last_active moves backwards.
    sql(&app, "UPDATE {s}.tb_session SET last_active = '2000-01-01'").await;
    refused_within(&app, &token, 401, "INVALID_TOKEN", SOON).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_whose_triggers_are_disabled_is_not_cached() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (token, _) = cached_session(&app, "restore@example.com").await;
    // As `pg_restore --disable-triggers` would: the schema's changes are no longer announced.
    sql(&app, "ALTER TABLE {s}.tb_user DISABLE TRIGGER tr_tb_user_cache_change").await;
    let start = Instant::now();
    loop {
        let hits = stats(&app).hits;
        app.me(&token).await.assert(200, "");
        if stats(&app).hits == hits {
            break;
        }
        assert!(start.elapsed() < Duration::from_millis(2600), "still cached {:?} after", start.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Unannounced now, yet seen at once: it is read from the database.
    sql(&app, "UPDATE {s}.tb_user SET is_active = FALSE").await;
    app.me(&token).await.assert(403, "ACCOUNT_DISABLED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_empties_the_cache_and_comes_back() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (token, _) = cached_session(&app, "lost@example.com").await;
    let pid = pg(&app).session_cache_listener_pid().expect("listening");
    // Kill the listening connection, then revoke: the revocation's notification cannot reach it.
    sql(&app, &format!("SELECT pg_terminate_backend({pid})")).await;
    sql(&app, "UPDATE {s}.tb_session SET revoked_at = now(), revoked_reason = 'admin'").await;
    refused_within(&app, &token, 401, "INVALID_TOKEN", SOON).await;

    wait_for("a new listener", || pg(&app).session_cache_listener_pid().is_some_and(|p| p != pid)).await;
    wait_for("the cache to be live again", || stats(&app).live).await;
    let (token, _) = cached_session(&app, "back@example.com").await;
    sql(&app, "UPDATE {s}.tb_session SET revoked_at = now(), revoked_reason = 'admin' WHERE revoked_at IS NULL").await;
    refused_within(&app, &token, 401, "INVALID_TOKEN", SOON).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_elsewhere_does_not_end_a_session_cached_here() {
    // A 30-minute idle timeout, and access tokens that outlive the test's 40 minutes.
    let cfg = [("SESSION_IDLE_TIMEOUT_MINUTES", "30"), ("ACCESS_TOKEN_TTL_MINUTES", "120")];
    let a = TestApp::spawn_with(Backend::Postgres, &cfg).await;
    let b = second_node(&a, &cfg).await;
    let (token, reg) = cached_session(&a, "idle@example.com").await;

    // Node B refreshes 25 minutes in (the session was active then); node A's cached copy still
    // says it was last active at the start.
    b.clock.advance(Span::minutes(25));
    b.refresh(&reg.str("refresh_token")).await.assert(200, "");

    // 40 minutes in, A's copy alone would call the session idle for 40 minutes: A must ask the
    // database (15 minutes idle) before refusing, and accept.
    a.clock.advance(Span::minutes(40));
    let hits = stats(&a).hits;
    a.me(&token).await.assert(200, "");
    assert_eq!(stats(&a).hits, hits + 1, "the stale copy was found in the cache, then re-checked");
    a.me(&token).await.assert(200, "");

    // And a session really idle for longer than the timeout (and the one-minute allowance for
    // last_active's lag) is still refused.
    a.clock.advance(Span::minutes(32));
    a.me(&token).await.assert(401, "INVALID_TOKEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_can_be_turned_off() {
    let app = TestApp::spawn_with(Backend::Postgres, &[("SESSION_CACHE_SIZE", "0")]).await;
    let reg = app.signed_up("off@example.com").await;
    let token = reg.str("access_token");
    app.me(&token).await.assert(200, "");
    app.me(&token).await.assert(200, "");
    assert_eq!(stats(&app), SessionCacheStats::default(), "nothing cached, nothing counted");
}
