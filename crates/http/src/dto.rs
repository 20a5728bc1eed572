//! Request and response bodies, exactly as API.md spells them; each is also a schema of the
//! OpenAPI document (`ToSchema`), so the document describes the types that are really serialized.
use chrono::{DateTime, SecondsFormat, Utc};
use fraise_core::model::User;
use fraise_core::service::{Authenticated, Tokens};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

/// RFC 3339, UTC, milliseconds: `2025-01-22T10:00:00.000Z`.
pub fn rfc3339_ms<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Default, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// Absent when the token travels in the cookie.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[derive(Default, Deserialize, ToSchema)]
pub struct LogoutRequest {
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub all: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserBody {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    /// A JSON object.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub is_active: bool,
    pub email_verified: bool,
    /// Whether a second factor is enrolled (then login answers with an `mfa_token`).
    pub mfa_enabled: bool,
    /// The second factors enrolled: `totp`, `webauthn`.
    #[schema(example = json!(["totp"]))]
    pub mfa_methods: Vec<&'static str>,
    #[serde(serialize_with = "rfc3339_ms")]
    #[schema(example = "2025-01-22T10:00:00.000Z")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_ms")]
    pub updated_at: DateTime<Utc>,
}

impl From<&User> for UserBody {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.clone(),
            name: u.name.clone(),
            roles: u.roles.clone(),
            permissions: u.permissions.clone(),
            metadata: u.metadata.clone(),
            is_active: u.is_active,
            email_verified: u.email_verified,
            mfa_enabled: u.mfa.is_enabled(),
            mfa_methods: u.mfa.names(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenBody {
    pub access_token: String,
    /// Left out when `TOKEN_TRANSPORT=cookie`: then it travels only in the HttpOnly cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    #[serde(serialize_with = "rfc3339_ms")]
    pub expires_at: DateTime<Utc>,
}

impl From<Tokens> for TokenBody {
    fn from(t: Tokens) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: Some(t.refresh_token),
            token_type: "bearer",
            expires_at: t.expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthBody {
    pub user: UserBody,
    #[serde(flatten)]
    pub tokens: TokenBody,
}

impl From<Authenticated> for AuthBody {
    fn from(a: Authenticated) -> Self {
        Self { user: UserBody::from(&a.user), tokens: a.tokens.into() }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageBody {
    pub message: &'static str,
}

/// Leaves passwords and tokens out.
impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest").field("email", &self.email).field("name", &self.name).finish_non_exhaustive()
    }
}

/// Leaves passwords and tokens out.
impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest").field("email", &self.email).finish_non_exhaustive()
    }
}

/// Leaves passwords and tokens out.
impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRequest").finish_non_exhaustive()
    }
}

/// Leaves passwords and tokens out.
impl std::fmt::Debug for LogoutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutRequest").field("all", &self.all).finish_non_exhaustive()
    }
}

/// The device behind a session, parsed from its User-Agent (woothee); `null` where unknown.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceInfo {
    pub user_agent: Option<String>,
    pub platform: Option<String>,
    pub browser: Option<String>,
}

impl DeviceInfo {
    pub fn from_user_agent(ua: Option<&str>) -> Self {
        let parsed = ua.and_then(|ua| woothee::parser::Parser::new().parse(ua));
        let known = |v: &str| (!v.is_empty() && v != "UNKNOWN").then(|| v.to_owned());
        Self {
            user_agent: ua.map(str::to_owned),
            platform: parsed.as_ref().and_then(|p| known(p.os)),
            browser: parsed.as_ref().and_then(|p| known(p.name)),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBody {
    #[schema(example = "sess_6f1c2b1e-8a43-4a55-9d2e-4c1b2a3d4e5f")]
    pub id: String,
    pub device_info: DeviceInfo,
    pub ip_address: Option<String>,
    #[serde(serialize_with = "rfc3339_ms")]
    #[schema(example = "2025-01-22T10:00:00.000Z")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_ms")]
    pub last_active: DateTime<Utc>,
    pub is_current: bool,
}

impl SessionBody {
    pub fn new(s: &fraise_core::model::Session, current: fraise_core::model::SessionId) -> Self {
        Self {
            id: s.id.to_string(),
            device_info: DeviceInfo::from_user_agent(s.user_agent.as_deref()),
            ip_address: s.ip_address.clone(),
            created_at: s.created_at,
            last_active: s.last_active,
            is_current: s.id == current,
        }
    }
}

/// `GET /auth/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionBody>,
}

/// `DELETE /auth/sessions`: every session but the current one.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedSessions {
    pub message: &'static str,
    pub revoked_count: u64,
}

#[derive(Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EmailRequest {
    pub email: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct OptionalEmail {
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct ResetPasswordRequest {
    pub token: String,
    pub new_password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    pub token: String,
}

/// `PATCH /auth/me`: only these two fields; anything else is refused, not ignored, so a client
/// that tries to set `roles` or `email` learns it cannot.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchMeRequest {
    /// Absent: unchanged; `null`: cleared; a string: set.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    /// A JSON object of at most 16 KiB; absent: unchanged.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// Distinguishes a field sent as `null` (`Some(None)`) from one not sent (`None`, via `default`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl std::fmt::Debug for ChangePasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangePasswordRequest { .. }")
    }
}

