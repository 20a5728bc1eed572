//! Group commit of refresh rotations on PostgreSQL (`postgres/batch.rs`): concurrent refreshes
//! share one statement and one commit, a row another transaction holds delays its batch by at
//! most the lock timeout, a batch that fails hands each rotation back to run alone (so one bad row fails no
//! other), and a killed worker connection is replaced. PostgreSQL only: SQLite runs each
//! rotation alone.
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use fraise_core::store::{RotationBatchStats, StoreHealth as _};
use serde_json::json;
use sqlx::Connection as _;
use tokio::task::JoinHandle;

use crate::cache::{pg, schema, sql};
use crate::helpers::{Backend, Res, TestApp, pg_url};

fn batches(app: &TestApp) -> RotationBatchStats {
    pg(app).rotation_batches().expect("PostgreSQL batches rotations")
}

fn since(before: RotationBatchStats, app: &TestApp) -> RotationBatchStats {
    let now = batches(app);
    RotationBatchStats {
        statements: now.statements - before.statements,
        rotations: now.rotations - before.rotations,
        handed_back: now.handed_back - before.handed_back,
        busy_micros: now.busy_micros - before.busy_micros,
    }
}

async fn refresh_as(app: &TestApp, token: &str, user_agent: &str) -> Res {
    let body = json!({"refresh_token": token});
    app.call_with(Method::POST, "/auth/refresh", Some(&body), None, &[("user-agent", user_agent.as_bytes())]).await
}

/// Signs up `n` users named `{prefix}{i}` and returns their refresh tokens.
async fn chains(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(app.signed_up(&format!("{prefix}{i}@example.com")).await.str("refresh_token"));
    }
    out
}

/// Occupies the worker: an operator's transaction takes `email`'s session rows (`FOR UPDATE`,
/// until [`release`]), then `token` (one of those sessions) is refreshed, and its batch waits on
/// the row for the lock timeout while the refreshes sent meanwhile queue up. Returns the
/// operator's connection and the waiting refresh.
async fn busy_worker(app: &Arc<TestApp>, email: &str, token: String) -> (sqlx::PgConnection, JoinHandle<Res>) {
    let user = app.user_id(email).await;
    let mut conn = sqlx::PgConnection::connect(&pg_url()).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut conn).await.unwrap();
    let q = format!("SELECT 1 FROM \"{}\".tb_session WHERE fk_user = $1 FOR UPDATE", schema(app));
    sqlx::query(sqlx::AssertSqlSafe(q)).bind(user).execute(&mut conn).await.unwrap();
    let refresh = tokio::spawn({
        let app = app.clone();
        async move { app.refresh(&token).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    (conn, refresh)
}

async fn release(mut conn: sqlx::PgConnection) {
    sqlx::raw_sql("COMMIT").execute(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_row_costs_its_batch_at_most_the_lock_timeout_and_the_queue_goes_on() {
    let app = Arc::new(TestApp::spawn(Backend::Postgres).await);
    let held = app.signed_up("held@example.com").await.str("refresh_token");
    let others = chains(&app, "free", 12).await;
    let before = batches(&app);

    // The held refresh's batch waits on its row: the others queue behind it meanwhile.
    let (holder, held_refresh) = busy_worker(&app, "held@example.com", held).await;
    let tasks: Vec<_> = others
        .iter()
        .map(|t| {
            let (app, t) = (app.clone(), t.clone());
            tokio::spawn(async move { app.refresh(&t).await })
        })
        .collect();
    // They all answer while the row is still held: the batch gave up on it after its 200 ms
    // lock_timeout (well before the worker's 5 s statement timeout) and handed it back, and the
    // others went on without it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    for t in tasks {
        let r = tokio::time::timeout_at(deadline, t).await.expect("not stuck behind the held row").unwrap();
        r.assert(200, "");
        app.refresh(&r.str("refresh_token")).await.assert(200, "");
    }
    assert!(!held_refresh.is_finished(), "the held refresh waits for its row");
    release(holder).await;
    let r = held_refresh.await.unwrap();
    r.assert(200, "");
    app.refresh(&r.str("refresh_token")).await.assert(200, "");

    let d = since(before, &app);
    // 1 + 12 first rotations and 1 + 12 follow-ups, each carried by a batch once, plus the held
    // one again alone (not counted: it ran on the shared pool).
    assert_eq!(d.rotations, 26, "{d:?}");
    assert_eq!(d.handed_back, 1, "only the held rotation ran alone: {d:?}");
    assert!(d.statements < d.rotations, "the twelve queued refreshes shared statements: {d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_hands_each_rotation_back_so_one_bad_row_fails_no_other() {
    let app = Arc::new(TestApp::spawn(Backend::Postgres).await);
    app.signed_up("gate@example.com").await;
    let gate = app.login("gate@example.com", crate::helpers::PASSWORD).await.str("refresh_token");
    let good = chains(&app, "good", 5).await;
    let bad = app.signed_up("bad@example.com").await.str("refresh_token");
    // The audit row of one client cannot be written: a batch holding its rotation fails whole.
    sql(
        &app,
        "ALTER TABLE {s}.tb_auth_audit ADD CONSTRAINT no_bad_agent CHECK (user_agent IS DISTINCT FROM 'bad-agent') \
         NOT VALID",
    )
    .await;
    let before = batches(&app);

    // A held row keeps the worker busy so that the bad and good refreshes queue up together.
    let (holder, gate_refresh) = busy_worker(&app, "gate@example.com", gate).await;
    let mut tasks = Vec::new();
    for (token, agent) in good.iter().map(|t| (t, "good-agent")).chain([(&bad, "bad-agent")]) {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(async move { refresh_as(&app, &token, agent).await }));
    }
    for t in tasks {
        t.await.unwrap().assert(200, "");
    }
    release(holder).await;
    gate_refresh.await.unwrap().assert(200, "");

    let d = since(before, &app);
    assert_eq!(d.handed_back, 7, "the gate, then the six of the failed batch: {d:?}");
    let count = |agent: &'static str| {
        let app = app.clone();
        async move {
            let q = format!(
                "SELECT COUNT(*) FROM \"{}\".tb_auth_audit WHERE event_type = 'token_refresh' AND user_agent = $1",
                schema(&app)
            );
            let pool = pg(&app).pool().clone();
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(q)).bind(agent).fetch_one(&pool).await.unwrap()
        }
    };
    assert_eq!(count("good-agent").await, 5, "each good rotation, run alone, kept its audit row");
    assert_eq!(count("bad-agent").await, 0, "the bad one rotated without it (a logged gap)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_connection_is_replaced() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let mut token = app.signed_up("kill@example.com").await.str("refresh_token");
    for _ in 0..3 {
        let before = batches(&app);
        let r = app.refresh(&token).await;
        r.assert(200, "");
        token = r.str("refresh_token");
        let d = since(before, &app);
        assert_eq!((d.statements, d.rotations, d.handed_back), (1, 1, 0), "run by the worker: {d:?}");
        // A statement and its commit take a round trip to PostgreSQL: never 0 µs.
        assert!(d.busy_micros > 0, "the worker's busy time counts the batch: {d:?}");
        // The worker's connection: the one that ran this schema's rotation statement.
        let mut c = sqlx::PgConnection::connect(&pg_url()).await.unwrap();
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND query LIKE 'WITH inp AS (SELECT * FROM unnest%' AND query LIKE $1",
        )
        .bind(format!("%\"{}\".tb_session%", schema(&app)))
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert_eq!(killed, [true]);
        // Idle for over a second: the worker proves its connection alive before the next batch
        // (as the shared pool does), finds it dead and reconnects; nothing is handed back.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
}
