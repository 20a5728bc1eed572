//! `/auth/sessions`: list the caller's sessions, revoke one, revoke all the others.
use axum::extract::Path;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;
use crate::dto::{MessageBody, SessionBody};
use crate::error::ApiError;
use crate::extract::{Auth, AuthUser, Client};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(list).delete(revoke_others))
        .route("/sessions/{session_id}", delete(revoke_one))
}

async fn list(Auth(auth): Auth, AuthUser(p): AuthUser) -> Result<Json<Value>, ApiError> {
    let sessions = auth.list_sessions(&p).await?;
    let body: Vec<SessionBody> = sessions.iter().map(|s| SessionBody::new(s, p.session.id)).collect();
    Ok(Json(json!({ "sessions": body })))
}

async fn revoke_one(
    Auth(auth): Auth,
    AuthUser(p): AuthUser,
    Client(client): Client,
    Path(session_id): Path<String>,
) -> Result<Json<MessageBody>, ApiError> {
    auth.revoke_own_session(&p, &session_id, &client).await?;
    Ok(Json(MessageBody { message: "Session revoked successfully" }))
}

async fn revoke_others(
    Auth(auth): Auth,
    AuthUser(p): AuthUser,
    Client(client): Client,
) -> Result<Json<Value>, ApiError> {
    let revoked = auth.revoke_other_sessions(&p, &client).await?;
    Ok(Json(json!({"message": "Other sessions revoked successfully", "revoked_count": revoked})))
}
