//! JWT access tokens, signed by the current key of a [`KeyRing`] (HS256, EdDSA or RS256).
//!
//! Verification pins the algorithm to the configured one (so `alg: none` and algorithm confusion
//! fail), picks the key by the token's `kid` (none or an unknown one is refused), requires `exp`,
//! checks `type == "access"`, and compares `exp`/`nbf`/`iat` with the injected clock rather than
//! the system time. A valid signature is not the end of it: the service also checks the session
//! row, so a logged-out session's token dies at once, not at `exp`.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AuthError;
use crate::model::SessionId;
use crate::tokens::keys::KeyRing;

/// Anything longer is refused before any parsing: real tokens are well under 2 KB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    #[serde(rename = "type")]
    pub token_type: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    pub session_id: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl AccessClaims {
    pub fn user_id(&self) -> Result<Uuid, AuthError> {
        Uuid::parse_str(&self.sub).map_err(|_| AuthError::InvalidToken("subject is not a user id"))
    }

    pub fn session(&self) -> Result<SessionId, AuthError> {
        self.session_id.parse().map_err(|()| AuthError::InvalidToken("malformed session id"))
    }
}

/// What the access-token issuer needs to know.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub ttl: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Tolerated clock difference between nodes, for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self { ttl: Duration::minutes(15), issuer: None, audience: None, leeway: Duration::zero() }
    }
}

/// Issues access tokens with the ring's signing key and verifies them with any of its keys.
pub struct AccessTokens {
    settings: JwtSettings,
    keys: KeyRing,
    header: Header,
    validation: Validation,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("settings", &self.settings)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl AccessTokens {
    /// Tokens signed and verified by `keys`.
    pub fn new(keys: KeyRing, settings: JwtSettings) -> Self {
        let alg = keys.alg().jwt();
        let mut validation = Validation::new(alg);
        // Time claims are checked against the injected clock in `verify`, not the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = ["exp", "sub"].iter().map(|s| (*s).to_owned()).collect();
        let mut header = Header::new(alg);
        header.kid = Some(keys.signing_kid().to_owned());
        Self { settings, keys, header, validation }
    }

    /// HS256 with one secret (no previous ones). Fails only for a secret the JWT library refuses
    /// (an empty one).
    pub fn hs256(secret: &[u8], settings: JwtSettings) -> Result<Self, String> {
        Ok(Self::new(KeyRing::hs256(secret, &[])?, settings))
    }

    /// The keys: signing kid, verifying kids, public JWKS.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn ttl(&self) -> Duration {
        self.settings.ttl
    }

    /// Signs an access token for `user`'s `session`, valid from `now` for the configured TTL.
    pub fn issue(
        &self,
        user_id: Uuid,
        session: SessionId,
        roles: &[String],
        permissions: &[String],
        tenant: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), AuthError> {
        let exp = now + self.settings.ttl;
        let claims = AccessClaims {
            sub: user_id.to_string(),
            token_type: "access".to_owned(),
            iat: now.timestamp(),
            exp: exp.timestamp(),
            nbf: None,
            jti: Uuid::new_v4().to_string(),
            session_id: session.to_string(),
            roles: roles.to_vec(),
            permissions: permissions.to_vec(),
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            tenant: tenant.map(str::to_owned),
        };
        let token = jsonwebtoken::encode(&self.header, &claims, self.keys.encoding()).map_err(AuthError::internal)?;
        // Report the expiry at the precision the token carries (whole seconds).
        let exp = DateTime::from_timestamp(claims.exp, 0).unwrap_or(exp);
        Ok((token, exp))
    }

