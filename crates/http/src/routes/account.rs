//! The account lifecycle: `PATCH /auth/me`, change, forgot and reset password, email
//! verification.
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use fraise_core::AuthService;

use crate::AppState;
use crate::dto::{
    ChangePasswordRequest, EmailRequest, MessageBody, PatchMeRequest, ResetPasswordRequest, TokenRequest, UserBody,
};
use crate::error::ApiError;
use crate::extract::{AuthUser, Client, JsonBody};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/change-password", post(change_password))
        .route("/forgot-password", post(forgot_password))
        .route("/reset-password", post(reset_password))
        .route("/verify-email/request", post(request_verification))
        .route("/verify-email", post(verify_email))
}

pub async fn patch_me(
    State(auth): State<AuthService>,
    AuthUser(p): AuthUser,
    JsonBody(body): JsonBody<PatchMeRequest>,
) -> Result<Json<UserBody>, ApiError> {
    let user = auth.update_profile(&p, body.name, body.metadata).await?;
    Ok(Json(UserBody::from(&user)))
}

async fn change_password(
    State(auth): State<AuthService>,
    AuthUser(p): AuthUser,
    Client(client): Client,
    JsonBody(body): JsonBody<ChangePasswordRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    auth.change_password(&p, &body.current_password, &body.new_password, &client).await?;
    Ok(Json(MessageBody { message: "Password changed successfully" }))
}

/// Always the same answer, whether or not the account exists.
async fn forgot_password(
    State(auth): State<AuthService>,
    Client(client): Client,
    JsonBody(body): JsonBody<EmailRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    auth.forgot_password(&body.email, &client)?;
    Ok(Json(MessageBody { message: "If an account exists for this email, a password reset link has been sent" }))
}

async fn reset_password(
    State(auth): State<AuthService>,
    Client(client): Client,
    JsonBody(body): JsonBody<ResetPasswordRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    auth.reset_password(&body.token, &body.new_password, &client).await?;
    Ok(Json(MessageBody { message: "Password has been reset successfully" }))
}

async fn request_verification(
    State(auth): State<AuthService>,
    AuthUser(p): AuthUser,
    Client(client): Client,
) -> Result<Json<MessageBody>, ApiError> {
    auth.request_verification(&p, &client).await?;
    Ok(Json(MessageBody { message: "Verification email sent" }))
}

async fn verify_email(
    State(auth): State<AuthService>,
    Client(client): Client,
    JsonBody(body): JsonBody<TokenRequest>,
) -> Result<Json<UserBody>, ApiError> {
    let user = auth.verify_email(&body.token, &client).await?;
    Ok(Json(UserBody::from(&user)))
}
