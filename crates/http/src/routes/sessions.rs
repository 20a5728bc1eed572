//! `/auth/sessions`: list the caller's sessions, revoke one, revoke all the others.
use axum::Json;
use axum::extract::Path;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::dto::{MessageBody, RevokedSessions, SessionBody, SessionList};
use crate::error::ApiError;
use crate::extract::{Auth, AuthUser, Client};
use crate::openapi::{BEARER_CODES, BearerErrors, error_set};

error_set!(RevokeOneErrors = BEARER_CODES, &[(403, "CANNOT_REVOKE_CURRENT_SESSION"), (404, "SESSION_NOT_FOUND")]);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, revoke_others)).routes(routes!(revoke_one))
}

/// The caller's live sessions.
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "sessions",
    security(("bearer" = [])),
    responses((status = 200, description = "Live sessions; `is_current` marks the caller's.", body = SessionList), BearerErrors)
)]
async fn list(Auth(auth): Auth, AuthUser(p): AuthUser) -> Result<Json<SessionList>, ApiError> {
    let sessions = auth.list_sessions(&p).await?;
    let sessions = sessions.iter().map(|s| SessionBody::new(s, p.session.id)).collect();
    Ok(Json(SessionList { sessions }))
}

/// Ends one of the caller's other sessions.
#[utoipa::path(
    delete,
    path = "/sessions/{session_id}",
    tag = "sessions",
    params(("session_id" = String, Path, description = "`sess_<uuid>`, as listed")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked.", body = MessageBody, example = json!({"message": "Session revoked successfully"})),
        RevokeOneErrors,
    )
)]
async fn revoke_one(
    Auth(auth): Auth,
    AuthUser(p): AuthUser,
    Client(client): Client,
    Path(session_id): Path<String>,
) -> Result<Json<MessageBody>, ApiError> {
    auth.revoke_own_session(&p, &session_id, &client).await?;
    Ok(Json(MessageBody { message: "Session revoked successfully" }))
}

/// Ends every session of the caller but the current one.
#[utoipa::path(
    delete,
    path = "/sessions",
    tag = "sessions",
    security(("bearer" = [])),
    responses((status = 200, description = "How many were ended.", body = RevokedSessions), BearerErrors)
)]
async fn revoke_others(
    Auth(auth): Auth,
    AuthUser(p): AuthUser,
    Client(client): Client,
) -> Result<Json<RevokedSessions>, ApiError> {
    let revoked_count = auth.revoke_other_sessions(&p, &client).await?;
    Ok(Json(RevokedSessions { message: "Other sessions revoked successfully", revoked_count }))
}
