//! `/auth/webauthn/*`: passkeys. Registration, listing and removal (bearer), and sign-in with a
//! passkey, as the second factor of a password login (`mfa_token`) or passwordless. The bodies
//! of this group are defined here: they are its own and nothing else uses them.
//!
//! Every route answers 404 PASSKEYS_DISABLED while passkeys are not configured (`WEBAUTHN_RP_ID`,
//! `WEBAUTHN_ORIGIN`). The bearer routes stay open under `REQUIRE_MFA` (`EnrollingUser`): a passkey
//! is one of the second factors a user must be able to enroll.
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use fraise_core::service::CeremonyStart;
use fraise_core::store::PasskeyRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::dto::{AuthBody, MessageBody, UserBody, rfc3339_ms};
use crate::error::ApiError;
use crate::extract::{Auth, Client, EnrollingUser, JsonBody, OptionalJsonBody};
use crate::openapi::{ENROLLING_CODES, error_set};

/// What every route of the group can answer when passkeys are off.
const DISABLED: &[(u16, &str)] = &[(404, "PASSKEYS_DISABLED")];

error_set!(RegisterStartErrors = ENROLLING_CODES, DISABLED, &[(400, "VALIDATION_ERROR")]);
error_set!(RegisterFinishErrors = ENROLLING_CODES, DISABLED, &[(400, "VALIDATION_ERROR")]);
error_set!(ListErrors = ENROLLING_CODES, DISABLED);
error_set!(RemoveErrors = ENROLLING_CODES, DISABLED, &[(404, "CREDENTIAL_NOT_FOUND")]);
error_set!(LoginStartErrors = DISABLED, &[(400, "VALIDATION_ERROR"), (401, "MFA_TOKEN_EXPIRED")]);
error_set!(
    LoginFinishErrors = DISABLED,
    &[
        (400, "VALIDATION_ERROR"),
        (401, "INVALID_MFA_CODE"),
        (401, "MFA_TOKEN_EXPIRED"),
        (403, "ACCOUNT_DISABLED"),
        (403, "EMAIL_NOT_VERIFIED"),
        (423, "ACCOUNT_LOCKED"),
    ]
);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(passkey_register_start))
        .routes(routes!(passkey_register_finish))
        .routes(routes!(passkey_list))
        .routes(routes!(passkey_remove))
        .routes(routes!(passkey_login_start))
        .routes(routes!(passkey_login_finish))
}

/// A started ceremony.
#[derive(Debug, Serialize, ToSchema)]
pub struct CeremonyBody {
    /// Send it back with the finish; single use, valid five minutes.
    pub ceremony_id: String,
    /// For the browser: `navigator.credentials.create(options)` at registration,
    /// `navigator.credentials.get(options)` at sign-in, after decoding the base64url members
    /// (`challenge`, `user.id`, `excludeCredentials[].id`, `allowCredentials[].id`) to bytes.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

impl From<CeremonyStart> for CeremonyBody {
    fn from(c: CeremonyStart) -> Self {
        Self { ceremony_id: c.ceremony_id.to_string(), options: c.options }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterFinishRequest {
    pub ceremony_id: String,
    /// A label for the list ("Laptop"); "Passkey" when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// The `PublicKeyCredential` from `navigator.credentials.create`, in its JSON form
    /// (`PublicKeyCredential.toJSON()`: `id`, `rawId`, `type`, `response.attestationObject`,
    /// `response.clientDataJSON`, binary members base64url).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct LoginStartRequest {
    /// From the login's `{"mfa_required": true, ...}` answer. Absent: passwordless sign-in
    /// (only with `WEBAUTHN_PASSWORDLESS=true`).
    #[serde(default)]
    pub mfa_token: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginFinishRequest {
    pub ceremony_id: String,
    /// The same token as at the start; absent for a passwordless sign-in.
    #[serde(default)]
    pub mfa_token: Option<String>,
    /// The `PublicKeyCredential` from `navigator.credentials.get`, in its JSON form
    /// (`response.authenticatorData`, `response.clientDataJSON`, `response.signature`,
    /// `response.userHandle`, binary members base64url).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// Leaves the credential and the token out.
impl std::fmt::Debug for RegisterFinishRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterFinishRequest").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Leaves the credential and the token out.
impl std::fmt::Debug for LoginFinishRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginFinishRequest").finish_non_exhaustive()
    }
}

/// A registered passkey, as its owner sees it (no key material).
#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyBody {
    pub id: String,
    pub name: String,
    #[serde(serialize_with = "rfc3339_ms")]
    #[schema(example = "2025-01-22T10:00:00.000Z")]
    pub created_at: DateTime<Utc>,
    /// `null` until the first sign-in with it.
    #[serde(serialize_with = "opt_rfc3339_ms")]
    #[schema(value_type = Option<String>)]
    pub last_used_at: Option<DateTime<Utc>>,
}

fn opt_rfc3339_ms<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339_ms(t, s),
        None => s.serialize_none(),
    }
}

