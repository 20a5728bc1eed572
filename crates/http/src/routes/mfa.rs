//! `/auth/mfa/*`: TOTP enrollment and removal, and the second step of a login. The enrollment
//! routes take [`EnrollingUser`], so they work under `REQUIRE_MFA` before there is a factor.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::deliver;
use crate::AppState;
use crate::dto::{
    AuthBody, MessageBody, MfaVerifyRequest, RecoveryCodesBody, RemoveTotpRequest, TotpCodeRequest, TotpSetupBody,
    UserBody,
};
use crate::error::ApiError;
use crate::extract::{Auth, Client, EnrollingUser, JsonBody, OptionalJsonBody};
use crate::openapi::{ENROLLING_CODES, error_set};

error_set!(SetupErrors = ENROLLING_CODES, &[(400, "VALIDATION_ERROR")]);
error_set!(ConfirmErrors = ENROLLING_CODES, &[(400, "VALIDATION_ERROR"), (401, "INVALID_MFA_CODE")]);
error_set!(
    RemoveErrors = ENROLLING_CODES,
    &[(400, "VALIDATION_ERROR"), (401, "INVALID_MFA_CODE"), (401, "INVALID_CREDENTIALS"), (423, "ACCOUNT_LOCKED")]
);
error_set!(
    VerifyErrors = &[
        (400, "VALIDATION_ERROR"),
        (401, "INVALID_MFA_CODE"),
        (401, "MFA_TOKEN_EXPIRED"),
        (403, "ACCOUNT_DISABLED"),
        (423, "ACCOUNT_LOCKED"),
    ]
);

/// Lives inside the auth router (its `no-store` headers cover these answers too).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(totp_setup))
        .routes(routes!(totp_confirm))
        .routes(routes!(totp_remove))
        .routes(routes!(verify))
}

/// Starts TOTP enrollment: a new secret (pending until confirmed), its `otpauth://` URI and QR
/// code. Calling it again replaces a pending secret; with TOTP already on it is refused.
#[utoipa::path(
    post,
    path = "/mfa/totp/setup",
    tag = "mfa",
    security(("bearer" = [])),
    responses((status = 200, description = "The secret, shown once.", body = TotpSetupBody), SetupErrors)
)]
async fn totp_setup(
    Auth(auth): Auth,
    Client(client): Client,
    EnrollingUser(p): EnrollingUser,
) -> Result<Json<TotpSetupBody>, ApiError> {
    let s = auth.totp_setup(&p, &client).await?;
    Ok(Json(TotpSetupBody { secret: s.secret, otpauth_uri: s.otpauth_uri, qr_svg: s.qr_svg }))
}

/// Turns TOTP on with the first code from the app; answers the ten recovery codes, shown once.
#[utoipa::path(
    post,
    path = "/mfa/totp/confirm",
    tag = "mfa",
    request_body = TotpCodeRequest,
    security(("bearer" = [])),
    responses((status = 200, description = "TOTP is on.", body = RecoveryCodesBody), ConfirmErrors)
)]
async fn totp_confirm(
    Auth(auth): Auth,
    Client(client): Client,
    EnrollingUser(p): EnrollingUser,
    JsonBody(body): JsonBody<TotpCodeRequest>,
) -> Result<Json<RecoveryCodesBody>, ApiError> {
    let recovery_codes = auth.totp_confirm(&p, &body.code, &client).await?;
    Ok(Json(RecoveryCodesBody { recovery_codes }))
}

/// Turns TOTP off (and voids the recovery codes), given a current code, a recovery code, or the
/// password.
#[utoipa::path(
    delete,
    path = "/mfa/totp",
    tag = "mfa",
    request_body = RemoveTotpRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "TOTP is off.", body = MessageBody, example = json!({"message": "TOTP disabled"})),
        RemoveErrors,
    )
)]
async fn totp_remove(
    Auth(auth): Auth,
    Client(client): Client,
    EnrollingUser(p): EnrollingUser,
    OptionalJsonBody(body): OptionalJsonBody<RemoveTotpRequest>,
) -> Result<Json<MessageBody>, ApiError> {
    auth.totp_remove(&p, body.code.as_deref(), body.password.as_deref(), &client).await?;
    Ok(Json(MessageBody { message: "TOTP disabled" }))
}

/// The second step of a login that answered `mfa_required`: a TOTP code or a recovery code. The
/// `mfa_token` is single use and allows five tries.
#[utoipa::path(
    post,
    path = "/mfa/verify",
    tag = "mfa",
    request_body = MfaVerifyRequest,
    responses(
        (status = 200, description = "Logged in, as by `/auth/login`.", body = AuthBody),
        VerifyErrors,
    )
)]
async fn verify(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Client(client): Client,
    JsonBody(body): JsonBody<MfaVerifyRequest>,
) -> Result<Response, ApiError> {
    let out = auth.mfa_verify(&body.mfa_token, &body.code, &client).await?;
    Ok(deliver(&state, StatusCode::OK, out.tokens.into(), Some(UserBody::from(&out.user))))
}