    /// Verifies signature, algorithm, type, time claims, issuer, audience and tenant.
    pub fn verify(&self, token: &str, tenant: Option<&str>, now: DateTime<Utc>) -> Result<AccessClaims, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::InvalidToken("token too long"));
        }
        // The header is read before any key is chosen, but nothing in it is trusted: the
        // algorithm must be the configured one and the kid only selects among our own keys.
        let (alg, kid) = header_fields(token)?;
        if alg != self.keys.alg().name() {
            return Err(AuthError::InvalidToken("algorithm not allowed"));
        }
        let kid = kid.ok_or(AuthError::InvalidToken("no key id"))?;
        let claims = match self.keys.hs256_mac(&kid) {
            Some(mac) => verify_hs256(token, mac)?,
            None => {
                let key = self.keys.decoding(&kid).ok_or(AuthError::InvalidToken("unknown key id"))?;
                jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
                    .map_err(|e| {
                        use jsonwebtoken::errors::ErrorKind as K;
                        AuthError::InvalidToken(match e.kind() {
                            K::InvalidSignature => "bad signature",
                            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
                                "algorithm not allowed"
                            }
                            K::MissingRequiredClaim(_) => "missing required claim",
                            K::InvalidClaimFormat(_) | K::Json(_) => "malformed claims",
                            _ => "malformed token",
                        })
                    })?
                    .claims
            }
        };
        if claims.token_type != "access" {
            return Err(AuthError::InvalidToken("not an access token"));
        }
        let leeway = self.settings.leeway.num_seconds();
        let now_s = now.timestamp();
        // `exp`, `nbf` and `iat` are whatever the token says: saturating, so an extreme value is
        // an answer (expired, valid, not yet valid), never an overflow.
        if claims.exp.saturating_add(leeway) <= now_s {
            return Err(AuthError::TokenExpired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now_s.saturating_add(leeway))
            || claims.iat > now_s.saturating_add(leeway.max(60))
        {
            return Err(AuthError::InvalidToken("token not yet valid"));
        }
        if claims.iss != self.settings.issuer {
            return Err(AuthError::InvalidToken("wrong issuer"));
        }
        if claims.aud != self.settings.audience {
            return Err(AuthError::InvalidToken("wrong audience"));
        }
        if claims.tenant.as_deref() != tenant {
            return Err(AuthError::InvalidToken("wrong tenant"));
        }
        Ok(claims)
    }
}

/// `alg` and `kid` of a JWT's header, decoded without any trust.
/// HS256 (the header's `alg` and `kid` already checked): the HMAC of `header.payload` under the
/// pre-keyed `mac`, compared in constant time, then the claims. Same rules as jsonwebtoken's
/// decode: unpadded base64url, exactly three segments (checked by `header_fields`), `exp`, `sub`
/// and the other non-optional claims required (here by their types).
fn verify_hs256(token: &str, mac: &hmac::Hmac<sha2::Sha256>) -> Result<AccessClaims, AuthError> {
    use hmac::Mac as _;
    let malformed = AuthError::InvalidToken("malformed token");
    let (signing_input, signature) = token.rsplit_once('.').ok_or(AuthError::InvalidToken("malformed token"))?;
    let signature = B64.decode(signature).map_err(|_| AuthError::InvalidToken("malformed token"))?;
    let mut mac = mac.clone();
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature).map_err(|_| AuthError::InvalidToken("bad signature"))?;
    let payload = signing_input.split_once('.').map(|(_, p)| p).ok_or(malformed)?;
    let bytes = B64.decode(payload).map_err(|_| AuthError::InvalidToken("malformed token"))?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::InvalidToken("malformed claims"))
}

