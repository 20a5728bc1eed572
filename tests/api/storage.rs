//! What the database itself guarantees, and the guide's own SQL diagnostics run against it.
use fraise_auth::boot::Db;
use sqlx::{AssertSqlSafe, Connection as _, Row as _};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, ensure_pg_database, pg_url, with_database};

/// Rows of `tb_auth_audit` with `event_type = kind`.
pub async fn count_audit(app: &TestApp, kind: &str) -> i64 {
    match &app.db {
        Db::Sqlite(s) => sqlx::query_scalar("SELECT COUNT(*) FROM tb_auth_audit WHERE event_type = ?1")
            .bind(kind)
            .fetch_one(s.pool())
            .await
            .unwrap(),
        Db::Postgres(s) => sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM \"{}\".tb_auth_audit WHERE event_type = $1",
            s.schema().as_str()
        )))
        .bind(kind)
        .fetch_one(s.pool())
        .await
        .unwrap(),
    }
}

async fn email_uniqueness_is_case_insensitive_in_the_database_itself(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_up("case@example.com").await;
    let now = "2026-01-01T00:00:00.000Z";
    let err = match &app.db {
        Db::Sqlite(s) => sqlx::query(
            "INSERT INTO tb_user (pk_user, email, password_hash, created_at, updated_at) VALUES (?1, 'CASE@Example.com', 'x', ?2, ?2)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(now)
        .execute(s.pool())
        .await
        .err(),
        Db::Postgres(s) => sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{}\".tb_user (pk_user, email, password_hash, created_at, updated_at) VALUES ($1, 'CASE@Example.com', 'x', now(), now())",
            s.schema().as_str()
        )))
        .bind(uuid::Uuid::new_v4())
        .execute(s.pool())
        .await
        .err(),
    };
    let err = err.expect("the database must refuse a case-variant duplicate");
    assert!(err.as_database_error().is_some_and(|d| d.is_unique_violation()), "{err}");
}

async fn migrate_twice_is_a_no_op(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let again = app.db.migrate().await.unwrap();
    assert_eq!(again.applied, 0);
    assert!(again.known >= 1);
    assert!(app.auth.store().migrations_current().await.unwrap());
}

async fn the_guides_session_query_runs_unchanged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_up("guide@example.com").await;
    let id = app.user_id("guide@example.com").await;
    let guide_sql =
        "SELECT pk_session, token_family, created_at, last_active, revoked_at FROM tb_session WHERE fk_user = ";
    let rows = match &app.db {
        Db::Sqlite(s) => sqlx::query(AssertSqlSafe(format!("{guide_sql}?1")))
            .bind(id.to_string())
            .fetch_all(s.pool())
            .await
            .unwrap()
            .len(),
        Db::Postgres(s) => {
            // The guide's query is unqualified: run it the way an operator would, with the
            // search_path on the service's schema.
            let mut conn = s.pool().acquire().await.unwrap().detach();
            sqlx::query(AssertSqlSafe(format!("SET search_path TO \"{}\"", s.schema().as_str())))
                .execute(&mut conn)
                .await
                .unwrap();
            let rows =
                sqlx::query(AssertSqlSafe(format!("{guide_sql}$1"))).bind(id).fetch_all(&mut conn).await.unwrap();
            let revoked: Option<chrono::DateTime<chrono::Utc>> = rows[0].try_get("revoked_at").unwrap();
            assert!(revoked.is_none());
            rows.len()
        }
    };
    assert_eq!(rows, 1);
}

/// The guide's table check filters on `schemaname='public'`, so this one migrates the public
/// schema of a database of its own and runs the query exactly as printed.
#[tokio::test]
async fn the_guides_table_check_lists_the_tables_on_postgres() {
    let url = with_database(&pg_url(), "fraise_guide_check");
    ensure_pg_database(&url).await;
    // The database outlives the run: start from an empty public schema, so migrations applied by
    // another build (a branch with more of them, or an edited one) cannot fail this one.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;").execute(&mut conn).await.unwrap();
    let store = fraise_store::PgStore::connect_lazy(
        &url,
        fraise_store::SchemaName::parse("public").unwrap(),
        fraise_store::PgPoolSettings::default(),
    )
    .unwrap();
    store.migrate().await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename LIKE 'tb_%';")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    for t in ["tb_user", "tb_session", "tb_password_reset", "tb_auth_audit"] {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
}

both_backends!(
    email_uniqueness_is_case_insensitive_in_the_database_itself,
    migrate_twice_is_a_no_op,
    the_guides_session_query_runs_unchanged,
);
