//! The account lifecycle: `PATCH /auth/me`, change, forgot and reset password, email
//! verification.
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::dto::{
    ChangePasswordRequest, EmailRequest, MessageBody, OptionalEmail, PatchMeRequest, ResetPasswordRequest,
    TokenRequest, UserBody,
};
use crate::error::ApiError;
use crate::extract::{Auth, AuthUser, Client, JsonBody, MaybeAuthUser, OptionalJsonBody};
use crate::openapi::{BEARER_CODES, error_set};

error_set!(PatchMeErrors = BEARER_CODES, &[(400, "VALIDATION_ERROR")]);
error_set!(
    ChangePasswordErrors = BEARER_CODES,
    &[(400, "VALIDATION_ERROR"), (400, "WEAK_PASSWORD"), (423, "ACCOUNT_LOCKED")]
);
error_set!(ForgotPasswordErrors = &[(400, "VALIDATION_ERROR"), (429, "RATE_LIMITED")]);
error_set!(ResetPasswordErrors = &[(400, "VALIDATION_ERROR"), (400, "INVALID_RESET_TOKEN"), (400, "WEAK_PASSWORD")]);
error_set!(RequestVerificationErrors = BEARER_CODES, &[(400, "VALIDATION_ERROR"), (429, "RATE_LIMITED")]);
error_set!(VerifyEmailErrors = &[(400, "VALIDATION_ERROR"), (400, "INVALID_RESET_TOKEN")]);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(change_password))
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password))
        .routes(routes!(request_verification))
        .routes(routes!(verify_email))
}

/// Updates the caller's `name` and/or `metadata`; any other field is refused.
#[utoipa::path(
    patch,
    path = "/me",
    tag = "account",
    request_body = PatchMeRequest,
    security(("bearer" = [])),
    responses((status = 200, description = "The updated account.", body = UserBody), PatchMeErrors)
)]
pub async fn patch_me(
    Auth(auth): Auth,
    AuthUser(p): AuthUser,
    JsonBody(body): JsonBody<PatchMeRequest>,
) -> Result<Json<UserBody>, ApiError> {
    let user = auth.update_profile(&p, body.name, body.metadata).await?;
    Ok(Json(UserBody::from(&user)))
}

/// Changes the caller's password; every other session of the user is revoked.
#[utoipa::path(
    post,
    path = "/change-password",
    tag = "account",
    request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed.", body = MessageBody, example = json!({"message": "Password changed successfully"})),
        ChangePasswordErrors,
    )
)]
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
#[utoipa::path(
    post,
    path = "/forgot-password",
    tag = "account",
    request_body = EmailRequest,
    responses(
        (status = 200, description = "Always the same answer; the email, if the account exists, goes out in the background.", body = MessageBody, example = json!({"message": "If an account exists for this email, a password reset link has been sent"})),
        ForgotPasswordErrors,
    )
)]
async fn forgot_password(
    Auth(auth): Auth,
    Client(client): Client,
    JsonBody(body): JsonBody<EmailRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    auth.forgot_password(&body.email, &client)?;
    Ok(Json(MessageBody { message: "If an account exists for this email, a password reset link has been sent" }))
}

/// Sets a new password with an emailed reset token; every session of the user is revoked.
#[utoipa::path(
    post,
    path = "/reset-password",
    tag = "account",
    request_body = ResetPasswordRequest,
    responses(
        (status = 200, description = "Reset.", body = MessageBody, example = json!({"message": "Password has been reset successfully"})),
        ResetPasswordErrors,
    )
)]
async fn reset_password(
    Auth(auth): Auth,
    Client(client): Client,
    JsonBody(body): JsonBody<ResetPasswordRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    auth.reset_password(&body.token, &body.new_password, &client).await?;
    Ok(Json(MessageBody { message: "Password has been reset successfully" }))
}

/// Mails an email-verification link.
///
/// With a bearer: mail the caller a link. Without one, `{"email"}`: the same for that address, in
/// the background and with the same answer whether or not it exists (a user who cannot log in
/// before verifying needs a way to get a new link).
#[utoipa::path(
    post,
    path = "/verify-email/request",
    tag = "account",
    request_body(content = Option<OptionalEmail>, description = "Empty with a bearer; `{\"email\"}` without one."),
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "Same answer whether or not a message was sent.", body = MessageBody, example = json!({"message": "If the address needs verifying, a verification email has been sent"})),
        RequestVerificationErrors,
    )
)]
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

/// Marks the email verified with an emailed verification token.
#[utoipa::path(
    post,
    path = "/verify-email",
    tag = "account",
    request_body = TokenRequest,
    responses((status = 200, description = "Verified: the account, `email_verified: true`.", body = UserBody), VerifyEmailErrors)
)]
async fn verify_email(
    Auth(auth): Auth,
    Client(client): Client,
    JsonBody(body): JsonBody<TokenRequest>,
) -> Result<Json<UserBody>, ApiError> {
    let user = auth.verify_email(&body.token, &client).await?;
    Ok(Json(UserBody::from(&user)))
}
