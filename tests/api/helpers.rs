//! `TestApp`: one fresh application per test, on SQLite (a temp file) or PostgreSQL (a schema of
//! its own), driven through the router without a socket. Time is a `ManualClock`.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::routing::get;
use chrono::{DateTime, Utc};
use fraise_auth::boot::{self, Db};
use fraise_auth::config::{Config, Sources};
use fraise_core::store::StoreHealth as _;
use fraise_core::tenant::{TenantName, Tenants};
use fraise_core::{AuthService, ManualClock};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sqlx::Connection as _;
use tower::ServiceExt as _;

pub const PASSWORD: &str = "TestPass123!";
pub const SECRET: &str = "test-secret-0123456789-test-secret-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed `async fn name(backend: Backend)` once per backend, as separate tests.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

pub fn pg_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/fraise_test".into())
}

/// Swaps the database name of a PostgreSQL URL.
pub fn with_database(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).unwrap_or_else(|e| panic!("TEST_DATABASE_URL is not a URL: {e}"));
    u.set_path(&format!("/{db}"));
    u.to_string()
}

static PG_READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Makes sure the test database exists and drops schemas left by earlier, finished test
/// processes. Fails
/// (never skips) when PostgreSQL is unreachable: a backend that is not tested is not supported.
pub async fn ensure_pg_database(url: &str) {
    let name = url::Url::parse(url).map(|u| u.path().trim_start_matches('/').to_owned()).unwrap_or_default();
    let admin = with_database(url, "postgres");
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is unreachable at {admin}: {e}. Start it (see README) or set TEST_DATABASE_URL.")
    });
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if exists.is_none() {
        // Another test process may win the race; "already exists" is fine.
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut conn).await;
    }
    let _ = conn.close().await;
}

async fn pg_prepare() {
    PG_READY
        .get_or_init(|| async {
            let url = pg_url();
            ensure_pg_database(&url).await;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("{e}"));
            let mine = format!("ft_{}_%", std::process::id());
            let stale: Vec<String> = sqlx::query_scalar(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'ft\\_%' AND nspname NOT LIKE $1",
            )
            .bind(&mine)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
            // Only schemas of processes that are gone: another test run may be going on right
            // now (a second checkout, a colleague's run) and its schemas are alive.
            let alive = |schema: &str| {
                schema
                    .split('_')
                    .nth(1)
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
            };
            for schema in stale.into_iter().filter(|s| !alive(s)) {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))
                    .execute(&mut conn)
                    .await;
            }
            let _ = conn.close().await;
        })
        .await;
}

/// A bare router with the same request helpers as `TestApp` (for apps built by hand).
pub struct RawApp(pub Router);

impl RawApp {
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>, bearer: Option<&str>) -> Res {
        self.call_with(method, path, body, bearer, &[]).await
    }

    /// `call` with extra request headers.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: Option<&str>,
        headers: &[(&str, &[u8])],
    ) -> Res {
        let mut req = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        send(&self.0, req.body(body).unwrap_or_else(|e| panic!("{e}"))).await
    }
}

async fn send(router: &Router, req: Request<Body>) -> Res {
    let res = router.clone().oneshot(req).await.unwrap_or_else(|e| match e {});
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Res { status, headers, body, text }
}

