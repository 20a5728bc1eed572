//! The `tenant` and `migrate --all-tenants` subcommands, run as processes.
use sqlx::Connection as _;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, cli};

both_backends!(migrate_all_tenants_reports_each_and_continues_past_a_failure, tenant_commands_validate_and_confirm);

/// Runs `statements` inside tenant `t`'s database.
async fn in_tenant(app: &TestApp, backend: Backend, t: &str, statements: &[&str]) {
    match backend {
        Backend::Sqlite => {
            let path = app.data_dir.join("tenants").join(format!("{t}.db"));
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            for s in statements {
                sqlx::query(sqlx::AssertSqlSafe(s.replace("{s}.", ""))).execute(&mut c).await.unwrap();
            }
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&crate::helpers::pg_url()).await.unwrap();
            for s in statements {
                let sql = s.replace("{s}", &format!("\"{t}\"")).replace("X'00'", "'\\x00'::bytea");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
            }
        }
    }
}

async fn migrate_all_tenants_reports_each_and_continues_past_a_failure(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (a, b, c) = (app.create_tenant("a").await, app.create_tenant("b").await, app.create_tenant("c").await);
    let (ok, out) = cli(&app, &["migrate", "--all-tenants"]);
    assert!(ok, "{out}");
    let n = crate::helpers::migration_count();
    for t in [&a, &b, &c] {
        assert!(out.contains(&format!("✅ {t}: up to date ({n} migration(s)")), "{out}");
    }
    assert!(out.contains("migrated 3 of 3 tenant(s)"), "{out}");

    // b's recorded migration no longer matches the binary's; c is one migration behind.
    in_tenant(&app, backend, &b, &["UPDATE {s}._sqlx_migrations SET checksum = X'00' WHERE version = 1"]).await;
    in_tenant(
        &app,
        backend,
        &c,
        &["DELETE FROM {s}._sqlx_migrations WHERE version = 3", "DROP TABLE {s}.tb_login_failure"],
    )
    .await;
    let (ok, out) = cli(&app, &["migrate", "--all-tenants"]);
    assert!(!ok, "a failing tenant makes the run fail: {out}");
    assert!(out.contains(&format!("✅ {a}: up to date")), "{out}");
    assert!(out.contains(&format!("❌ {b}:")), "{out}");
    assert!(out.contains(&format!("✅ {c}: applied 1 of {n} migration(s)")), "the run went on past {b}: {out}");
    assert!(out.contains("migrated 2 of 3 tenant(s)") && out.contains(&format!("FAILED: {b}")), "{out}");
    assert!(out.contains("1 tenant(s) failed to migrate"), "{out}");
}

async fn tenant_commands_validate_and_confirm(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let t = format!("ft_{}_cli", std::process::id());
    let (ok, out) = cli(&app, &["tenant", "create", &t, "bad'name"]);
    assert!(!ok && out.contains("tenant name \"bad'name\""), "nothing runs when one name is bad: {out}");
    let (_, out) = cli(&app, &["tenant", "list"]);
    assert!(!out.contains(&t), "{out}");

    let (ok, out) = cli(&app, &["tenant", "create", &t]);
    let n = crate::helpers::migration_count();
    assert!(ok && out.contains(&format!("✅ {t}: applied {n} of {n}")), "{out}");
    let (ok, out) = cli(&app, &["tenant", "create", &t]);
    assert!(!ok && out.contains("already exists"), "{out}");
    for reserved in ["public", "pg_x", "information_schema"] {
        let (ok, out) = cli(&app, &["tenant", "create", reserved]);
        assert!(!ok && out.contains("reserved"), "{out}");
    }
    let (ok, out) = cli(&app, &["tenant", "list"]);
    assert!(ok && out.lines().any(|l| l == t), "{out}");

    let (ok, out) = cli(&app, &["tenant", "drop", &t]);
    assert!(!ok && out.contains("--yes"), "drop refuses without --yes: {out}");
    assert!(cli(&app, &["tenant", "list"]).1.lines().any(|l| l == t), "still there");
    let (ok, out) = cli(&app, &["tenant", "drop", &t, "--yes"]);
    assert!(ok, "{out}");
    assert!(!cli(&app, &["tenant", "list"]).1.lines().any(|l| l == t), "gone");
    let (ok, out) = cli(&app, &["tenant", "drop", &t, "--yes"]);
    assert!(!ok && out.contains("no tenant"), "{out}");
}
