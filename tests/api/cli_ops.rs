//! The operator subcommands, run as processes: doctor (and --report), user, migrate status, smoke.
use serde_json::json;
use sqlx::Connection as _;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, SECRET, TestApp, cli, cli_with, command, pg_url};

both_backends!(
    doctor_is_green_on_a_healthy_setup,
    doctor_names_each_problem_with_its_fix,
    doctor_report_shows_secrets_only_as_set,
    user_commands_manage_accounts_the_api_then_sees,
    migrate_status_lists_applied_and_pending,
    smoke_passes_against_a_server_and_fails_clearly_against_a_broken_one,
);

async fn doctor_is_green_on_a_healthy_setup(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ok, out) = cli(&app, &["doctor"]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    assert!(lines.iter().all(|l| l.starts_with("✅ ")), "{out}");
    let version = if backend == Backend::Postgres { "PostgreSQL 1" } else { "SQLite 3." };
    assert!(out.contains(version) && out.contains("rolled back") && out.contains("one hash in"), "{out}");
}

/// Runs SQL inside `app`'s own database.
async fn exec(app: &TestApp, backend: Backend, sql: &str) {
    match backend {
        Backend::Sqlite => {
            let path = app.data_dir.join("fraise-auth.db");
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.replace("{s}.", ""))).execute(&mut c).await.unwrap();
        }
        Backend::Postgres => {
            let fraise_auth::config::Database::Postgres { schema, .. } = &app.config.database else { unreachable!() };
            let mut c = sqlx::PgConnection::connect(&pg_url()).await.unwrap();
            let sql = sql.replace("{s}", &format!("\"{schema}\""));
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
        }
    }
}

fn line<'a>(out: &'a str, check: &str) -> &'a str {
    out.lines().find(|l| l.contains(&format!(" {check}: "))).unwrap_or_else(|| panic!("no {check} line in {out}"))
}

async fn doctor_names_each_problem_with_its_fix(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Secret missing.
    let (ok, out) = cli_with(&app, &["doctor"], &[("JWT_SECRET_KEY", "")], None);
    assert!(!ok);
    let l = line(&out, "JWT secret");
    assert!(l.starts_with("❌") && l.contains("JWT_SECRET_KEY="), "{l}");
    // A secret that is long but not random.
    let (ok, out) = cli_with(&app, &["doctor"], &[("JWT_SECRET_KEY", &"ab".repeat(20))], None);
    assert!(!ok && line(&out, "JWT secret").contains("not random"), "{out}");

    // Database down.
    let down: &[(&str, &str)] = match backend {
        Backend::Postgres => {
            &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere"), ("DATABASE_POOL_TIMEOUT_SECONDS", "1")]
        }
        Backend::Sqlite => &[("DATA_DIR", "/nonexistent/fraise-doctor")],
    };
    let (ok, out) = cli_with(&app, &["doctor"], down, None);
    assert!(!ok);
    assert!(line(&out, "database").starts_with("❌"), "{out}");
    assert!(line(&out, "migrations").contains("not checked"), "{out}");

    // Tables missing: the read/write check fails and says which step.
    exec(&app, backend, "DROP TABLE {s}.tb_auth_audit").await;
    let (ok, out) = cli(&app, &["doctor"]);
    assert!(!ok);
    let l = line(&out, "read/write");
    assert!(l.starts_with("❌") && l.contains("tb_auth_audit") && l.contains("fraise-auth migrate"), "{l}");
    assert!(line(&out, "database").starts_with("✅"), "{out}");

    // Migrations pending.
    exec(&app, backend, "DELETE FROM {s}._sqlx_migrations WHERE version = 3").await;
    let (ok, out) = cli(&app, &["doctor"]);
    assert!(!ok);
    assert!(line(&out, "migrations").starts_with("❌") && out.contains("Fix: fraise-auth migrate"), "{out}");

    // Hashing too slow for logins.
    let (ok, out) = cli_with(&app, &["doctor"], &[("ARGON2_MEMORY_COST", "1048576"), ("ARGON2_TIME_COST", "3")], None);
    assert!(!ok);
    assert!(line(&out, "password hashing").starts_with("❌") && out.contains("fraise-auth bench"), "{out}");

    // Redis configured but unreachable.
    let (ok, out) = cli_with(&app, &["doctor"], &[("REDIS_URL", "redis://127.0.0.1:1/0")], None);
    assert!(!ok && line(&out, "redis").starts_with("❌"), "{out}");

    // An invalid configuration is one clear line.
    let (ok, out) = cli_with(&app, &["doctor"], &[("PORT", "http")], None);
    assert!(!ok && out.starts_with("❌ configuration:") && out.contains("PORT"), "{out}");
}

