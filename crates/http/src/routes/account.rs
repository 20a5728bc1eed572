//! The account lifecycle: `PATCH /auth/me`, change, forgot and reset password, email
//! verification.
use axum::routing::post;
use axum::{Json, Router};

use crate::AppState;
use crate::dto::{
    ChangePasswordRequest, EmailRequest, MessageBody, OptionalEmail, PatchMeRequest, ResetPasswordRequest,
    TokenRequest, UserBody,
};
use crate::error::ApiError;
use crate::extract::{Auth, AuthUser, Client, JsonBody, MaybeAuthUser, OptionalJsonBody};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/change-password", post(change_password))
        .route("/forgot-password", post(forgot_password))
        .route("/reset-password", post(reset_password))
        .route("/verify-email/request", post(request_verification))
        .route("/verify-email", post(verify_email))
}

pub async fn patch_me(
    Auth(auth): Auth,
    AuthUser(p): AuthUser,
    JsonBody(body): JsonBody<PatchMeRequest>,
) -> Result<Json<UserBody>, ApiError> {
    let user = auth.update_profile(&p, body.name, body.metadata).await?;
    Ok(Json(UserBody::from(&user)))
}

async fn change_password(
    Auth(auth): Auth,
    AuthUser(p): AuthUser,
    Client(client): Client,
    JsonBody(body): JsonBody<ChangePasswordRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    auth.change_password(&p, &body.current_password, &body.new_password, &client).await?;
    Ok(Json(MessageBody { message: "Password changed successfully" }))
}

/// Always the same answer, whether or not the account exists.
async fn forgot_password(
    Auth(auth): Auth,
    Client(client): Client,
    JsonBody(body): JsonBody<EmailRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    auth.forgot_password(&body.email, &client)?;
    Ok(Json(MessageBody { message: "If an account exists for this email, a password reset link has been sent" }))
}

async fn reset_password(
    Auth(auth): Auth,
    Client(client): Client,
    JsonBody(body): JsonBody<ResetPasswordRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    auth.reset_password(&body.token, &body.new_password, &client).await?;
    Ok(Json(MessageBody { message: "Password has been reset successfully" }))
}

/// With a bearer: mail the caller a link. Without one, `{"email"}`: the same for that address, in
/// the background and with the same answer whether or not it exists (a user who cannot log in
/// before verifying needs a way to get a new link).
async fn request_verification(
    Auth(auth): Auth,
    MaybeAuthUser(bearer): MaybeAuthUser,
    Client(client): Client,
    OptionalJsonBody(body): OptionalJsonBody<OptionalEmail>,
) -> Result<Json<MessageBody>, ApiError> {
    match (bearer, body.email) {
        (Some(Ok(p)), _) => auth.request_verification(&p, &client).await?,
        (Some(Err(e)), _) => return Err(e.into()),
        (None, Some(email)) => auth.resend_verification(&email, &client)?,
        (None, None) => return Err(fraise_core::AuthError::Unauthorized.into()),
    }
    Ok(Json(MessageBody { message: "If the address needs verifying, a verification email has been sent" }))
}

async fn verify_email(
    Auth(auth): Auth,
    Client(client): Client,
    JsonBody(body): JsonBody<TokenRequest>,
) -> Result<Json<UserBody>, ApiError> {
    let user = auth.verify_email(&body.token, &client).await?;
    Ok(Json(UserBody::from(&user)))
}
