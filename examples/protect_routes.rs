//! Protecting your own axum routes with fraise-auth access tokens.
//!
//! Run: `cargo run --example protect_routes` (SQLite in ./data, port 8001; same environment
//! variables as `fraise-auth serve`). Then:
//!
//! ```sh
//! TOKEN=$(curl -s localhost:8001/auth/register -H 'content-type: application/json' \
//!   -d '{"email":"me@example.com","password":"TestPass123!"}' | jq -r .access_token)
//! curl -s localhost:8001/api/notes -H "authorization: Bearer $TOKEN"   # 200
//! curl -s localhost:8001/api/notes                                     # 401 UNAUTHORIZED
//! ```
//!
//! `AuthUser` verifies the token *and* the session: after `POST /auth/logout` the same token is
//! refused by `/api/notes` at once.
#![allow(clippy::expect_used)]

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::{Json, Router};
use fraise_auth::boot::{self, Db};
use fraise_auth::config::{Config, Sources};
use fraise_core::{AuthService, SystemClock};
use fraise_http::AuthUser;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

/// The host application's own state: anything it likes, plus an `AuthService`.
#[derive(Clone)]
struct NotesState {
    auth: AuthService,
    motd: &'static str,
}

impl FromRef<NotesState> for AuthService {
    fn from_ref(s: &NotesState) -> Self {
        s.auth.clone()
    }
}

/// Only reachable with a valid access token of a live session.
async fn notes(AuthUser(me): AuthUser, State(state): State<NotesState>) -> Json<Value> {
    Json(json!({
        "owner": me.user.email,
        "roles": me.claims.roles,
        "session": me.session.id.to_string(),
        "motd": state.motd,
        "notes": ["fraise-auth guards this route"],
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let sources = Sources::gather(None, &[("PORT", std::env::var("PORT").ok().or(Some("8001".into())))])
        .map_err(anyhow::Error::msg)?;
    let cfg = Config::from_sources(&sources).map_err(anyhow::Error::msg)?;
    cfg.check_secret().map_err(anyhow::Error::msg)?;
    let (secret, _) = cfg.resolve_secret().map_err(anyhow::Error::msg)?;
    let db = Db::open(&cfg).await?;
    db.migrate().await?;
    let auth = boot::service(&cfg, db.store(), secret.expose_secret().as_bytes(), Arc::new(SystemClock))?;

    // fraise-auth's own routes (/auth/*, /health) ...
    let tenants = boot::tenants(&cfg, &db, &auth);
    let auth_app = fraise_http::app(boot::state(&cfg, auth.clone(), tenants)?);
    // ... and the host's routes, protected by the `AuthUser` extractor.
    let mine = Router::new().route("/api/notes", get(notes)).with_state(NotesState { auth, motd: "hello" });
    let app = auth_app.merge(mine);

    let listener = tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)).await?;
    tracing::info!(address = %listener.local_addr()?, "example listening");
    fraise_http::serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