async fn doctor_report_shows_secrets_only_as_set(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let smtp = "smtp://mailer:hunter2@127.0.0.1:2525?tls=none";
    let (ok, out) = cli_with(&app, &["doctor", "--report"], &[("SMTP_URL", smtp)], None);
    assert!(ok, "{out}");
    assert!(!out.contains(SECRET) && !out.contains("hunter2"), "{out}");
    assert!(out.contains("- JWT_SECRET_KEY: SET") && out.contains("- SMTP_URL: SET"), "{out}");
    assert!(out.contains("- REDIS_URL: NOT SET") && out.contains("- PORT: 8000 (default)"), "{out}");
    assert!(out.contains("fraise-auth version: ") && out.contains("Operating system: "), "{out}");
    let db = if backend == Backend::Postgres { "- Database: PostgreSQL" } else { "- Database: SQLite" };
    assert!(out.contains(db), "{out}");
    let url = if backend == Backend::Postgres { "- DATABASE_URL: SET" } else { "- DATABASE_URL: NOT SET" };
    assert!(out.contains(url), "{out}");
}

async fn user_commands_manage_accounts_the_api_then_sees(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = "ops@example.com";
    let (ok, out) = cli_with(
        &app,
        &["user", "create", email, "--name", "Ops", "--roles", "admin, editor", "--verified", "--password-stdin"],
        &[],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(ok, "{out}");
    let login = app.login(email, PASSWORD).await;
    login.assert(200, "");
    assert_eq!(login.body["user"]["roles"], json!(["admin", "editor"]));
    assert_eq!(login.body["user"]["email_verified"], true);

    let (ok, out) = cli_with(&app, &["user", "create", email, "--password-stdin"], &[], Some(&format!("{PASSWORD}\n")));
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = cli_with(&app, &["user", "create", "weak@example.com", "--password-stdin"], &[], Some("short\n"));
    assert!(!ok && out.contains("Password does not meet"), "{out}");
    let (ok, out) = cli(&app, &["user", "create", "gen@example.com"]);
    assert!(ok, "{out}");
    let generated = out.lines().find_map(|l| l.strip_prefix("password: ")).unwrap_or_else(|| panic!("{out}"));
    app.login("gen@example.com", generated).await.assert(200, "");

    let (ok, out) = cli(&app, &["user", "set-roles", email, "auditor"]);
    assert!(ok && out.contains("[auditor]"), "{out}");
    let (ok, out) = cli(&app, &["user", "set-roles", email, "bad role"]);
    assert!(!ok, "{out}");
    let (ok, out) = cli(&app, &["user", "list", "--json"]);
    assert!(ok, "{out}");
    let rows: Vec<serde_json::Value> = out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[1]["email"], email);
    assert_eq!(rows[1]["roles"], json!(["auditor"]));

    let token = login.str("access_token");
    let (ok, out) = cli(&app, &["user", "disable", email]);
    assert!(ok, "{out}");
    app.me(&token).await.assert(403, "ACCOUNT_DISABLED");
    app.login(email, PASSWORD).await.assert(403, "ACCOUNT_DISABLED");
    let (ok, out) = cli(&app, &["user", "enable", email]);
    assert!(ok, "{out}");
    app.login(email, PASSWORD).await.assert(200, "");
    app.me(&token).await.assert(401, "INVALID_TOKEN");
    let (ok, out) = cli(&app, &["user", "disable", "nobody@example.com"]);
    assert!(!ok && out.contains("no user with email"), "{out}");
}

async fn migrate_status_lists_applied_and_pending(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ok, out) = cli(&app, &["migrate", "status"]);
    assert!(ok, "{out}");
    assert_eq!(out.matches("applied").count(), crate::helpers::migration_count(), "{out}");
    exec(&app, backend, "DELETE FROM {s}._sqlx_migrations WHERE version = 3").await;
    let (ok, out) = cli(&app, &["migrate", "status"]);
    assert!(!ok, "{out}");
    assert!(out.contains("PENDING    3 login failures") && out.contains("1 pending"), "{out}");
}

/// A `fraise-auth serve` process, killed when dropped.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap()
}

async fn serve(app: &TestApp, env: &[(&str, &str)], wait_ready: bool) -> (Server, String) {
    serve_at(app, free_port(), env, wait_ready).await
}

/// A ready server on `port`.
pub async fn serve_on(app: &TestApp, port: u16, env: &[(&str, &str)]) -> Server {
    serve_at(app, port, env, true).await.0
}

