//! Passkeys (WebAuthn): registration by a signed-in user, listing and removal, and sign-in with a
//! passkey, either as the second factor of a password login (`mfa_token`) or, when
//! `WEBAUTHN_PASSWORDLESS` is on, instead of the password (a discoverable credential).
//!
//! The ceremonies are webauthn-rs's (challenge, origin, RP id, user verification, signature and
//! counter checks); this module decides who may start and finish them. Between start and finish
//! the crate's state lives in `tb_webauthn_ceremony`, so any node can finish what another
//! started; a finish takes it back with one `DELETE ... RETURNING`, so a ceremony is finished at
//! most once. Passkeys are stored as the crate serializes them; the stored signature counter
//! guards `record_passkey_use` (a compare-and-set), and a counter that goes backwards is refused
//! by the crate as a possible clone.
//!
//! Never logged or audited: credential material (keys, ids, assertions, challenges).
use std::sync::Arc;

use chrono::Duration;
use serde_json::{Value, json};
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Webauthn,
    WebauthnBuilder, WebauthnError,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use super::{AuthService, Authenticated, ClientInfo, MfaMethod, Principal, clean_name};
use crate::error::{AuthError, StoreError};
use crate::model::User;
use crate::store::{CeremonyKind, PasskeyRecord};

/// How long a started ceremony can be finished (the crate's default authenticator timeout).
const CEREMONY_TTL_SECONDS: i64 = 300;
/// Passkeys one account may hold: bounds the size of an authentication request's options.
pub const MAX_PASSKEYS_PER_USER: usize = 20;
/// Longest passkey name, in characters.
const MAX_PASSKEY_NAME_CHARS: usize = 64;

/// The relying party, validated once at start-up (`WEBAUTHN_RP_ID`, `WEBAUTHN_ORIGIN`,
/// `WEBAUTHN_RP_NAME`, `WEBAUTHN_PASSWORDLESS`).
#[derive(Clone)]
pub struct PasskeyConfig {
    webauthn: Arc<Webauthn>,
    pub rp_id: String,
    pub origin: String,
    /// Sign-in with a discoverable passkey alone, without a password.
    pub passwordless: bool,
}

impl std::fmt::Debug for PasskeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyConfig")
            .field("rp_id", &self.rp_id)
            .field("origin", &self.origin)
            .field("passwordless", &self.passwordless)
            .finish()
    }
}

impl PasskeyConfig {
    /// Fails, saying how to fix it, when the origin is not a URL or the RP id is not the origin's
    /// host or a parent domain of it.
    pub fn new(rp_id: &str, origin: &str, rp_name: Option<&str>, passwordless: bool) -> Result<Self, String> {
        let url = Url::parse(origin).map_err(|e| {
            format!("WEBAUTHN_ORIGIN={origin:?} is not a URL ({e}). Fix: e.g. https://auth.example.com")
        })?;
        let builder = WebauthnBuilder::new(rp_id, &url).map_err(|_| {
            format!(
                "WEBAUTHN_RP_ID={rp_id:?} does not fit WEBAUTHN_ORIGIN={origin:?}: the RP id must be the origin's host or a parent domain of it (e.g. RP id example.com for https://auth.example.com)"
            )
        })?;
        let builder = builder.rp_name(rp_name.unwrap_or(rp_id));
        let webauthn = builder.build().map_err(|e| format!("WebAuthn configuration refused: {e}"))?;
        Ok(Self { webauthn: Arc::new(webauthn), rp_id: rp_id.to_owned(), origin: origin.to_owned(), passwordless })
    }
}

/// A ceremony started: its id (to send back with the finish) and the options for the browser's
/// `navigator.credentials.create` / `.get` (`{"publicKey": {...}}`, binary values base64url).
#[derive(Debug, Clone)]
pub struct CeremonyStart {
    pub ceremony_id: Uuid,
    pub options: Value,
}

/// Which audit reason a refused assertion gets: a fixed set, never the crate's text.
fn refusal_reason(e: &WebauthnError) -> &'static str {
    match e {
        WebauthnError::CredentialPossibleCompromise => "counter_regressed",
        WebauthnError::InvalidRPOrigin | WebauthnError::InvalidRPIDHash => "wrong_origin",
        WebauthnError::MismatchedChallenge => "wrong_challenge",
        WebauthnError::UserNotVerified => "user_not_verified",
        _ => "invalid_assertion",
    }
}

