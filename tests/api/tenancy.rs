//! Multi-tenancy: one PostgreSQL schema or one SQLite file per tenant, isolated end to end.
use axum::http::Method;
use fraise_core::model::NewUser;
use fraise_core::tenant::TenantName;
use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, Res, TestApp};

both_backends!(
    same_email_in_two_tenants_is_two_accounts,
    tokens_of_one_tenant_are_refused_by_another,
    tenant_names_are_validated_and_unknown_tenants_are_404,
    subdomain_mode_reads_the_host,
    lockout_and_audit_are_per_tenant,
    two_hundred_tenants_hold_bounded_resources,
);

async fn header_app(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut pairs = vec![("TENANT_RESOLUTION_METHOD", "header")];
    pairs.extend_from_slice(extra);
    TestApp::spawn_with(backend, &pairs).await
}

async fn post_t(app: &TestApp, tenant: &str, path: &str, body: Value) -> Res {
    app.call_t(tenant, Method::POST, path, Some(&body), None).await
}

async fn register_t(app: &TestApp, tenant: &str, email: &str, password: &str) -> Res {
    post_t(app, tenant, "/auth/register", json!({"email": email, "password": password})).await
}

async fn login_t(app: &TestApp, tenant: &str, email: &str, password: &str) -> Res {
    post_t(app, tenant, "/auth/login", json!({"email": email, "password": password})).await
}

fn access(r: &Res) -> String {
    r.body["access_token"].as_str().unwrap_or_else(|| panic!("no access token in {}", r.text)).to_owned()
}

fn refresh(r: &Res) -> String {
    r.body["refresh_token"].as_str().unwrap_or_else(|| panic!("no refresh token in {}", r.text)).to_owned()
}