async fn serve_at(app: &TestApp, port: u16, env: &[(&str, &str)], wait_ready: bool) -> (Server, String) {
    let mut cmd = command(app, &["serve", "--port", &port.to_string()], env);
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let server = Server(cmd.spawn().unwrap());
    let url = format!("http://127.0.0.1:{port}");
    let probe = if wait_ready { "/health/ready" } else { "/health/live" };
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(format!("{url}{probe}")).await
            && r.status().is_success()
        {
            return (server, url);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server did not answer {probe}");
}

async fn smoke_passes_against_a_server_and_fails_clearly_against_a_broken_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_server, url) = serve(&app, &[], true).await;
    let (ok, out) = cli(&app, &["smoke", "--url", &url]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("✅")).count(), 7, "{out}");
    assert!(out.contains("replayed refresh token is refused") && out.contains("all 7 steps passed"), "{out}");

    // A server whose database is gone: the first step fails and says what came back.
    if backend == Backend::Postgres {
        let broken = [
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere"),
            ("DATABASE_POOL_TIMEOUT_SECONDS", "1"),
            ("AUTO_MIGRATE", "false"),
        ];
        let (_broken, url) = serve(&app, &broken, false).await;
        let (ok, out) = cli(&app, &["smoke", "--url", &url]);
        assert!(!ok, "{out}");
        assert!(out.contains("❌ register: expected HTTP 201, got 503"), "{out}");
    }
    // Nothing listening at all.
    let (ok, out) = cli(&app, &["smoke", "--url", &format!("http://127.0.0.1:{}", free_port())]);
    assert!(!ok && out.contains("❌") && out.contains("smoke test failed"), "{out}");
}

/// With EdDSA the doctor also checks the signing keys: ❌ with the command to run when there are
/// none (it never generates one), ✅ naming the kid once `keys generate` made one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_signing_keys_of_asymmetric_algorithms() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let env = [("JWT_ALGORITHM", "EdDSA")];
    let (ok, out) = cli_with(&app, &["doctor"], &env, None);
    assert!(!ok && line(&out, "signing keys").contains("fraise-auth keys generate"), "{out}");
    let (ok, out) = cli_with(&app, &["keys", "generate"], &env, None);
    assert!(ok, "{out}");
    let (ok, out) = cli_with(&app, &["doctor"], &env, None);
    assert!(ok, "{out}");
    assert!(line(&out, "signing keys").starts_with("✅ signing keys: EdDSA: signing kid "), "{out}");
}

/// At debug level (SQL statements included) the log shows no password, token or secret, and
/// every line of a request carries its request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_carry_request_ids_and_no_secret() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let log = app.data_dir.join("server.log");
    let port = free_port();
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd =
        command(&app, &["serve", "--port", &port.to_string()], &[("LOG_LEVEL", "debug"), ("LOG_FORMAT", "json")]);
    cmd.stdout(std::process::Stdio::null()).stderr(file);
    let server = Server(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/health/ready")).await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| http.post(format!("{base}/auth{path}")).json(&body).send();
    let reg: serde_json::Value = post("/register", json!({"email": "log@example.com", "password": PASSWORD}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = reg["refresh_token"].as_str().unwrap().to_owned();
    let access = reg["access_token"].as_str().unwrap().to_owned();
    post("/login", json!({"email": "log@example.com", "password": "WrongPass1!"})).await.unwrap();
    let rotated: serde_json::Value =
        post("/refresh", json!({"refresh_token": refresh})).await.unwrap().json().await.unwrap();
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    post("/forgot-password", json!({"email": "log@example.com"})).await.unwrap();
    let reset = app.outbox_tokens("/reset-password", 1).await.remove(0);
    post("/reset-password", json!({"token": reset, "new_password": "BrandNew789!"})).await.unwrap();
    drop(server);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("SELECT") || text.contains("UPDATE"), "SQL statements are logged at debug");
    for secret in [PASSWORD, "WrongPass1!", "BrandNew789!", SECRET, &refresh, &refresh2, &access, &reset] {
        assert!(!text.contains(secret), "the log contains a secret ({}...)", &secret[..6]);
    }
    // Every event logged inside a request's span names the request id.
    let in_request: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["span"]["name"] == "request")
        .collect();
    assert!(in_request.len() >= 10, "{} request lines", in_request.len());
    assert!(in_request.iter().all(|v| v["span"]["id"].as_str().is_some_and(|id| id.len() == 36)), "{text}");
}

/// A command whose reader has gone (`fraise-auth user list | head -1` once `head` exits) ends
/// quietly with status 0, as `head` meant, instead of panicking with "failed printing to stdout".
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fraise-auth"))
        .arg("secret")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
