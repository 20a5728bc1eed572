//! `/openapi.json` and `/docs`: the document lists exactly the routes the router serves, is
//! well-formed OpenAPI 3.1, names only API.md's error codes, follows the configuration; the docs
//! page works under a CSP of its own and no other route gets it.
//!
//! Route coverage, and why it cannot drift: the routes are registered from the handlers'
//! `#[utoipa::path]` attributes (`utoipa_axum::routes!`), so path and method are written once for
//! both. What could still drift is a route added beside that mechanism (a plain `.route(...)`).
//! So this test does not trust any list: it reads the paths from the built router itself (axum's
//! `Debug` of a `Router` prints its path table), asks the assembled app which methods each path
//! answers (anything but the router's own 405 is a route), and compares that set with the
//! document's. If axum stopped printing paths, the set would be empty and the test fails loudly;
//! `the_route_enumeration_sees_a_route_added_beside_the_documented_ones` proves it finds strays.
use std::collections::BTreeSet;

use axum::Router;
use axum::http::Method;
use axum::routing::get;
use fraise_auth::boot;
use serde_json::Value;

use crate::helpers::{Backend, RawApp, TestApp};

/// API.md's error-code table (code, status). Checked against API.md itself when the shared spec
/// is beside the repository (`../shared/spec/API.md`).
const API_MD_CODES: &[(&str, u16)] = &[
    ("VALIDATION_ERROR", 400),
    ("EMAIL_ALREADY_EXISTS", 409),
    ("INVALID_CREDENTIALS", 401),
    ("ACCOUNT_LOCKED", 423),
    ("ACCOUNT_DISABLED", 403),
    ("EMAIL_NOT_VERIFIED", 403),
    ("RATE_LIMITED", 429),
    ("UNAUTHORIZED", 401),
    ("INVALID_TOKEN", 401),
    ("TOKEN_EXPIRED", 401),
    ("TOKEN_THEFT_DETECTED", 403),
    ("INVALID_RESET_TOKEN", 400),
    ("WEAK_PASSWORD", 400),
    ("SESSION_NOT_FOUND", 404),
    ("CANNOT_REVOKE_CURRENT_SESSION", 403),
    ("NOT_FOUND", 404),
    ("METHOD_NOT_ALLOWED", 405),
    ("PAYLOAD_TOO_LARGE", 413),
    ("UNSUPPORTED_MEDIA_TYPE", 415),
    ("CSRF_FAILED", 403),
    ("TENANT_NOT_FOUND", 404),
    ("MFA_REQUIRED", 403),
    ("INVALID_MFA_CODE", 401),
    ("MFA_TOKEN_EXPIRED", 401),
    ("SERVICE_UNAVAILABLE", 503),
    ("INTERNAL_ERROR", 500),
];

/// Codes the server really answers with that API.md's table lacks (README documents them). The
/// one deliberate exception: anything else in the document that is not in API.md fails the test.
const BEYOND_API_MD: &[(&str, u16)] =
    &[("REQUEST_TIMEOUT", 408), ("CREDENTIAL_NOT_FOUND", 404), ("PASSKEYS_DISABLED", 404)];

/// Where a status differs from API.md's by design: API.md says INVALID_TOKEN is 400 at logout.
const STATUS_EXCEPTIONS: &[(&str, &str, u16)] = &[("/logout", "INVALID_TOKEN", 400)];

const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

/// The Swagger UI page's routes: HTML, not API, so deliberately not in the document.
const DOCS_ROUTES: &[&str] = &["/docs", "/docs/", "/docs/{*file}"];

/// The hosted page's routes (`UI_ENABLED=true`): HTML and static files, not API either.
const UI_ROUTES: &[&str] = &["/ui", "/ui/", "/ui/{*file}"];