async fn same_email_in_two_tenants_is_two_accounts(backend: Backend) {
    let app = header_app(backend, &[]).await;
    let (a, b) = (app.create_tenant("a").await, app.create_tenant("b").await);
    let pw_b = "OtherPass456?";
    let ra = register_t(&app, &a, "same@example.com", PASSWORD).await;
    ra.assert(201, "");
    let rb = register_t(&app, &b, "same@example.com", pw_b).await;
    rb.assert(201, "");
    assert_ne!(ra.body["user"]["id"], rb.body["user"]["id"], "two tenants, two accounts");
    // Each tenant knows only its own password.
    login_t(&app, &a, "same@example.com", pw_b).await.assert(401, "INVALID_CREDENTIALS");
    login_t(&app, &b, "same@example.com", PASSWORD).await.assert(401, "INVALID_CREDENTIALS");
    let la = login_t(&app, &a, "same@example.com", PASSWORD).await;
    la.assert(200, "");

    // Separate sessions: A has two (register + login), B one; neither lists the other's.
    let list = |t: String, tok: String| {
        let app = &app;
        async move { app.call_t(&t, Method::GET, "/auth/sessions", None, Some(&tok)).await }
    };
    let sa = list(a.clone(), access(&la)).await;
    let sb = list(b.clone(), access(&rb)).await;
    let ids = |r: &Res| -> Vec<String> {
        r.body["sessions"].as_array().map(|v| v.iter().map(|s| s["id"].to_string()).collect()).unwrap_or_default()
    };
    assert_eq!((ids(&sa).len(), ids(&sb).len()), (2, 1), "A: {} B: {}", sa.text, sb.text);
    assert!(ids(&sb).iter().all(|id| !ids(&sa).contains(id)));

    // Separate resets: A's emailed link names A; its token means nothing to B.
    post_t(&app, &a, "/auth/forgot-password", json!({"email": "same@example.com"})).await.assert(200, "");
    let token = app.outbox_tokens("/reset-password", 1).await.remove(0);
    let mail = std::fs::read_dir(app.data_dir.join("outbox"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .and_then(|e| std::fs::read_to_string(e.path()).ok())
        .unwrap_or_default()
        .replace("=\r\n", "")
        .replace("=3D", "=");
    assert!(mail.contains(&format!("tenant={a}")), "the link names the tenant: {mail}");
    let new_pw = "BrandNew789!";
    let reset = json!({"token": token, "new_password": new_pw});
    post_t(&app, &b, "/auth/reset-password", reset.clone()).await.assert(400, "INVALID_RESET_TOKEN");
    post_t(&app, &a, "/auth/reset-password", reset).await.assert(200, "");
    login_t(&app, &a, "same@example.com", new_pw).await.assert(200, "");
    login_t(&app, &b, "same@example.com", pw_b).await.assert(200, "");
    login_t(&app, &b, "same@example.com", new_pw).await.assert(401, "INVALID_CREDENTIALS");
}

async fn tokens_of_one_tenant_are_refused_by_another(backend: Backend) {
    let app = header_app(backend, &[]).await;
    let (a, b) = (app.create_tenant("a").await, app.create_tenant("b").await);
    let ra = register_t(&app, &a, "victim@example.com", PASSWORD).await;
    ra.assert(201, "");
    // B gets a user with the very same id and email: only the tenant binding can tell them apart.
    let id: uuid::Uuid = ra.body["user"]["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!());
    let tenants = app.tenants.as_ref().unwrap_or_else(|| panic!("tenancy is on"));
    let b_name = TenantName::parse(&b).unwrap_or_else(|e| panic!("{e}"));
    let b_service = tenants.service(&b_name).await.unwrap_or_else(|e| panic!("{e}"));
    let now = app.clock_now();
    let twin = NewUser {
        id,
        email: fraise_core::Email::parse("victim@example.com").unwrap_or_else(|e| panic!("{e}")),
        password_hash: "x".into(),
        name: None,
        now,
    };
    b_service.store().insert_user(twin).await.unwrap_or_else(|e| panic!("{e}"));

    let (at, rt) = (access(&ra), refresh(&ra));
    app.call_t(&a, Method::GET, "/auth/me", None, Some(&at)).await.assert(200, "");
    app.call_t(&b, Method::GET, "/auth/me", None, Some(&at)).await.assert(401, "INVALID_TOKEN");
    app.call_t(&b, Method::GET, "/auth/sessions", None, Some(&at)).await.assert(401, "INVALID_TOKEN");
    post_t(&app, &b, "/auth/refresh", json!({"refresh_token": rt})).await.assert(401, "INVALID_TOKEN");
    post_t(&app, &b, "/auth/logout", json!({"refresh_token": rt})).await.assert(400, "INVALID_TOKEN");
    // Nothing B did touched A's session: the refresh token still rotates in A.
    post_t(&app, &a, "/auth/refresh", json!({"refresh_token": rt})).await.assert(200, "");

    // A session id of A revoked through B: B does not know it.
    let rb = register_t(&app, &b, "other@example.com", PASSWORD).await;
    let sa = app.call_t(&a, Method::GET, "/auth/sessions", None, Some(&at)).await;
    let sid = sa.body["sessions"][0]["id"].as_str().unwrap_or_else(|| panic!("{}", sa.text)).to_owned();
    app.call_t(&b, Method::DELETE, &format!("/auth/sessions/{sid}"), None, Some(&access(&rb)))
        .await
        .assert(404, "SESSION_NOT_FOUND");
    app.call_t(&a, Method::GET, "/auth/me", None, Some(&at)).await.assert(200, "");
}

/// Header values no tenant name can be; each must be refused with 400 before any lookup.
pub fn hostile_names() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        "",
        " ",
        "a",
        "ACME",
        "a'b",
        "a\"b",
        "a;drop schema public cascade",
        "acme; --",
        "..",
        "../etc/passwd",
        "a/b",
        "a.b",
        "a b",
        "a-b",
        "1abc",
        "_abc",
        "abc_",
        "public",
        "admin",
        "api",
        "www",
        "system",
        "pg_catalog",
        "pg_toast",
        "information_schema",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push("café".as_bytes().to_vec());
    v.push("テナント".as_bytes().to_vec());
    v.push(vec![b'a'; 200]);
    v.push(vec![b'a'; 33]);
    v
}

async fn tenant_names_are_validated_and_unknown_tenants_are_404(backend: Backend) {
    let app = header_app(backend, &[]).await;
    let raw = crate::helpers::RawApp(app.router.clone());
    let body = json!({"email": "x@example.com", "password": PASSWORD});
    for name in hostile_names() {
        let r = raw.call_with(Method::POST, "/auth/login", Some(&body), None, &[("x-tenant-id", &name)]).await;
        r.assert(400, "VALIDATION_ERROR");
        assert_eq!(r.body["detail"]["field"], "tenant", "{}", String::from_utf8_lossy(&name));
    }
    // No header at all: a tenant is required.
    app.login("x@example.com", PASSWORD).await.assert(400, "VALIDATION_ERROR");
    app.call(Method::GET, "/auth/me", None, Some("whatever")).await.assert(400, "VALIDATION_ERROR");
    // Well-formed but unknown.
    login_t(&app, "nosuchtenant", "x@example.com", PASSWORD).await.assert(404, "TENANT_NOT_FOUND");
    // A dropped tenant is unknown again (to a fresh resolver; a running one re-checks within 30 s).
    let t = app.create_tenant("gone").await;
    register_t(&app, &t, "x@example.com", PASSWORD).await.assert(201, "");
    let name = TenantName::parse(&t).unwrap_or_else(|e| panic!("{e}"));
    app.db.tenants(&app.config).drop_tenant(&name).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(app.db.tenants(&app.config).open(&name).await.map(|s| s.is_none()).unwrap_or(false));
    if backend == Backend::Sqlite {
        // The file is checked on every use: no write lands in a dropped tenant's unlinked file.
        login_t(&app, &t, "x@example.com", PASSWORD).await.assert(404, "TENANT_NOT_FOUND");
    }
    // Health probes need no tenant.
    app.call(Method::GET, "/health/live", None, None).await.assert(200, "");
}

async fn subdomain_mode_reads_the_host(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[("TENANT_RESOLUTION_METHOD", "subdomain"), ("TENANT_BASE_DOMAIN", "Auth.Example.test")],
    )
    .await;
    let t = app.create_tenant("sub").await;
    let raw = crate::helpers::RawApp(app.router.clone());
    let body = json!({"email": "s@example.com", "password": PASSWORD});
    let host = format!("{t}.auth.example.test:8443");
    let r = raw.call_with(Method::POST, "/auth/register", Some(&body), None, &[("host", host.as_bytes())]).await;
    r.assert(201, "");
    let upper = format!("{}.AUTH.example.test", t.to_uppercase());
    raw.call_with(Method::GET, "/auth/me", None, Some(&access(&r)), &[("host", upper.as_bytes())])
        .await
        .assert(200, "");
    for bad in ["auth.example.test", "a.b.auth.example.test", "evil.test", "ACME'.auth.example.test"] {
        raw.call_with(Method::POST, "/auth/login", Some(&body), None, &[("host", bad.as_bytes())])
            .await
            .assert(400, "VALIDATION_ERROR");
    }
    raw.call_with(Method::POST, "/auth/login", Some(&body), None, &[("host", b"nosuch.auth.example.test")])
        .await
        .assert(404, "TENANT_NOT_FOUND");
    // The header means nothing in subdomain mode.
    let mixed: &[(&str, &[u8])] = &[("host", b"nosuch.auth.example.test"), ("x-tenant-id", t.as_bytes())];
    raw.call_with(Method::POST, "/auth/login", Some(&body), None, mixed).await.assert(404, "TENANT_NOT_FOUND");
}

async fn lockout_and_audit_are_per_tenant(backend: Backend) {
    let app = header_app(backend, &[("LOCKOUT_CLIENT_THRESHOLD", "3")]).await;
    let (a, b) = (app.create_tenant("a").await, app.create_tenant("b").await);
    for t in [&a, &b] {
        register_t(&app, t, "lock@example.com", PASSWORD).await.assert(201, "");
    }
    for _ in 0..3 {
        login_t(&app, &a, "lock@example.com", "WrongPass1!").await.assert(401, "INVALID_CREDENTIALS");
    }
    login_t(&app, &a, "lock@example.com", PASSWORD).await.assert(423, "ACCOUNT_LOCKED");
    login_t(&app, &b, "lock@example.com", PASSWORD).await.assert(200, "");

    let tenants = app.tenants.as_ref().unwrap_or_else(|| panic!("tenancy is on"));
    let filter = fraise_core::store::AuditFilter { user: None, kind: None, since: None, limit: 100 };
    let mut kinds = Vec::new();
    for t in [&a, &b] {
        let name = TenantName::parse(t).unwrap_or_else(|e| panic!("{e}"));
        let svc = tenants.service(&name).await.unwrap_or_else(|e| panic!("{e}"));
        let events = svc.store().list_audit(&filter).await.unwrap_or_else(|e| panic!("{e}"));
        kinds.push(events.iter().filter(|e| e.kind == "login_failure").count());
    }
    assert_eq!(kinds, vec![3, 0], "A's failures are in A's audit trail only");
    // The main store saw none of it.
    let main = app.auth.store().list_audit(&filter).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(main.is_empty(), "{main:?}");
}

/// Open SQLite files under `dir` held by this process.
fn open_files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|p| p.starts_with(dir))
                .count()
        })
        .unwrap_or(0)
}