impl std::fmt::Debug for ResetPasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetPasswordRequest { .. }")
    }
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenRequest { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_info_names_platform_and_browser_or_null() {
        let d = DeviceInfo::from_user_agent(Some(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        ));
        assert_eq!((d.platform.as_deref(), d.browser.as_deref()), (Some("Windows 10"), Some("Chrome")));
        let d = DeviceInfo::from_user_agent(Some(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        ));
        assert_eq!((d.platform.as_deref(), d.browser.as_deref()), (Some("iPhone"), Some("Safari")));
        let d = DeviceInfo::from_user_agent(Some("zzz-unknown-agent"));
        assert!(d.platform.is_none() && d.browser.is_none() && d.user_agent.is_some());
        let d = DeviceInfo::from_user_agent(None);
        assert!(d.user_agent.is_none() && d.platform.is_none() && d.browser.is_none());
    }

    #[test]
    fn patch_me_tells_null_from_absent_and_refuses_other_fields() {
        let p: PatchMeRequest = serde_json::from_str(r#"{"name": null}"#).unwrap_or_default();
        assert_eq!(p.name, Some(None));
        let p: PatchMeRequest = serde_json::from_str(r#"{"metadata": {}}"#).unwrap_or_default();
        assert_eq!(p.name, None);
        assert!(serde_json::from_str::<PatchMeRequest>(r#"{"roles": ["admin"]}"#).is_err());
    }
}

/// What `POST /auth/login` answers: a session, or (second factor enrolled) an `mfa_token`.
/// For the OpenAPI document only: the handler writes one or the other.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum LoginBody {
    Session(Box<AuthBody>),
    MfaRequired(MfaRequiredBody),
}

/// A login whose password was right, for a user with a second factor: no session yet.
#[derive(Serialize, ToSchema)]
pub struct MfaRequiredBody {
    /// Always `true`.
    pub mfa_required: bool,
    /// For `POST /auth/mfa/verify` (or a passkey): single use, 5 minutes, 5 tries.
    pub mfa_token: String,
    /// What the second step accepts: `totp`, `recovery_code`, `webauthn`.
    #[schema(example = json!(["totp", "recovery_code"]))]
    pub methods: Vec<&'static str>,
    #[serde(serialize_with = "rfc3339_ms")]
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for MfaRequiredBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaRequiredBody").field("methods", &self.methods).finish_non_exhaustive()
    }
}

#[derive(Deserialize, ToSchema)]
pub struct MfaVerifyRequest {
    pub mfa_token: String,
    /// A six-digit TOTP code, or a recovery code (`xxxx-xxxx-xxxx-xxxx`, any case, dashes optional).
    #[schema(example = "123456")]
    pub code: String,
}

impl std::fmt::Debug for MfaVerifyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaVerifyRequest").finish_non_exhaustive()
    }
}

/// A new TOTP secret: shown once; enter it (or scan the QR code) in an authenticator app, then
/// confirm with the first code.
#[derive(Serialize, ToSchema)]
pub struct TotpSetupBody {
    /// Base32, no padding.
    pub secret: String,
    #[schema(example = "otpauth://totp/fraise-auth:ada%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=fraise-auth")]
    pub otpauth_uri: String,
    /// The URI as a QR code: an SVG document.
    pub qr_svg: String,
}

#[derive(Deserialize, ToSchema)]
pub struct TotpCodeRequest {
    #[schema(example = "123456")]
    pub code: String,
}

impl std::fmt::Debug for TotpCodeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpCodeRequest").finish_non_exhaustive()
    }
}

/// TOTP is on: the recovery codes, shown this once (stored hashed).
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodesBody {
    pub recovery_codes: Vec<String>,
}

/// Proof for removing TOTP: a current code (or a recovery code), or the password.
#[derive(Default, Deserialize, ToSchema)]
pub struct RemoveTotpRequest {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

impl std::fmt::Debug for RemoveTotpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoveTotpRequest").finish_non_exhaustive()
    }
}