fn header_fields(token: &str) -> Result<(String, Option<String>), AuthError> {
    let malformed = AuthError::InvalidToken("malformed token");
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(malformed);
    };
    let bytes = B64.decode(head).map_err(|_| AuthError::InvalidToken("malformed token"))?;
    let header: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| malformed)?;
    let alg = header["alg"].as_str().unwrap_or_default().to_owned();
    let kid = header["kid"].as_str().map(str::to_owned);
    Ok((alg, kid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::keys::{JwtAlgorithm, PrivateKey, hs256_kid};
    use jsonwebtoken::{Algorithm, EncodingKey};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn tokens() -> AccessTokens {
        AccessTokens::hs256(SECRET, JwtSettings::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn key() -> EncodingKey {
        EncodingKey::from_secret(SECRET).unwrap_or_else(|e| panic!("{e}"))
    }

    fn issue(t: &AccessTokens) -> String {
        t.issue(Uuid::new_v4(), SessionId::new(), &["admin".into()], &[], None, now())
            .map(|(tok, _)| tok)
            .unwrap_or_default()
    }

    /// An HS256 header naming `SECRET`'s kid, for hand-made tokens.
    fn hs_header() -> Header {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(hs256_kid(SECRET));
        h
    }

    fn generated(alg: JwtAlgorithm) -> PrivateKey {
        PrivateKey::generate(alg, 2048).map(|(k, _)| k).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ring(current: &PrivateKey, others: &[PrivateKey]) -> AccessTokens {
        AccessTokens::new(
            KeyRing::asymmetric(current, others).unwrap_or_else(|e| panic!("{e}")),
            JwtSettings::default(),
        )
    }

    fn forge(header: &str, claims: &serde_json::Value, sig: &str) -> String {
        format!("{}.{}.{sig}", B64.encode(header), B64.encode(claims.to_string()))
    }

    #[test]
    fn an_issued_token_verifies_until_it_expires() {
        let t = tokens();
        let tok = issue(&t);
        let claims = t.verify(&tok, None, now()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claims.token_type, "access");
        assert_eq!(claims.roles, vec!["admin".to_owned()]);
        assert_eq!(claims.exp - claims.iat, 15 * 60);
        assert!(matches!(t.verify(&tok, None, now() + Duration::minutes(15)), Err(AuthError::TokenExpired)));
    }

    #[test]
    fn alg_none_is_refused() {
        let t = tokens();
        let tok = issue(&t);
        let claims = t.verify(&tok, None, now()).map(|c| serde_json::to_value(c).unwrap_or_default());
        let forged = forge(r#"{"alg":"none","typ":"JWT"}"#, &claims.unwrap_or_default(), "");
        assert!(matches!(t.verify(&forged, None, now()), Err(AuthError::InvalidToken("algorithm not allowed"))));
        let kid = hs256_kid(SECRET);
        let parts: Vec<&str> = tok.split('.').collect();
        let with_kid = format!("{}.{}.", B64.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#)), parts[1]);
        assert!(matches!(t.verify(&with_kid, None, now()), Err(AuthError::InvalidToken("algorithm not allowed"))));
    }

    #[test]
    fn another_secret_or_a_tampered_payload_is_refused() {
        let t = tokens();
        let other = AccessTokens::hs256(b"another-secret-another-secret-xx", JwtSettings::default())
            .unwrap_or_else(|e| panic!("{e}"));
        // Another secret has another kid...
        assert!(matches!(t.verify(&issue(&other), None, now()), Err(AuthError::InvalidToken("unknown key id"))));
        // ...and claiming ours does not make its signature good.
        let claims = serde_json::json!({"sub": "u", "type": "access", "iat": 0, "exp": 9_999_999_999_i64, "jti": "j", "session_id": "s"});
        let secret = EncodingKey::from_secret(b"another-secret-another-secret-xx").unwrap_or_else(|e| panic!("{e}"));
        let tok = jsonwebtoken::encode(&hs_header(), &claims, &secret).unwrap_or_default();
        assert!(matches!(t.verify(&tok, None, now()), Err(AuthError::InvalidToken("bad signature"))));
        let tok = issue(&t);
        let mut parts: Vec<&str> = tok.split('.').collect();
        let payload = B64.encode(
            r#"{"sub":"x","type":"access","iat":0,"exp":9999999999,"jti":"j","session_id":"s","roles":["superuser"]}"#,
        );
        parts[1] = &payload;
        assert!(t.verify(&parts.join("."), None, now()).is_err());
    }

    #[test]
    fn wrong_type_tenant_issuer_or_audience_is_refused() {
        let t = tokens();
        let tok = issue(&t);
        assert!(matches!(t.verify(&tok, Some("acme"), now()), Err(AuthError::InvalidToken("wrong tenant"))));
        let strict = AccessTokens::hs256(
            SECRET,
            JwtSettings { issuer: Some("fraise".into()), audience: Some("app".into()), ..JwtSettings::default() },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(strict.verify(&tok, None, now()), Err(AuthError::InvalidToken("wrong issuer"))));
        let claims = serde_json::json!({"sub": Uuid::new_v4().to_string(), "type": "refresh", "iat": now().timestamp(),
            "exp": now().timestamp() + 60, "jti": "j", "session_id": SessionId::new().to_string()});
        let refresh_typed = jsonwebtoken::encode(&hs_header(), &claims, &key()).unwrap_or_default();
        assert!(matches!(t.verify(&refresh_typed, None, now()), Err(AuthError::InvalidToken("not an access token"))));
    }

    #[test]
    fn missing_exp_and_future_nbf_are_refused() {
        let t = tokens();
        let key = key();
        let h = hs_header();
        let no_exp =
            serde_json::json!({"sub": "u", "type": "access", "iat": now().timestamp(), "jti": "j", "session_id": "s"});
        let tok = jsonwebtoken::encode(&h, &no_exp, &key).unwrap_or_default();
        assert!(matches!(t.verify(&tok, None, now()), Err(AuthError::InvalidToken(_))));
        let future = serde_json::json!({"sub": "u", "type": "access", "iat": now().timestamp(), "exp": now().timestamp() + 600,
            "nbf": now().timestamp() + 300, "jti": "j", "session_id": "s"});
        let tok = jsonwebtoken::encode(&h, &future, &key).unwrap_or_default();
        assert!(matches!(t.verify(&tok, None, now()), Err(AuthError::InvalidToken("token not yet valid"))));
    }

    /// Found by `fuzz/fuzz_targets/jwt_verify.rs`: with a leeway, `exp = i64::MAX` overflowed
    /// (a panic with debug assertions, a wrap to "expired" without).
    #[test]
    fn extreme_time_claims_with_a_leeway_are_answers_not_overflows() {
        let t = AccessTokens::hs256(SECRET, JwtSettings { leeway: Duration::seconds(30), ..JwtSettings::default() })
            .unwrap_or_else(|e| panic!("{e}"));
        let at = now().timestamp();
        let claims = |exp: i64, nbf: Option<i64>, iat: i64| {
            let c = serde_json::json!({"sub": "u", "type": "access", "iat": iat, "exp": exp, "nbf": nbf,
                "jti": "j", "session_id": "s"});
            jsonwebtoken::encode(&hs_header(), &c, &key()).unwrap_or_default()
        };
        assert!(t.verify(&claims(i64::MAX, None, at), None, now()).is_ok(), "exp at the end of time is unexpired");
        // (A negative exp is refused by the JWT library as a malformed claim.)
        assert!(t.verify(&claims(i64::MIN, None, at), None, now()).is_err());
        assert!(matches!(
            t.verify(&claims(at + 60, Some(i64::MAX), at), None, now()),
            Err(AuthError::InvalidToken("token not yet valid"))
        ));
        assert!(t.verify(&claims(at + 60, Some(i64::MIN), i64::MIN), None, now()).is_ok());
        assert!(matches!(
            t.verify(&claims(at + 60, None, i64::MAX), None, now()),
            Err(AuthError::InvalidToken("token not yet valid"))
        ));
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let t = tokens();
        for junk in ["", ".", "..", "a.b.c", "!!!.@@@.###", "eyJhbGciOiJIUzI1NiJ9..", &"A".repeat(100_000)] {
            assert!(t.verify(junk, None, now()).is_err(), "{junk:.20}");
        }
    }

    #[test]
    fn every_algorithm_signs_with_a_kid_and_verifies() {
        let keys = [generated(JwtAlgorithm::EdDsa), generated(JwtAlgorithm::Rs256)];
        for key in &keys {
            let t = ring(key, &[]);
            let tok = issue(&t);
            let header = jsonwebtoken::decode_header(&tok).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(header.alg, key.alg().jwt());
            assert_eq!(header.kid.as_deref(), Some(key.kid()));
            let claims = t.verify(&tok, None, now()).unwrap_or_else(|e| panic!("{}: {e}", key.alg()));
            assert_eq!(claims.roles, vec!["admin".to_owned()]);
        }
        let hs = issue(&tokens());
        let header = jsonwebtoken::decode_header(&hs).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(header.kid, Some(hs256_kid(SECRET)));
    }

    #[test]
    fn after_a_rotation_old_tokens_verify_until_their_key_is_retired() {
        for alg in [JwtAlgorithm::EdDsa, JwtAlgorithm::Rs256] {
            let (old, new) = (generated(alg), generated(alg));
            let before = issue(&ring(&old, &[]));
            let rotated = ring(&new, std::slice::from_ref(&old));
            assert!(rotated.verify(&before, None, now()).is_ok(), "{alg}: the previous key still verifies");
            let after = issue(&rotated);
            assert_eq!(jsonwebtoken::decode_header(&after).ok().and_then(|h| h.kid).as_deref(), Some(new.kid()));
            let retired = ring(&new, &[]);
            assert!(matches!(retired.verify(&before, None, now()), Err(AuthError::InvalidToken("unknown key id"))));
            assert!(retired.verify(&after, None, now()).is_ok());
        }
        // HS256: JWT_PREVIOUS_SECRET_KEYS.
        let before = issue(&tokens());
        let new_secret = b"the-new-secret-the-new-secret-the-new";
        let rotated = AccessTokens::new(
            KeyRing::hs256(new_secret, &[SECRET]).unwrap_or_else(|e| panic!("{e}")),
            JwtSettings::default(),
        );
        assert!(rotated.verify(&before, None, now()).is_ok());
        let dropped = AccessTokens::hs256(new_secret, JwtSettings::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(dropped.verify(&before, None, now()), Err(AuthError::InvalidToken("unknown key id"))));
    }

    #[test]
    fn a_token_without_a_kid_or_with_a_foreign_one_is_refused() {
        let t = tokens();
        let claims = serde_json::json!({"sub": Uuid::new_v4().to_string(), "type": "access", "iat": now().timestamp(),
            "exp": now().timestamp() + 60, "jti": "j", "session_id": SessionId::new().to_string()});
        let no_kid = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key()).unwrap_or_default();
        assert!(matches!(t.verify(&no_kid, None, now()), Err(AuthError::InvalidToken("no key id"))));
        let mut foreign = hs_header();
        foreign.kid = Some("someone-else".into());
        let tok = jsonwebtoken::encode(&foreign, &claims, &key()).unwrap_or_default();
        assert!(matches!(t.verify(&tok, None, now()), Err(AuthError::InvalidToken("unknown key id"))));
        // The right kid with another key's signature.
        let ed = generated(JwtAlgorithm::EdDsa);
        let other = issue(&ring(&generated(JwtAlgorithm::EdDsa), &[]));
        let mut parts: Vec<String> = other.split('.').map(str::to_owned).collect();
        parts[0] = B64.encode(format!(r#"{{"typ":"JWT","alg":"EdDSA","kid":"{}"}}"#, ed.kid()));
        assert!(matches!(ring(&ed, &[]).verify(&parts.join("."), None, now()), Err(AuthError::InvalidToken(_))));
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        for alg in [JwtAlgorithm::EdDsa, JwtAlgorithm::Rs256] {
            let key = generated(alg);
            let t = ring(&key, &[]);
            let claims = serde_json::json!({"sub": Uuid::new_v4().to_string(), "type": "access",
                "iat": now().timestamp(), "exp": now().timestamp() + 60, "jti": "j",
                "session_id": SessionId::new().to_string()});
            // Every form of the public key an attacker could use as an HMAC secret.
            let jwk = serde_json::to_value(key.public_jwk()).unwrap_or_default();
            let public_forms: Vec<Vec<u8>> = ["x", "n"]
                .iter()
                .filter_map(|c| jwk[*c].as_str())
                .flat_map(|v| [v.as_bytes().to_vec(), B64.decode(v).unwrap_or_default()])
                .chain([jwk.to_string().into_bytes()])
                .collect();
            assert!(!public_forms.is_empty());
            for secret in public_forms {
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some(key.kid().to_owned());
                let forged = jsonwebtoken::encode(
                    &h,
                    &claims,
                    &EncodingKey::from_secret(&secret).unwrap_or_else(|e| panic!("{e}")),
                )
                .unwrap_or_default();
                assert!(
                    matches!(t.verify(&forged, None, now()), Err(AuthError::InvalidToken("algorithm not allowed"))),
                    "{alg}"
                );
            }
            // And alg: none with our kid.
            let none = forge(&format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, key.kid()), &claims, "");
            assert!(matches!(t.verify(&none, None, now()), Err(AuthError::InvalidToken("algorithm not allowed"))));
        }
    }
}