async fn two_hundred_tenants_hold_bounded_resources(backend: Backend) {
    const N: usize = 200;
    const MAX_OPEN: usize = 8;
    let app_name = format!("ft_many_{}", std::process::id());
    let url = format!("{}?application_name={app_name}", crate::helpers::pg_url());
    let max_open = MAX_OPEN.to_string();
    let mut extra = vec![("TENANT_MAX_OPEN", max_open.as_str())];
    if backend == Backend::Postgres {
        extra.push(("DATABASE_URL", url.as_str()));
    }
    let app = header_app(backend, &extra).await;
    let started = std::time::Instant::now();
    let mut names = Vec::with_capacity(N);
    for i in 0..N {
        names.push(app.create_tenant(&format!("m{i}")).await);
    }
    let per_tenant = started.elapsed() / u32::try_from(N).unwrap_or(1);
    eprintln!("{backend:?}: created and migrated {N} tenants, {per_tenant:?} per tenant");
    assert_eq!(app.db.tenants(&app.config).list().await.map(|l| l.len()).unwrap_or(0), N);

    // Every tenant serves a request that reaches its store.
    for t in &names {
        login_t(&app, t, "nobody@example.com", PASSWORD).await.assert(401, "INVALID_CREDENTIALS");
    }
    let tenants = app.tenants.as_ref().unwrap_or_else(|| panic!("tenancy is on"));
    assert!(tenants.open_count() <= MAX_OPEN, "open tenants: {}", tenants.open_count());
    match backend {
        Backend::Sqlite => {
            // Evicted tenants' files close: what stays open is bounded by the open tenants
            // (each: connections x db/-wal/-shm), not by the 200 tenants served.
            let dir = app.data_dir.join("tenants");
            let open = open_files_under(&dir);
            eprintln!("{open} tenant files open after serving {N} tenants");
            assert!(open <= MAX_OPEN * 4 * 3, "{open} tenant files open after serving {N} tenants");
        }
        Backend::Postgres => {
            // One pool for every tenant: never more than DATABASE_POOL_MAX_SIZE (5 in tests),
            // plus the session cache's listening and heartbeat connections (two per node, for
            // every tenant).
            let mut conn =
                sqlx::PgConnection::connect(&crate::helpers::pg_url()).await.unwrap_or_else(|e| panic!("{e}"));
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&app_name)
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            eprintln!("{n} connections for {N} tenants");
            assert!((1..=7).contains(&n), "{n} connections for {N} tenants");
        }
    }
}

