//! Listing and revoking sessions, the per-user cap, idle and absolute limits.
use std::time::{Duration as StdDuration, Instant};

use axum::http::Method;
use chrono::Duration;
use fraise_auth::boot::Db;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp};

const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

async fn login_with_agent(app: &TestApp, email: &str, agent: &str) -> crate::helpers::Res {
    let body = serde_json::json!({"email": email, "password": PASSWORD});
    app.call_with(Method::POST, "/auth/login", Some(&body), None, &[("user-agent", agent.as_bytes())]).await
}

async fn list(app: &TestApp, token: &str) -> Vec<serde_json::Value> {
    let r = app.call(Method::GET, "/auth/sessions", None, Some(token)).await;
    r.assert(200, "");
    r.body["sessions"].as_array().cloned().unwrap()
}

/// The `last_active` of the user's only session, as `/auth/sessions` shows it to `token`.
async fn last_active(app: &TestApp, token: &str) -> String {
    list(app, token).await[0]["last_active"].as_str().unwrap().to_owned()
}

async fn sessions_are_listed_with_device_and_current_flag(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_up("list@example.com").await;
    let chrome = login_with_agent(&app, "list@example.com", CHROME).await;
    let mut tokens = (chrome.str("access_token"), chrome.str("refresh_token"));
    // is_current survives any number of refreshes.
    for _ in 0..3 {
        app.clock.advance(Duration::seconds(30));
        let r = app.refresh(&tokens.1).await;
        tokens = (r.str("access_token"), r.str("refresh_token"));
    }
    let sessions = list(&app, &tokens.0).await;
    assert_eq!(sessions.len(), 2);
    let current: Vec<_> = sessions.iter().filter(|s| s["is_current"] == true).collect();
    assert_eq!(current.len(), 1);
    let cur = current[0];
    assert!(cur["id"].as_str().unwrap().starts_with("sess_"));
    assert_eq!(cur["device_info"]["browser"], "Chrome");
    assert_eq!(cur["device_info"]["platform"], "Windows 10");
    assert_eq!(cur["device_info"]["user_agent"], CHROME);
    assert_eq!(cur["ip_address"], "203.0.113.7");
    assert!(cur["last_active"].as_str().unwrap() > cur["created_at"].as_str().unwrap(), "refresh moved last_active");
    let other = sessions.iter().find(|s| s["is_current"] == false).unwrap();
    assert!(other["device_info"]["browser"].is_null(), "no User-Agent: null, not a guess");
}

async fn last_active_moves_on_bearer_use_at_most_once_a_minute(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("touch@example.com").await;
    let at = reg.str("access_token");
    let first = last_active(&app, &at).await;
    app.clock.advance(Duration::seconds(30));
    assert_eq!(last_active(&app, &at).await, first, "within a minute: no write");
    app.clock.advance(Duration::seconds(31));
    app.me(&at).await.assert(200, "");
    assert!(last_active(&app, &at).await > first, "after a minute of use: moved");
}