fn count(outcome: &'static str) {
    metrics::counter!("fraise_mfa_total", "method" => "webauthn", "outcome" => outcome).increment(1);
}

/// Parses the browser's credential JSON into the crate's type; any mismatch is the client's
/// fault, reported against `credential`.
fn parse_credential<T: serde::de::DeserializeOwned>(credential: &Value) -> Result<T, AuthError> {
    T::deserialize(credential).map_err(|_| {
        AuthError::validation("credential", "Field 'credential' is not a WebAuthn credential in JSON form")
    })
}

fn parse_ceremony_id(id: &str) -> Option<Uuid> {
    Uuid::parse_str(id.trim()).ok()
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, AuthError> {
    serde_json::to_string(v).map_err(AuthError::internal)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, AuthError> {
    serde_json::from_str(s).map_err(AuthError::internal)
}

/// The signature counter inside a serialized passkey (the crate keeps it private).
fn counter_of(passkey_json: &str) -> i64 {
    serde_json::from_str::<Value>(passkey_json).ok().and_then(|v| v["cred"]["counter"].as_i64()).unwrap_or(0)
}

/// A name for a new passkey: trimmed, bounded, no control characters; "Passkey" when none.
fn passkey_name(name: Option<&str>) -> Result<String, AuthError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("Passkey");
    if name.chars().count() > MAX_PASSKEY_NAME_CHARS {
        return Err(AuthError::validation("name", format!("Name must be at most {MAX_PASSKEY_NAME_CHARS} characters")));
    }
    // The account-name rules (control characters) apply too.
    clean_name(Some(name)).map_err(|_| AuthError::validation("name", "Name must not contain control characters"))?;
    Ok(name.to_owned())
}

impl AuthService {
    fn passkey_config(&self) -> Result<&PasskeyConfig, AuthError> {
        self.settings.passkeys.as_ref().ok_or(AuthError::PasskeysDisabled)
    }

    /// Whether `WEBAUTHN_PASSWORDLESS` is on (and passkeys configured).
    pub fn passwordless_enabled(&self) -> bool {
        self.settings.passkeys.as_ref().is_some_and(|c| c.passwordless)
    }

    async fn store_ceremony<S: serde::Serialize>(
        &self,
        kind: CeremonyKind,
        user: Option<Uuid>,
        state: &S,
    ) -> Result<Uuid, AuthError> {
        let id = Uuid::new_v4();
        let now = self.clock.now();
        let expires_at = now + Duration::seconds(CEREMONY_TTL_SECONDS);
        self.store.insert_ceremony(id, kind, user, &to_json(state)?, now, expires_at).await?;
        Ok(id)
    }

    /// `POST /auth/webauthn/register/start`: options for a new passkey of the caller, excluding
    /// the ones already registered. With passwordless sign-in on, the passkey must be
    /// discoverable (resident), so that it can later name its user.
    pub async fn passkey_register_start(&self, p: &Principal) -> Result<CeremonyStart, AuthError> {
        let cfg = self.passkey_config()?;
        let existing = self.store.passkeys(p.user.id).await?;
        if existing.len() >= MAX_PASSKEYS_PER_USER {
            return Err(AuthError::validation(
                "credential",
                format!("An account can hold at most {MAX_PASSKEYS_PER_USER} passkeys; remove one first"),
            ));
        }
        let exclude = existing
            .iter()
            .map(|r| from_json::<Passkey>(&r.passkey).map(|k| k.cred_id().clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let display = p.user.name.as_deref().unwrap_or(&p.user.email);
        let (mut ccr, state): (CreationChallengeResponse, PasskeyRegistration) = cfg
            .webauthn
            .start_passkey_registration(p.user.id, &p.user.email, display, Some(exclude))
            .map_err(AuthError::internal)?;
        if cfg.passwordless
            && let Some(sel) = ccr.public_key.authenticator_selection.as_mut()
        {
            sel.resident_key = Some(ResidentKeyRequirement::Required);
            sel.require_resident_key = true;
        }
        let ceremony_id = self.store_ceremony(CeremonyKind::Register, Some(p.user.id), &state).await?;
        Ok(CeremonyStart { ceremony_id, options: serde_json::to_value(&ccr).map_err(AuthError::internal)? })
    }

    /// `POST /auth/webauthn/register/finish`: verifies the attestation against the ceremony the
    /// caller started and stores the passkey.
    pub async fn passkey_register_finish(
        &self,
        p: &Principal,
        ceremony_id: &str,
        name: Option<&str>,
        credential: &Value,
        client: &ClientInfo,
    ) -> Result<PasskeyRecord, AuthError> {
        let cfg = self.passkey_config()?;
        let name = passkey_name(name)?;
        let reg: RegisterPublicKeyCredential = parse_credential(credential)?;
        let unknown = || AuthError::validation("ceremony_id", "Unknown, used or expired ceremony; start again");
        let id = parse_ceremony_id(ceremony_id).ok_or_else(unknown)?;
        let now = self.clock.now();
        // Taken before checking whose it is: a ceremony id presented by the wrong user is spent too.
        let (owner, state) = self.store.take_ceremony(id, CeremonyKind::Register, now).await?.ok_or_else(unknown)?;
        if owner != Some(p.user.id) {
            return Err(unknown());
        }
        let state: PasskeyRegistration = from_json(&state)?;
        let passkey = match cfg.webauthn.finish_passkey_registration(&reg, &state) {
            Ok(k) => k,
            Err(e) => {
                count("invalid");
                let reason = refusal_reason(&e);
                tracing::debug!(error = %e, "passkey registration refused");
                self.audit(
                    "webauthn_register_failure",
                    Some(p.user.id),
                    Some(p.session.id),
                    client,
                    json!({"reason": reason}),
                )
                .await;
                return Err(AuthError::validation("credential", "The passkey could not be verified; start again"));
            }
        };
        let passkey_json = to_json(&passkey)?;
        let record = PasskeyRecord {
            id: Uuid::new_v4(),
            user_id: p.user.id,
            credential_id: passkey.cred_id().as_ref().to_vec(),
            sign_count: counter_of(&passkey_json),
            passkey: passkey_json,
            name,
            created_at: now,
            last_used_at: None,
        };
        match self.store.insert_passkey(record.clone()).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(AuthError::validation("credential", "This passkey is registered already"));
            }
            Err(e) => return Err(e.into()),
        }
        count("registered");
        self.audit(
            "webauthn_registered",
            Some(p.user.id),
            Some(p.session.id),
            client,
            json!({"credential": record.id, "name": record.name}),
        )
        .await;
        Ok(record)
    }

    /// `GET /auth/webauthn/credentials`.
    pub async fn list_passkeys(&self, p: &Principal) -> Result<Vec<PasskeyRecord>, AuthError> {
        self.passkey_config()?;
        Ok(self.store.passkeys(p.user.id).await?)
    }

    /// `DELETE /auth/webauthn/credentials/{id}`: only the caller's own; anything else is "not
    /// found", so the answer never tells whether someone else's passkey exists.
    pub async fn remove_passkey(&self, p: &Principal, id: &str, client: &ClientInfo) -> Result<(), AuthError> {
        self.passkey_config()?;
        let id = Uuid::parse_str(id).map_err(|_| AuthError::CredentialNotFound)?;
        if !self.store.delete_passkey(p.user.id, id, self.clock.now()).await? {
            return Err(AuthError::CredentialNotFound);
        }
        self.audit("webauthn_removed", Some(p.user.id), Some(p.session.id), client, json!({"credential": id})).await;
        Ok(())
    }

    /// `POST /auth/webauthn/login/start`. With an `mfa_token`: options listing that user's
    /// passkeys (the token's tries are not touched). Without one: a passwordless ceremony for any
    /// discoverable passkey, if `WEBAUTHN_PASSWORDLESS` is on.
    pub async fn passkey_login_start(&self, mfa_token: Option<&str>) -> Result<CeremonyStart, AuthError> {
        let cfg = self.passkey_config()?;
        let Some(token) = mfa_token else {
            if !cfg.passwordless {
                return Err(AuthError::validation(
                    "mfa_token",
                    "Field 'mfa_token' is required: passwordless sign-in is not enabled",
                ));
            }
            let (mut rcr, state): (RequestChallengeResponse, DiscoverableAuthentication) =
                cfg.webauthn.start_discoverable_authentication().map_err(AuthError::internal)?;
            // The crate asks for conditional mediation (autofill UI); the client chooses that
            // itself, and a plain modal prompt must work too.
            rcr.mediation = None;
            let ceremony_id = self.store_ceremony(CeremonyKind::Passwordless, None, &state).await?;
            return Ok(CeremonyStart {
                ceremony_id,
                options: serde_json::to_value(&rcr).map_err(AuthError::internal)?,
            });
        };
        let user = self.mfa_peek(token).await?;
        let passkeys = self
            .store
            .passkeys(user.id)
            .await?
            .iter()
            .map(|r| from_json::<Passkey>(&r.passkey))
            .collect::<Result<Vec<_>, _>>()?;
        if passkeys.is_empty() {
            return Err(AuthError::validation("mfa_token", "This account has no passkey; use another second factor"));
        }
        let (rcr, state): (RequestChallengeResponse, PasskeyAuthentication) =
            cfg.webauthn.start_passkey_authentication(&passkeys).map_err(AuthError::internal)?;
        let ceremony_id = self.store_ceremony(CeremonyKind::Login, Some(user.id), &state).await?;
        Ok(CeremonyStart { ceremony_id, options: serde_json::to_value(&rcr).map_err(AuthError::internal)? })
    }

    /// `POST /auth/webauthn/login/finish`: the assertion, for the ceremony `ceremony_id`; with
    /// the `mfa_token` it completes a password login, without it a passwordless one.
    pub async fn passkey_login_finish(
        &self,
        ceremony_id: &str,
        mfa_token: Option<&str>,
        credential: &Value,
        client: &ClientInfo,
    ) -> Result<Authenticated, AuthError> {
        let cfg = self.passkey_config()?;
        let assertion: PublicKeyCredential = parse_credential(credential)?;
        match mfa_token {
            Some(token) => self.passkey_second_factor(cfg, ceremony_id, token, &assertion, client).await,
            None if cfg.passwordless => self.passkey_passwordless(cfg, ceremony_id, &assertion, client).await,
            None => Err(AuthError::validation(
                "mfa_token",
                "Field 'mfa_token' is required: passwordless sign-in is not enabled",
            )),
        }
    }

    /// Checks the assertion against the ceremony and the user's passkey, then records the use
    /// (counter compare-and-set). `Err(reason)` for the audit when anything is wrong.
    async fn verify_assertion(
        &self,
        cfg: &PasskeyConfig,
        kind: CeremonyKind,
        ceremony_id: &str,
        expected_user: Option<Uuid>,
        assertion: &PublicKeyCredential,
    ) -> Result<Result<PasskeyRecord, &'static str>, AuthError> {
        let now = self.clock.now();
        let Some(id) = parse_ceremony_id(ceremony_id) else {
            return Ok(Err("unknown_ceremony"));
        };
        let Some((owner, state)) = self.store.take_ceremony(id, kind, now).await? else {
            return Ok(Err("unknown_ceremony"));
        };
        if expected_user.is_some() && owner != expected_user {
            return Ok(Err("unknown_ceremony"));
        }
        let Some(record) = self.store.passkey_by_credential_id(assertion.get_credential_id()).await? else {
            return Ok(Err("unknown_credential"));
        };
        // Passwordless: the authenticator's user handle must name the credential's owner.
        // Second factor: the credential must be the token's user's.
        let claimed = match kind {
            CeremonyKind::Passwordless => {
                assertion.get_user_unique_id().and_then(|h| Uuid::from_slice(h).ok()).filter(|u| *u == record.user_id)
            }
            _ => expected_user.filter(|u| *u == record.user_id),
        };
        if claimed.is_none() {
            return Ok(Err("credential_of_another_user"));
        }
        let mut passkey: Passkey = from_json(&record.passkey)?;
        let verified = match kind {
            CeremonyKind::Passwordless => {
                let state: DiscoverableAuthentication = from_json(&state)?;
                cfg.webauthn.finish_discoverable_authentication(assertion, state, &[DiscoverableKey::from(&passkey)])
            }
            _ => {
                let state: PasskeyAuthentication = from_json(&state)?;
                cfg.webauthn.finish_passkey_authentication(assertion, &state)
            }
        };
        let result = match verified {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "passkey assertion refused");
                return Ok(Err(refusal_reason(&e)));
            }
        };
        passkey.update_credential(&result);
        let passkey_json = to_json(&passkey)?;
        let new_count = i64::from(result.counter());
        if !self.store.record_passkey_use(record.id, &passkey_json, record.sign_count, new_count, now).await? {
            // Another use of this passkey got in first with the same counter: one of them is a
            // replay or a clone.
            return Ok(Err("counter_race"));
        }
        Ok(Ok(PasskeyRecord { passkey: passkey_json, sign_count: new_count, last_used_at: Some(now), ..record }))
    }

    async fn passkey_second_factor(
        &self,
        cfg: &PasskeyConfig,
        ceremony_id: &str,
        token: &str,
        assertion: &PublicKeyCredential,
        client: &ClientInfo,
    ) -> Result<Authenticated, AuthError> {
        let attempt = self.mfa_attempt(token, client).await?;
        let user_id = attempt.user.id;
        match self.verify_assertion(cfg, CeremonyKind::Login, ceremony_id, Some(user_id), assertion).await? {
            Ok(record) => {
                let out = self.mfa_complete(attempt, MfaMethod::Webauthn, client).await?;
                self.audit(
                    "webauthn_login_success",
                    Some(user_id),
                    Some(out.session),
                    client,
                    json!({"credential": record.id, "second_factor": true}),
                )
                .await;
                Ok(out)
            }
            Err(reason) => {
                self.audit(
                    "webauthn_login_failure",
                    Some(user_id),
                    None,
                    client,
                    json!({"reason": reason, "second_factor": true}),
                )
                .await;
                Err(self.mfa_failed(&attempt, MfaMethod::Webauthn, client).await)
            }
        }
    }

    async fn passkey_passwordless(
        &self,
        cfg: &PasskeyConfig,
        ceremony_id: &str,
        assertion: &PublicKeyCredential,
        client: &ClientInfo,
    ) -> Result<Authenticated, AuthError> {
        let record = match self.verify_assertion(cfg, CeremonyKind::Passwordless, ceremony_id, None, assertion).await? {
            Ok(r) => r,
            Err(reason) => {
                count("invalid");
                self.audit(
                    "webauthn_login_failure",
                    None,
                    None,
                    client,
                    json!({"reason": reason, "passwordless": true}),
                )
                .await;
                return Err(AuthError::InvalidMfaCode);
            }
        };
        let user: User = self.store.user_by_id(record.user_id).await?.ok_or(AuthError::InvalidMfaCode)?;
        // The same refusals as a password login, after the proof (so they tell nothing to
        // someone without the passkey).
        if !user.is_active {
            self.audit("login_failure", Some(user.id), None, client, json!({"reason": "disabled", "passkey": true}))
                .await;
            return Err(AuthError::AccountDisabled);
        }
        if self.settings.require_verified_email && !user.email_verified {
            self.audit(
                "login_failure",
                Some(user.id),
                None,
                client,
                json!({"reason": "email_not_verified", "passkey": true}),
            )
            .await;
            return Err(AuthError::EmailNotVerified);
        }
        count("success");
        let out = self.start_session(user, client).await?;
        self.audit(
            "webauthn_login_success",
            Some(out.user.id),
            Some(out.session),
            client,
            json!({"credential": record.id, "passwordless": true}),
        )
        .await;
        self.audit("login_success", Some(out.user.id), Some(out.session), client, json!({"method": "passkey"})).await;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rp_id_must_fit_the_origin() {
        assert!(PasskeyConfig::new("localhost", "http://localhost:8000", None, false).is_ok());
        assert!(PasskeyConfig::new("example.com", "https://auth.example.com", Some("Example"), true).is_ok());
        let err = PasskeyConfig::new("example.org", "https://auth.example.com", None, false).err().unwrap_or_default();
        assert!(err.contains("WEBAUTHN_RP_ID"), "{err}");
        let err = PasskeyConfig::new("localhost", "not a url", None, false).err().unwrap_or_default();
        assert!(err.contains("WEBAUTHN_ORIGIN"), "{err}");
    }

    #[test]
    fn passkey_names_default_and_are_bounded() {
        assert_eq!(passkey_name(None).ok().as_deref(), Some("Passkey"));
        assert_eq!(passkey_name(Some("  Laptop ")).ok().as_deref(), Some("Laptop"));
        assert!(passkey_name(Some(&"x".repeat(65))).is_err());
        assert!(passkey_name(Some("a\u{0}b")).is_err());
    }

    #[test]
    fn the_counter_is_read_from_the_serialized_passkey() {
        assert_eq!(counter_of(r#"{"cred":{"counter":7}}"#), 7);
        assert_eq!(counter_of("not json"), 0);
    }
}