/// Hostile tenant names are refused before any SQL: with the database unreachable they still get
/// 400 (any query would have made it a 503), while a well-formed name does reach the database.
#[tokio::test]
async fn hostile_tenant_names_never_reach_the_database() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().to_string_lossy().into_owned();
    let cfg = fraise_auth::config::Config::from_sources(&fraise_auth::config::Sources::from_pairs(&[
        ("DATA_DIR", &data),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere"),
        ("DATABASE_POOL_TIMEOUT_SECONDS", "1"),
        ("JWT_SECRET_KEY", crate::helpers::SECRET),
        ("TENANT_RESOLUTION_METHOD", "header"),
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    let db = fraise_auth::boot::Db::open(&cfg).await.unwrap_or_else(|e| panic!("{e}"));
    let clock = Arc::new(fraise_core::ManualClock::new(crate::helpers::start_time()));
    let auth = fraise_auth::boot::service(&cfg, db.store(), crate::helpers::SECRET.as_bytes(), clock)
        .unwrap_or_else(|e| panic!("{e}"));
    let tenants = fraise_auth::boot::tenants(&cfg, &db, &auth);
    let app = fraise_http::app(fraise_auth::boot::state(&cfg, auth, tenants).unwrap_or_else(|e| panic!("{e}")));
    let raw = crate::helpers::RawApp(app);
    let body = json!({"email": "x@example.com", "password": PASSWORD});
    for name in hostile_names() {
        raw.call_with(Method::POST, "/auth/login", Some(&body), None, &[("x-tenant-id", &name)])
            .await
            .assert(400, "VALIDATION_ERROR");
    }
    raw.call_with(Method::POST, "/auth/login", Some(&body), None, &[("x-tenant-id", b"wellformed")])
        .await
        .assert(503, "SERVICE_UNAVAILABLE");
}

/// Two deployments sharing a PostgreSQL database (different control schemas) cannot take over
/// each other's tenants or control schemas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_cannot_take_over_another_deployments_schemas() {
    let one = header_app(Backend::Postgres, &[]).await;
    let two = header_app(Backend::Postgres, &[]).await;
    let t = one.create_tenant("shared").await;
    let name = TenantName::parse(&t).unwrap_or_else(|e| panic!("{e}"));
    let refused = two.db.tenants(&two.config).create(&name).await;
    assert!(matches!(refused, Err(fraise_store::TenantError::Refused(_))), "{refused:?}");
    let fraise_auth::config::Database::Postgres { schema: control_one, .. } = &one.config.database else {
        panic!("postgres")
    };
    let control = TenantName::parse(control_one).unwrap_or_else(|e| panic!("{e}"));
    let refused = two.db.tenants(&two.config).create(&control).await;
    assert!(matches!(refused, Err(fraise_store::TenantError::Refused(_))), "{refused:?}");
    // And one's tenant still serves one.
    register_t(&one, &t, "still@example.com", PASSWORD).await.assert(201, "");
}

/// An embedder who turns tenancy on but gives no tenants gets 500s, never one shared store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenancy_without_tenants_fails_closed() {
    let app = header_app(Backend::Sqlite, &[]).await;
    let state = fraise_auth::boot::state(&app.config, app.auth.clone(), None).unwrap_or_else(|e| panic!("{e}"));
    let raw = crate::helpers::RawApp(fraise_http::app(state));
    let body = json!({"email": "x@example.com", "password": PASSWORD});
    raw.call_with(Method::POST, "/auth/register", Some(&body), None, &[("x-tenant-id", b"acme")])
        .await
        .assert(500, "INTERNAL_ERROR");
}
