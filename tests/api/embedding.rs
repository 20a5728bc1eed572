//! Another axum application protecting its own routes with `AuthUser` (what
//! `examples/protect_routes.rs` shows), including the session check.
use axum::Router;
use axum::body::Body;
use axum::extract::FromRef;
use axum::http::Request;
use axum::routing::get;
use fraise_core::AuthService;
use fraise_http::AuthUser;
use http_body_util::BodyExt as _;
use serde_json::json;
use tower::ServiceExt as _;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

#[derive(Clone)]
struct HostState {
    auth: AuthService,
}

impl FromRef<HostState> for AuthService {
    fn from_ref(s: &HostState) -> Self {
        s.auth.clone()
    }
}

async fn call(router: &Router, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = Request::get("/api/whoami");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

async fn a_host_app_accepts_our_tokens_and_follows_logout(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let host = Router::new()
        .route("/api/whoami", get(|AuthUser(p): AuthUser| async move { p.user.email }))
        .with_state(HostState { auth: app.auth.clone() });
    let reg = app.signed_up("host@example.com").await;
    let (status, _) = call(&host, Some(&reg.str("access_token"))).await;
    assert_eq!(status, 200);
    let (status, body) = call(&host, None).await;
    assert_eq!((status, body["detail"]["code"].as_str()), (401, Some("UNAUTHORIZED")));
    app.logout(json!({"refresh_token": reg.str("refresh_token")}), None).await.assert(200, "");
    let (status, body) = call(&host, Some(&reg.str("access_token"))).await;
    assert_eq!((status, body["detail"]["code"].as_str()), (401, Some("INVALID_TOKEN")));
}

both_backends!(a_host_app_accepts_our_tokens_and_follows_logout);