/// The `last_active` write is bookkeeping: a request whose write is held up (another connection
/// holds the session's row on PostgreSQL, the database's write lock on SQLite) is answered anyway,
/// so are the session's next requests, and the write lands once the lock is gone.
async fn a_held_up_last_active_write_does_not_hold_up_the_request(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reg = app.signed_up("held@example.com").await;
    let at = reg.str("access_token");
    let first = last_active(&app, &at).await;
    let (mut blocker, lock) = match &app.db {
        // A write in an open transaction takes SQLite's write lock.
        Db::Sqlite(s) => (
            Blocker::Sqlite(s.pool().acquire().await.unwrap().detach()),
            "UPDATE tb_user SET updated_at = updated_at".to_owned(),
        ),
        Db::Postgres(s) => (
            Blocker::Postgres(s.pool().acquire().await.unwrap().detach()),
            format!("SELECT 1 FROM \"{}\".tb_session FOR UPDATE", s.schema().as_str()),
        ),
    };
    blocker.run("BEGIN").await;
    blocker.run(&lock).await;
    app.clock.advance(Duration::seconds(61));
    for _ in 0..3 {
        let started = Instant::now();
        app.me(&at).await.assert(200, "");
        assert!(started.elapsed() < StdDuration::from_secs(2), "waited {:?} for the write", started.elapsed());
    }
    assert_eq!(last_active(&app, &at).await, first, "the write is still held up");
    blocker.run("ROLLBACK").await;
    let started = Instant::now();
    while last_active(&app, &at).await == first {
        assert!(started.elapsed() < StdDuration::from_secs(10), "the held-up write never landed");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

/// A connection of the test's own, on either backend.
enum Blocker {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Blocker {
    async fn run(&mut self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Blocker::Sqlite(c) => drop(sqlx::query(sql).execute(c).await.unwrap()),
            Blocker::Postgres(c) => drop(sqlx::query(sql).execute(c).await.unwrap()),
        }
    }
}

async fn revoking_another_session_kills_its_tokens_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mine = app.signed_up("rev@example.com").await;
    let other = app.login("rev@example.com", PASSWORD).await;
    let sessions = list(&app, &mine.str("access_token")).await;
    let other_id = sessions.iter().find(|s| s["is_current"] == false).unwrap()["id"].as_str().unwrap().to_owned();
    let current_id = sessions.iter().find(|s| s["is_current"] == true).unwrap()["id"].as_str().unwrap().to_owned();

    let del = |id: &str| format!("/auth/sessions/{id}");
    app.call(Method::DELETE, &del(&current_id), None, Some(&mine.str("access_token")))
        .await
        .assert(403, "CANNOT_REVOKE_CURRENT_SESSION");
    let ok = app.call(Method::DELETE, &del(&other_id), None, Some(&mine.str("access_token"))).await;
    ok.assert(200, "");
    assert_eq!(ok.body["message"], "Session revoked successfully");
    app.me(&other.str("access_token")).await.assert(401, "INVALID_TOKEN");
    app.refresh(&other.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
    // Already revoked, malformed, unknown: all 404.
    for id in [other_id.as_str(), "sess_not-a-uuid", "garbage", "sess_00000000-0000-0000-0000-000000000000"] {
        app.call(Method::DELETE, &del(id), None, Some(&mine.str("access_token")))
            .await
            .assert(404, "SESSION_NOT_FOUND");
    }
    app.me(&mine.str("access_token")).await.assert(200, "");
}

async fn nobody_can_revoke_or_see_another_users_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_up("alice@example.com").await;
    let bob = app.signed_up("bob@example.com").await;
    let alice_sessions = list(&app, &alice.str("access_token")).await;
    let bob_sessions = list(&app, &bob.str("access_token")).await;
    assert_eq!((alice_sessions.len(), bob_sessions.len()), (1, 1));
    let alice_id = alice_sessions[0]["id"].as_str().unwrap();
    app.call(Method::DELETE, &format!("/auth/sessions/{alice_id}"), None, Some(&bob.str("access_token")))
        .await
        .assert(404, "SESSION_NOT_FOUND");
    app.me(&alice.str("access_token")).await.assert(200, "");
}

async fn delete_all_keeps_only_the_current_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mine = app.signed_up("all@example.com").await;
    let a = app.login("all@example.com", PASSWORD).await;
    let b = app.login("all@example.com", PASSWORD).await;
    let r = app.call(Method::DELETE, "/auth/sessions", None, Some(&mine.str("access_token"))).await;
    r.assert(200, "");
    assert_eq!(r.body["revoked_count"], 2);
    for other in [&a, &b] {
        app.me(&other.str("access_token")).await.assert(401, "INVALID_TOKEN");
    }
    let left = list(&app, &mine.str("access_token")).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["is_current"], true);
}

async fn a_login_beyond_the_cap_revokes_the_least_recently_active(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("MAX_SESSIONS_PER_USER", "2")]).await;
    let first = app.signed_up("cap@example.com").await;
    app.clock.advance(Duration::minutes(1));
    let second = app.login("cap@example.com", PASSWORD).await;
    app.clock.advance(Duration::minutes(1));
    // The first session becomes the most recently active one.
    let first = app.refresh(&first.str("refresh_token")).await;
    app.clock.advance(Duration::minutes(1));
    let third = app.login("cap@example.com", PASSWORD).await;
    app.me(&second.str("access_token")).await.assert(401, "INVALID_TOKEN");
    app.me(&first.str("access_token")).await.assert(200, "");
    app.me(&third.str("access_token")).await.assert(200, "");
    assert_eq!(list(&app, &third.str("access_token")).await.len(), 2);
}

async fn an_idle_session_ends(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("SESSION_IDLE_TIMEOUT_MINUTES", "30")]).await;
    let active = app.signed_up("idle@example.com").await;
    let idle = app.login("idle@example.com", PASSWORD).await;
    let mut rt = active.str("refresh_token");
    for _ in 0..3 {
        app.clock.advance(Duration::minutes(20));
        let r = app.refresh(&rt).await;
        r.assert(200, "");
        rt = r.str("refresh_token");
    }
    // 60 minutes later: the active one lives, the idle one is over.
    app.refresh(&idle.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
    app.refresh(&rt).await.assert(200, "");
}

async fn a_session_ends_at_its_absolute_lifetime_however_active(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("SESSION_ABSOLUTE_LIFETIME_HOURS", "1")]).await;
    let reg = app.signed_up("abs@example.com").await;
    let mut r = reg;
    for _ in 0..2 {
        app.clock.advance(Duration::minutes(25));
        r = app.refresh(&r.str("refresh_token")).await;
        r.assert(200, "");
    }
    app.clock.advance(Duration::minutes(11));
    app.me(&r.str("access_token")).await.assert(401, "INVALID_TOKEN");
    app.refresh(&r.str("refresh_token")).await.assert(401, "INVALID_TOKEN");
}

both_backends!(
    sessions_are_listed_with_device_and_current_flag,
    last_active_moves_on_bearer_use_at_most_once_a_minute,
    a_held_up_last_active_write_does_not_hold_up_the_request,
    revoking_another_session_kills_its_tokens_at_once,
    nobody_can_revoke_or_see_another_users_sessions,
    delete_all_keeps_only_the_current_session,
    a_login_beyond_the_cap_revokes_the_least_recently_active,
    an_idle_session_ends,
    a_session_ends_at_its_absolute_lifetime_however_active,
);