pub struct TestApp {
    pub router: Router,
    pub clock: ManualClock,
    pub auth: AuthService,
    pub db: Db,
    pub config: Config,
    /// The tenant resolver, when the test turned tenancy on.
    pub tenants: Option<Arc<Tenants>>,
    pub data_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
pub struct Res {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Res {
    /// The error code of an error envelope, or "" when there is none.
    pub fn code(&self) -> &str {
        self.body["detail"]["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn str(&self, key: &str) -> String {
        self.body[key].as_str().unwrap_or_else(|| panic!("no string {key:?} in {}", self.text)).to_owned()
    }

    #[track_caller]
    pub fn assert(&self, status: u16, code: &str) -> &Self {
        assert_eq!((self.status.as_u16(), self.code()), (status, code), "body: {}", self.text);
        self
    }
}

/// Polls `done` every 10 ms for up to 5 s; panics naming `what` if it never holds.
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// How many migrations this binary knows (one file per migration and backend).
pub fn migration_count() -> usize {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/store/migrations/sqlite");
    std::fs::read_dir(dir).map(|d| d.filter(|e| e.is_ok()).count()).unwrap_or(0)
}

pub fn start_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default()
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// A fresh app whose configuration is the test defaults overridden by `extra`.
    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data_dir = dir.path().to_string_lossy().into_owned();
        let url = pg_url();
        let schema = format!("ft_{}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let mut pairs: Vec<(&str, &str)> = vec![
            ("DATA_DIR", &data_dir),
            ("JWT_SECRET_KEY", SECRET),
            ("ARGON2_MEMORY_COST", "8192"),
            ("ARGON2_TIME_COST", "1"),
            ("ARGON2_PARALLELISM", "1"),
            ("HASH_CONCURRENCY", "2"),
            ("HASH_QUEUE_SIZE", "64"),
            ("DATABASE_POOL_MAX_SIZE", "5"),
            // Every test request comes from one address; the limits have tests of their own.
            ("ENABLE_RATE_LIMITING", "false"),
        ];
        if backend == Backend::Postgres {
            pg_prepare().await;
            pairs.push(("DATABASE_URL", &url));
            pairs.push(("DEFAULT_SCHEMA", &schema));
        }
        pairs.extend_from_slice(extra);
        let config = Config::from_sources(&Sources::from_pairs(&pairs)).unwrap_or_else(|e| panic!("{e}"));
        let db = Db::open(&config).await.unwrap_or_else(|e| panic!("{e:#}"));
        db.migrate().await.unwrap_or_else(|e| panic!("{e:#}"));
        // As `serve` does: every PostgreSQL test runs with the session cache on.
        db.start_session_cache(&config);
        if let (Db::Postgres(store), true) = (&db, config.session_cache_size > 0) {
            wait_for("the session cache's listener", || store.session_cache().is_some_and(|c| c.live)).await;
        }
        let clock = ManualClock::new(start_time());
        let auth = boot::service(&config, db.store(), SECRET.as_bytes(), Arc::new(clock.clone()))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let tenants = boot::tenants(&config, &db, &auth);
        let state = boot::state(&config, auth.clone(), tenants.clone()).unwrap_or_else(|e| panic!("{e:#}"));
        let routes = fraise_http::routes(&state).route(
            "/__test/panic",
            get(|| async {
                if true {
                    panic!("deliberate test panic");
                }
                "unreachable"
            }),
        );
        let peer: SocketAddr = ([203, 0, 113, 7], 41234).into();
        let router = fraise_http::with_layers(routes, state).layer(MockConnectInfo(peer));
        TestApp { router, clock, auth, db, config, tenants, data_dir: dir.path().to_owned(), _dir: dir }
    }

    pub fn clock_now(&self) -> DateTime<Utc> {
        use fraise_core::Clock as _;
        self.clock.now()
    }

    pub async fn send(&self, req: Request<Body>) -> Res {
        send(&self.router, req).await
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>, bearer: Option<&str>) -> Res {
        RawApp(self.router.clone()).call(method, path, body, bearer).await
    }

    /// `call` with extra request headers.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: Option<&str>,
        headers: &[(&str, &[u8])],
    ) -> Res {
        RawApp(self.router.clone()).call_with(method, path, body, bearer, headers).await
    }