/// The paths in `router`'s table, read from its `Debug` output (`Router { path_router: ..
/// RouteId(n): "/path" .., fallback_router: .. }`; the fallback router's own table is not routes).
fn router_paths<S>(router: &Router<S>) -> BTreeSet<String> {
    let text = format!("{router:?}");
    let table = text.split_once("path_router").and_then(|(_, rest)| rest.split_once("fallback_router"));
    let Some((table, _)) = table else { panic!("unexpected Debug output of a Router: {text}") };
    let mut paths = BTreeSet::new();
    for chunk in table.split("RouteId(").skip(1) {
        let Some((_, rest)) = chunk.split_once("): \"") else { continue };
        let Some((path, _)) = rest.split_once('"') else { continue };
        if !path.contains("__private__axum") {
            paths.insert(path.to_owned());
        }
    }
    paths
}

/// A concrete URL for a path template (`{session_id}` → a segment, `{*file}` → a file name).
fn concrete(path: &str) -> String {
    path.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/")
}

/// Every (METHOD, path) the app answers: for each path in the router's table, each method the
/// router does not refuse with its own 405. `headers` get a request past the tenant layer, which
/// (a route layer) wraps the 405 too.
async fn served_operations(
    app: &RawApp,
    paths: &BTreeSet<String>,
    headers: &[(&str, &[u8])],
) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for path in paths {
        for method in METHODS {
            let r = app.call_with(method.clone(), &concrete(path), None, None, headers).await;
            assert_ne!(
                r.code(),
                "NOT_FOUND",
                "{method} {path} is in the router's table but fell through to the fallback"
            );
            if r.code() != "METHOD_NOT_ALLOWED" {
                ops.insert((method.to_string(), path.clone()));
            }
        }
    }
    ops
}

fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            if METHODS.iter().any(|m| m.as_str().eq_ignore_ascii_case(method)) {
                ops.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// The router's paths (docs pages set aside, after checking they are exactly those) and the app.
fn assembled(app: &TestApp) -> (BTreeSet<String>, RawApp) {
    let state = boot::state(&app.config, app.auth.clone(), app.tenants.clone()).unwrap();
    let mut paths = router_paths(&fraise_http::routes(&state));
    let docs: BTreeSet<String> = paths.iter().filter(|p| fraise_http::docs::is_docs_path(p)).cloned().collect();
    let expected_docs: BTreeSet<String> =
        if app.config.docs_enabled { DOCS_ROUTES.iter().map(|p| (*p).to_owned()).collect() } else { BTreeSet::new() };
    assert_eq!(docs, expected_docs, "the docs page's routes");
    paths.retain(|p| !fraise_http::docs::is_docs_path(p));
    let ui: BTreeSet<String> = paths.iter().filter(|p| fraise_http::ui::is_ui_path(p)).cloned().collect();
    let expected_ui: BTreeSet<String> =
        if app.config.ui_enabled { UI_ROUTES.iter().map(|p| (*p).to_owned()).collect() } else { BTreeSet::new() };
    assert_eq!(ui, expected_ui, "the hosted page's routes");
    paths.retain(|p| !fraise_http::ui::is_ui_path(p));
    assert!(paths.len() > 10, "reading the router's table found only {paths:?}: has axum's Debug output changed?");
    (paths, RawApp(fraise_http::app(state)))
}

/// The served document (built on the first request, then kept: a second request gets the same).
async fn document(app: &RawApp) -> Value {
    let r = app.call(Method::GET, "/openapi.json", None, None).await;
    r.assert(200, "");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let again = app.call(Method::GET, "/openapi.json", None, None).await;
    again.assert(200, "");
    assert_eq!(again.body, r.body, "the document changed between two requests");
    r.body
}

async fn assert_router_and_document_agree(app: &TestApp) -> Value {
    let (paths, raw) = assembled(app);
    let tenant = match app.tenants {
        Some(_) => app.create_tenant("openapi").await,
        None => String::new(),
    };
    let headers: &[(&str, &[u8])] = if tenant.is_empty() { &[] } else { &[("x-tenant-id", tenant.as_bytes())] };
    let served = served_operations(&raw, &paths, headers).await;
    let doc = document(&raw).await;
    let documented = documented_operations(&doc);
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "served but not in /openapi.json: {undocumented:?}");
    assert!(unserved.is_empty(), "in /openapi.json but not served: {unserved:?}");
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_hosted_page_on_only_its_static_routes_are_left_out_of_the_document() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("UI_ENABLED", "true")]).await;
    let doc = assert_router_and_document_agree(&app).await;
    assert!(documented_operations(&doc).iter().all(|(_, p)| !p.starts_with("/ui")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_route_is_documented_and_every_documented_route_is_served() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = assert_router_and_document_agree(&app).await;
    // The contract's routes, spelled out once here as a sanity check of the whole mechanism.
    let ops = documented_operations(&doc);
    for (m, p) in [
        ("POST", "/auth/register"),
        ("POST", "/auth/login"),
        ("POST", "/auth/refresh"),
        ("POST", "/auth/logout"),
        ("GET", "/auth/me"),
        ("PATCH", "/auth/me"),
        ("POST", "/auth/change-password"),
        ("POST", "/auth/forgot-password"),
        ("POST", "/auth/reset-password"),
        ("POST", "/auth/verify-email/request"),
        ("POST", "/auth/verify-email"),
        ("GET", "/auth/sessions"),
        ("DELETE", "/auth/sessions/{session_id}"),
        ("DELETE", "/auth/sessions"),
        ("POST", "/auth/webauthn/register/start"),
        ("POST", "/auth/webauthn/register/finish"),
        ("GET", "/auth/webauthn/credentials"),
        ("DELETE", "/auth/webauthn/credentials/{credential_id}"),
        ("POST", "/auth/webauthn/login/start"),
        ("POST", "/auth/webauthn/login/finish"),
        ("GET", "/health"),
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
        ("GET", "/openapi.json"),
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/metrics"),
        ("POST", "/auth/mfa/totp/setup"),
        ("POST", "/auth/mfa/totp/confirm"),
        ("DELETE", "/auth/mfa/totp"),
        ("POST", "/auth/mfa/verify"),
    ] {
        assert!(ops.contains(&(m.to_owned(), p.to_owned())), "{m} {p} missing");
    }
    assert_eq!(ops.len(), 30, "{ops:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_enumeration_sees_a_route_added_beside_the_documented_ones() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let state = boot::state(&app.config, app.auth.clone(), app.tenants.clone()).unwrap();
    let stray = fraise_http::routes(&state).route("/auth/undocumented", get(|| async { "hi" }));
    let paths = router_paths(&stray);
    assert!(paths.contains("/auth/undocumented"), "{paths:?}");
    let raw = RawApp(fraise_http::with_layers(stray, state));
    let served = served_operations(&raw, &BTreeSet::from(["/auth/undocumented".to_owned()]), &[]).await;
    assert_eq!(served, BTreeSet::from([("GET".to_owned(), "/auth/undocumented".to_owned())]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_follows_the_prefix_tenancy_and_csrf_configuration() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("AUTH_PREFIX", "/api/v1/auth"),
            ("TENANT_RESOLUTION_METHOD", "header"),
            ("ENABLE_CSRF_PROTECTION", "true"),
            ("DOCS_ENABLED", "false"),
        ],
    )
    .await;
    let doc = assert_router_and_document_agree(&app).await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/v1/auth/login") && !paths.contains_key("/auth/login"), "{:?}", paths.keys());
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let param = |name: &str| params.iter().find(|p| p["name"] == name).cloned();
            let tenant = param("X-Tenant-ID");
            if path.starts_with("/api/v1/auth/") {
                let tenant = tenant.unwrap_or_else(|| panic!("{method} {path}: no X-Tenant-ID"));
                assert_eq!((tenant["in"].as_str(), tenant["required"].as_bool()), (Some("header"), Some(true)));
                assert!(codes(&op["responses"]["404"]).contains("TENANT_NOT_FOUND"), "{method} {path}");
            } else {
                assert!(tenant.is_none(), "{method} {path} needs no tenant");
            }
            let csrf = param("X-CSRF-Token");
            if method == "get" {
                assert!(csrf.is_none(), "{method} {path}");
            } else {
                assert!(csrf.is_some(), "{method} {path}: no X-CSRF-Token");
                assert!(codes(&op["responses"]["403"]).contains("CSRF_FAILED"), "{method} {path}");
            }
        }
    }
    // Rate limiting is off in the tests: no 429 documented.
    assert!(paths["/api/v1/auth/me"]["get"]["responses"].get("429").is_none());
}

