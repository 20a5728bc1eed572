//! Races: 1,000 concurrent refreshes over 100 sessions, and one email registered many times at
//! once. What is checked is what the database holds afterwards, not only what the clients saw.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use fraise_auth::boot::Db;
use serde_json::json;
use sqlx::{AssertSqlSafe, Row as _};

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp};

both_backends!(
    a_thousand_concurrent_refreshes_over_a_hundred_sessions_fork_no_chain,
    one_email_registered_fifty_times_at_once_gives_one_201_and_49_409
);

const SESSIONS: usize = 100;
const PER_SESSION: usize = 10;

/// Per session row: (session id, refresh_counter, revoked, `token_refresh` audit rows).
async fn chains(app: &TestApp) -> Vec<(String, i64, bool, i64)> {
    let sql = "SELECT CAST(ss.pk_session AS TEXT) AS id, ss.refresh_counter, ss.revoked_at IS NOT NULL AS revoked, \
               (SELECT COUNT(*) FROM {s}tb_auth_audit a WHERE a.event_type = 'token_refresh' \
                AND a.fk_session = ss.pk_session) AS rotations FROM {s}tb_session ss";
    let rows = match &app.db {
        Db::Sqlite(s) => sqlx::query(AssertSqlSafe(sql.replace("{s}", ""))).fetch_all(s.pool()).await.unwrap(),
        Db::Postgres(s) => {
            let prefix = format!("\"{}\".", s.schema().as_str());
            let pg = sqlx::query(AssertSqlSafe(sql.replace("{s}", &prefix))).fetch_all(s.pool()).await.unwrap();
            return pg
                .iter()
                .map(|r| (r.get("id"), r.get("refresh_counter"), r.get("revoked"), r.get("rotations")))
                .collect();
        }
    };
    rows.iter().map(|r| (r.get("id"), r.get("refresh_counter"), r.get("revoked"), r.get("rotations"))).collect()
}

async fn a_thousand_concurrent_refreshes_over_a_hundred_sessions_fork_no_chain(backend: Backend) {
    let app = Arc::new(TestApp::spawn_with(backend, &[("DATABASE_POOL_MAX_SIZE", "10")]).await);
    // 20 users with 5 sessions each (a registration and four logins).
    let mut tokens = Vec::with_capacity(SESSIONS);
    for u in 0..SESSIONS / 5 {
        let email = format!("race{u}@example.com");
        tokens.push(app.signed_up(&email).await.str("refresh_token"));
        for _ in 0..4 {
            let r = app.login(&email, PASSWORD).await;
            r.assert(200, "");
            tokens.push(r.str("refresh_token"));
        }
    }
    assert_eq!(chains(&app).await.len(), SESSIONS);

    // Every session's token presented ten times at once: 1,000 requests in flight together.
    let start = Arc::new(tokio::sync::Barrier::new(SESSIONS * PER_SESSION));
    let mut tasks = Vec::new();
    for (i, rt) in tokens.iter().enumerate() {
        for _ in 0..PER_SESSION {
            let (app, rt, start) = (app.clone(), rt.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                (i, app.refresh(&rt).await)
            }));
        }
    }
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let mut successors: Vec<HashSet<String>> = vec![HashSet::new(); SESSIONS];
    for t in tasks {
        let (i, r) = t.await.unwrap();
        *statuses.entry(r.status.as_u16()).or_default() += 1;
        if r.status.is_success() {
            successors[i].insert(r.str("refresh_token"));
        }
    }
    let server_errors: usize = statuses.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum();
    assert_eq!(server_errors, 0, "no 5xx: {statuses:?}");
    // Every one is inside the grace window of the one winner, so every one succeeds.
    assert_eq!(statuses.get(&200), Some(&(SESSIONS * PER_SESSION)), "{statuses:?}");
    for (i, s) in successors.iter().enumerate() {
        assert_eq!(s.len(), 1, "session {i}: every success names the same successor");
    }

    // The database: each chain moved exactly once, one audited rotation, nothing revoked.
    let rows = chains(&app).await;
    assert_eq!(rows.len(), SESSIONS, "no session was added or lost");
    for (id, counter, revoked, rotations) in &rows {
        assert_eq!((*counter, *revoked, *rotations), (1, false, 1), "session {id}: forked or revoked chain");
    }

    // Every session is still usable: its successor rotates and its access token works.
    for s in successors {
        let next = s.into_iter().next().unwrap();
        let r = app.refresh(&next).await;
        r.assert(200, "");
        app.me(&r.str("access_token")).await.assert(200, "");
    }
    assert!(chains(&app).await.iter().all(|(_, c, revoked, n)| *c == 2 && !revoked && *n == 2));
}

async fn one_email_registered_fifty_times_at_once_gives_one_201_and_49_409(backend: Backend) {
    let app = Arc::new(TestApp::spawn(backend).await);
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (app, start) = (app.clone(), start.clone());
            // The same address in different cases: unique case-insensitively.
            let email = if i % 2 == 0 { "Same@Example.com" } else { "same@example.com" };
            tokio::spawn(async move {
                start.wait().await;
                app.post("/auth/register", json!({"email": email, "password": PASSWORD})).await
            })
        })
        .collect();
    let mut by_status: HashMap<(u16, String), usize> = HashMap::new();
    for t in tasks {
        let r = t.await.unwrap();
        *by_status.entry((r.status.as_u16(), r.code().to_owned())).or_default() += 1;
    }
    let expected: HashMap<(u16, String), usize> =
        [((201, String::new()), 1), ((409, "EMAIL_ALREADY_EXISTS".to_owned()), 49)].into_iter().collect();
    assert_eq!(by_status, expected);
    app.login("same@example.com", PASSWORD).await.assert(200, "");
}