    /// POSTs raw bytes with the given content type.
    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: impl Into<Body>) -> Res {
        let mut req = Request::builder().method(Method::POST).uri(path);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.send(req.body(body.into()).unwrap_or_else(|e| panic!("{e}"))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Res {
        self.call(Method::POST, path, Some(&body), None).await
    }

    pub async fn register(&self, email: &str, password: &str) -> Res {
        self.post("/auth/register", json!({"email": email, "password": password, "name": "Test User"})).await
    }

    /// Registers `email` and returns the 201 body.
    pub async fn signed_up(&self, email: &str) -> Res {
        let r = self.register(email, PASSWORD).await;
        r.assert(201, "");
        r
    }

    pub async fn login(&self, email: &str, password: &str) -> Res {
        self.post("/auth/login", json!({"email": email, "password": password})).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Res {
        self.post("/auth/refresh", json!({"refresh_token": refresh_token})).await
    }

    pub async fn me(&self, access_token: &str) -> Res {
        self.call(Method::GET, "/auth/me", None, Some(access_token)).await
    }

    pub async fn logout(&self, body: Value, bearer: Option<&str>) -> Res {
        self.call(Method::POST, "/auth/logout", Some(&body), bearer).await
    }

    /// Creates a tenant whose name is unique to this test process and ends in `suffix` (on
    /// PostgreSQL it starts like the test schemas, so a later run drops it if this one crashes).
    pub async fn create_tenant(&self, suffix: &str) -> String {
        let name = format!("ft_{}_{}_{suffix}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let parsed = TenantName::parse(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
        self.db.tenants(&self.config).create(&parsed).await.unwrap_or_else(|e| panic!("create {name}: {e:?}"));
        name
    }

    /// `call` for tenant `tenant` (the `X-Tenant-ID` header).
    pub async fn call_t(
        &self,
        tenant: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: Option<&str>,
    ) -> Res {
        RawApp(self.router.clone()).call_with(method, path, body, bearer, &[("x-tenant-id", tenant.as_bytes())]).await
    }

    /// Waits (up to 10 s: delivery is asynchronous) until the outbox holds `n` messages whose
    /// link contains `path`, and returns their tokens, oldest first.
    pub async fn outbox_tokens(&self, path: &str, n: usize) -> Vec<String> {
        let dir = self.data_dir.join("outbox");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mut found: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter_map(|e| {
                            let text = std::fs::read_to_string(e.path()).ok()?;
                            let token = token_after(&text, &format!("{path}?token="))?;
                            Some((e.metadata().ok()?.modified().ok()?, token))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if found.len() >= n {
                found.sort();
                return found.into_iter().map(|(_, t)| t).collect();
            }
            assert!(std::time::Instant::now() < deadline, "expected {n} emails with {path} in {}", dir.display());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The id of the user with `email`.
    pub async fn user_id(&self, email: &str) -> uuid::Uuid {
        let email = fraise_core::Email::parse(email).unwrap_or_else(|e| panic!("{e}"));
        self.auth
            .store()
            .user_by_email(&email)
            .await
            .ok()
            .flatten()
            .map(|u| u.id)
            .unwrap_or_else(|| panic!("no user {email}"))
    }
}

/// The 43-character token that follows `marker` in a message (quoted-printable soft breaks and
/// `=3D` undone first, in case a transport chose that encoding).
pub fn token_after(text: &str, marker: &str) -> Option<String> {
    let text = text.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let start = text.find(marker)? + marker.len();
    text.get(start..start + 43).map(str::to_owned)
}

/// Runs the `fraise-auth` binary against `app`'s database and data folder; `(success, stdout +
/// stderr)`.
pub fn cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    cli_with(app, args, &[], None)
}

/// The `fraise-auth` binary with `args`, a clean environment pointing at `app`'s database and
/// data folder, cheap Argon2 parameters, and `env` on top.
pub fn command(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fraise-auth"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", &app.data_dir)
        .env("JWT_SECRET_KEY", SECRET)
        .env("ARGON2_MEMORY_COST", "8192")
        .env("ARGON2_TIME_COST", "1")
        .env("ARGON2_PARALLELISM", "1")
        .env("LOG_LEVEL", "warn");
    if let fraise_auth::config::Database::Postgres { schema, .. } = &app.config.database {
        cmd.env("DATABASE_URL", pg_url()).env("DEFAULT_SCHEMA", schema);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// `cli` with extra environment variables and, optionally, text on standard input.
pub fn cli_with(app: &TestApp, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write as _;
    let mut cmd = command(app, args, env);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run fraise-auth: {e}"));
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.unwrap_or("").as_bytes());
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