/// The codes named by the examples of one response.
fn codes(response: &Value) -> BTreeSet<String> {
    response["content"]["application/json"]["examples"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, ex)| ex["value"]["detail"]["code"].as_str().map(str::to_owned))
        .collect()
}

/// API.md's table, read from the shared spec when it is there.
fn api_md_table() -> Option<Vec<(String, u16)>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/API.md");
    let text = std::fs::read_to_string(path).ok()?;
    let section = text.split("## Error codes").nth(1)?.split("\n## ").next()?;
    let mut out = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| code")) {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let (names, statuses) = (cols.get(1)?, cols.get(2)?);
        let statuses: Vec<u16> =
            statuses.split(" / ").filter_map(|s| s.split_whitespace().next()?.parse().ok()).collect();
        for (i, name) in names.split(" / ").enumerate() {
            out.push((name.to_owned(), *statuses.get(i).or(statuses.first())?));
        }
    }
    Some(out)
}

#[test]
fn the_code_table_here_is_api_md_s() {
    // Without the shared spec beside the repository the constant above stands alone.
    if let Some(table) = api_md_table() {
        let here: Vec<(String, u16)> = API_MD_CODES.iter().map(|(c, s)| ((*c).to_owned(), *s)).collect();
        assert_eq!(table, here, "API.md's error-code table changed: update API_MD_CODES");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_well_formed_openapi_3_1_naming_only_api_md_codes() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_, raw) = assembled(&app);
    let doc = document(&raw).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "fraise-auth");
    assert!(doc["info"]["version"].is_string());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    // Every reference resolves.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    let allowed = |code: &str, status: u16, path: &str| {
        API_MD_CODES.iter().chain(BEYOND_API_MD).any(|&(c, s)| c == code && s == status)
            || STATUS_EXCEPTIONS.iter().any(|&(p, c, s)| path.ends_with(p) && c == code && s == status)
    };
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            assert!(
                operation_ids.insert(op["operationId"].as_str().unwrap().to_owned()),
                "{at}: duplicate operationId"
            );
            assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{at}: no tag");
            // Path parameters are declared, required, in the path.
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                let declared = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true);
                assert!(declared, "{at}: path parameter {name} undeclared");
            }
            for requirement in op["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(doc["components"]["securitySchemes"].get(scheme).is_some(), "{at}: scheme {scheme}");
                }
            }
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.keys().any(|s| s.starts_with('2')), "{at}: no success response");
            for (status, response) in responses {
                assert!(response["description"].is_string(), "{at} {status}: no description");
                let status: u16 = status.parse().unwrap();
                if status < 400 || (path.starts_with("/health") && status == 503) {
                    continue;
                }
                let content = &response["content"]["application/json"];
                assert_eq!(content["schema"]["$ref"], "#/components/schemas/ErrorEnvelope", "{at} {status}");
                let codes = codes(response);
                assert!(!codes.is_empty(), "{at} {status}: no error code documented");
                for code in codes {
                    assert!(allowed(&code, status, path), "{at}: {status} {code} is not API.md's");
                }
            }
            // What every route shares.
            for (status, code) in [(500, "INTERNAL_ERROR"), (408, "REQUEST_TIMEOUT")] {
                assert!(codes(&responses[&status.to_string()]).contains(code), "{at}: {code}");
            }
            if op.get("requestBody").is_some() {
                for (status, code) in [(413, "PAYLOAD_TOO_LARGE"), (415, "UNSUPPORTED_MEDIA_TYPE")] {
                    assert!(codes(&responses[&status.to_string()]).contains(code), "{at}: {code}");
                }
            }
            if op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some())) {
                assert!(codes(&responses["401"]).contains("UNAUTHORIZED"), "{at}");
            }
        }
    }
    // The envelope's code enum is the set the server uses, all of them API.md's.
    for code in schemas["ErrorDetail"]["properties"]["code"]["enum"].as_array().unwrap() {
        let code = code.as_str().unwrap();
        assert!(API_MD_CODES.iter().chain(BEYOND_API_MD).any(|&(c, _)| c == code), "{code}");
    }
    assert_eq!(schemas["ErrorEnvelope"]["required"], serde_json::json!(["detail"]), "{}", schemas["ErrorEnvelope"]);
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_bodies_are_what_the_routes_send() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_, raw) = assembled(&app);
    let doc = document(&raw).await;
    let required = |schema: &str| -> BTreeSet<String> {
        let s = &doc["components"]["schemas"][schema];
        s["required"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    };
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    let reg = app.signed_up("doc@example.com").await;
    assert!(required("UserBody").is_subset(&keys(&reg.body["user"])));
    assert!(required("TokenBody").is_subset(&keys(&reg.body)));
    let token = reg.str("access_token");
    let list = app.call(Method::GET, "/auth/sessions", None, Some(&token)).await;
    assert!(required("SessionList").is_subset(&keys(&list.body)));
    assert!(required("SessionBody").is_subset(&keys(&list.body["sessions"][0])));
    let revoked = app.call(Method::DELETE, "/auth/sessions", None, Some(&token)).await;
    assert!(required("RevokedSessions").is_subset(&keys(&revoked.body)), "{}", revoked.text);
    let health = app.call(Method::GET, "/health", None, None).await;
    assert!(required("HealthReport").is_subset(&keys(&health.body)), "{}", health.text);
    let err = app.call(Method::GET, "/auth/me", None, None).await;
    assert!(required("ErrorEnvelope").is_subset(&keys(&err.body)));
    assert!(required("ErrorDetail").is_subset(&keys(&err.body["detail"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_works_offline_under_its_own_csp_and_only_there() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let default_csp = "default-src 'none'; frame-ancestors 'none'";
    let r = app.call(Method::GET, "/docs", None, None).await;
    assert_eq!((r.status.as_u16(), r.header("location")), (303, Some("/docs/")));
    let page = app.call(Method::GET, "/docs/", None, None).await;
    assert_eq!(page.status.as_u16(), 200);
    assert!(page.header("content-type").is_some_and(|ct| ct.starts_with("text/html")));
    assert_eq!(page.header("content-security-policy"), Some(fraise_http::docs::DOCS_CSP));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"] {
        assert!(page.text.contains(asset), "the page loads {asset}");
        let r = app.call(Method::GET, &format!("/docs/{asset}"), None, None).await;
        assert_eq!(r.status.as_u16(), 200, "{asset}");
        assert_eq!(r.header("content-security-policy"), Some(fraise_http::docs::DOCS_CSP));
    }
    let init = app.call(Method::GET, "/docs/swagger-initializer.js", None, None).await;
    assert!(init.text.contains("\"/openapi.json\""), "{}", init.text);
    // The relaxed policy is the docs pages' alone: an unknown asset, the document, the API.
    let missing = app.call(Method::GET, "/docs/nope.js", None, None).await;
    missing.assert(404, "NOT_FOUND");
    for r in [
        missing,
        app.call(Method::GET, "/openapi.json", None, None).await,
        app.call(Method::GET, "/auth/me", None, None).await,
    ] {
        assert_eq!(r.header("content-security-policy"), Some(default_csp), "{}", r.status);
    }
    // The API's own policy allows no script: the relaxed one allows only this origin's.
    let csp = fraise_http::docs::DOCS_CSP;
    assert!(csp.contains("script-src 'self';") && !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));

    let off = TestApp::spawn_with(Backend::Sqlite, &[("DOCS_ENABLED", "false")]).await;
    off.call(Method::GET, "/docs/", None, None).await.assert(404, "NOT_FOUND");
    off.call(Method::GET, "/openapi.json", None, None).await.assert(200, "");
}