impl From<&PasskeyRecord> for PasskeyBody {
    fn from(r: &PasskeyRecord) -> Self {
        Self { id: r.id.to_string(), name: r.name.clone(), created_at: r.created_at, last_used_at: r.last_used_at }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyList {
    pub credentials: Vec<PasskeyBody>,
}

/// Starts registering a passkey for the caller.
#[utoipa::path(
    post,
    path = "/webauthn/register/start",
    tag = "passkeys",
    security(("bearer" = [])),
    responses((status = 200, description = "Options for `navigator.credentials.create`; the caller's passkeys are excluded.", body = CeremonyBody), RegisterStartErrors)
)]
async fn passkey_register_start(
    Auth(auth): Auth,
    EnrollingUser(p): EnrollingUser,
) -> Result<Json<CeremonyBody>, ApiError> {
    Ok(Json(auth.passkey_register_start(&p).await?.into()))
}

/// Finishes registering a passkey: verifies the authenticator's answer and stores the passkey.
#[utoipa::path(
    post,
    path = "/webauthn/register/finish",
    tag = "passkeys",
    request_body = RegisterFinishRequest,
    security(("bearer" = [])),
    responses((status = 201, description = "Registered.", body = PasskeyBody), RegisterFinishErrors)
)]
async fn passkey_register_finish(
    Auth(auth): Auth,
    EnrollingUser(p): EnrollingUser,
    Client(client): Client,
    JsonBody(body): JsonBody<RegisterFinishRequest>,
) -> Result<(StatusCode, Json<PasskeyBody>), ApiError> {
    let record =
        auth.passkey_register_finish(&p, &body.ceremony_id, body.name.as_deref(), &body.credential, &client).await?;
    Ok((StatusCode::CREATED, Json(PasskeyBody::from(&record))))
}

/// The caller's passkeys.
#[utoipa::path(
    get,
    path = "/webauthn/credentials",
    tag = "passkeys",
    security(("bearer" = [])),
    responses((status = 200, description = "Oldest first.", body = PasskeyList), ListErrors)
)]
async fn passkey_list(Auth(auth): Auth, EnrollingUser(p): EnrollingUser) -> Result<Json<PasskeyList>, ApiError> {
    let records = auth.list_passkeys(&p).await?;
    Ok(Json(PasskeyList { credentials: records.iter().map(PasskeyBody::from).collect() }))
}

/// Removes one of the caller's passkeys.
#[utoipa::path(
    delete,
    path = "/webauthn/credentials/{credential_id}",
    tag = "passkeys",
    params(("credential_id" = String, Path, description = "The `id` of a passkey, as listed")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Removed.", body = MessageBody, example = json!({"message": "Passkey removed"})),
        RemoveErrors,
    )
)]
async fn passkey_remove(
    Auth(auth): Auth,
    EnrollingUser(p): EnrollingUser,
    Client(client): Client,
    Path(credential_id): Path<String>,
) -> Result<Json<MessageBody>, ApiError> {
    auth.remove_passkey(&p, &credential_id, &client).await?;
    Ok(Json(MessageBody { message: "Passkey removed" }))
}

/// Starts a sign-in with a passkey: as the second factor (`mfa_token`), or passwordless.
#[utoipa::path(
    post,
    path = "/webauthn/login/start",
    tag = "passkeys",
    request_body(content = Option<LoginStartRequest>, description = "`{\"mfa_token\"}`; empty for a passwordless sign-in."),
    responses((status = 200, description = "Options for `navigator.credentials.get`.", body = CeremonyBody), LoginStartErrors)
)]
async fn passkey_login_start(
    Auth(auth): Auth,
    OptionalJsonBody(body): OptionalJsonBody<LoginStartRequest>,
) -> Result<Json<CeremonyBody>, ApiError> {
    Ok(Json(auth.passkey_login_start(body.mfa_token.as_deref()).await?.into()))
}

/// Finishes a sign-in with a passkey: a session, as `/auth/login` answers.
#[utoipa::path(
    post,
    path = "/webauthn/login/finish",
    tag = "passkeys",
    request_body = LoginFinishRequest,
    responses(
        (status = 200, description = "Logged in. With `TOKEN_TRANSPORT=cookie` the refresh token is only in the `fraise_refresh` cookie (`Set-Cookie`).", body = AuthBody),
        LoginFinishErrors,
    )
)]
async fn passkey_login_finish(
    State(state): State<AppState>,
    Auth(auth): Auth,
    Client(client): Client,
    JsonBody(body): JsonBody<LoginFinishRequest>,
) -> Result<Response, ApiError> {
    let out =
        auth.passkey_login_finish(&body.ceremony_id, body.mfa_token.as_deref(), &body.credential, &client).await?;
    Ok(super::auth::deliver(&state, StatusCode::OK, out.tokens.into(), Some(UserBody::from(&out.user))).into_response())
}
