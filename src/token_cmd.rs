//! `fraise-auth token decode|verify`: the guide's token debug tool, built in.
//!
//! `decode` shows header and claims without checking anything (clearly marked unverified);
//! `verify` checks an access token with the configured keys (JWT_ALGORITHM: the secret, or the key
//! directory), issuer and audience at the current time, or a refresh token's MAC, and says exactly
//! why not when it fails: expired since when, bad signature, wrong type, unknown or missing kid,
//! wrong algorithm.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Duration, Utc};
use fraise_core::AuthError;
use fraise_core::tokens::{AccessTokens, JwtSettings, KeyRing, RefreshTokens};
use serde_json::Value;

use crate::config::Config;

/// Header and claims of a JWT, decoded but not verified.
pub fn decode(token: &str) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(format!("not a JWT: expected 3 dot-separated parts, found {}", parts.len()));
    }
    let part = |i: usize, what: &str| -> Result<Value, String> {
        let bytes = B64.decode(parts[i].trim_end_matches('=')).map_err(|e| format!("{what} is not base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{what} is not JSON: {e}"))
    };
    Ok((part(0, "header")?, part(1, "payload")?))
}

fn time(secs: Option<i64>) -> String {
    secs.and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

/// Verifies `token` with `cfg`'s keys at `now`; the text to print, and whether it is valid. Never
/// writes: a missing key directory is reported, not created.
pub fn verify(cfg: &Config, secret: &[u8], token: &str, now: DateTime<Utc>) -> (String, bool) {
    let keys = crate::keys::access_keys(cfg, secret, crate::keys::FirstKey::Never);
    verify_with(cfg, secret, keys.map_err(|e| format!("{e:#}")), token, now)
}

/// [`verify`] with the key ring already loaded (or the reason it could not be).
pub fn verify_with(
    cfg: &Config,
    secret: &[u8],
    keys: Result<KeyRing, String>,
    token: &str,
    now: DateTime<Utc>,
) -> (String, bool) {
    let token = token.trim();
    if !token.contains('.') {
        // Not a JWT: try it as a refresh token.
        return match RefreshTokens::from_secret(secret).parse(token, "") {
            Ok(t) => (
                format!(
                    "✅ refresh token with a valid MAC: session {}, rotation {}\n   (whether it is still the current one is known to the database only: try it on /auth/refresh)",
                    t.session, t.counter
                ),
                true,
            ),
            Err(e) => (format!("❌ not a valid access or refresh token: {e}"), false),
        };
    }
    let keys = match keys {
        Ok(k) => k,
        Err(e) => return (format!("❌ cannot load the verifying keys: {e}"), false),
    };
    let alg = keys.alg();
    let known: Vec<String> = keys.verifying_kids().map(str::to_owned).collect();
    let settings = JwtSettings {
        ttl: Duration::minutes(cfg.access_ttl_minutes),
        issuer: cfg.jwt_issuer.clone(),
        audience: cfg.jwt_audience.clone(),
        leeway: Duration::zero(),
    };
    let tokens = AccessTokens::new(keys, settings);
    let (header, claims) = decode(token).unwrap_or_default();
    let said = |field: &str| header[field].as_str().map_or_else(|| "(none)".to_owned(), str::to_owned);
    match tokens.verify(token, None, now) {
        Ok(claims) => {
            let pretty = serde_json::to_string_pretty(&claims).unwrap_or_default();
            (
                format!(
                    "✅ valid access token (expires {}, {alg} key {})\n{pretty}",
                    time(Some(claims.exp)),
                    said("kid")
                ),
                true,
            )
        }
        Err(AuthError::TokenExpired) => {
            let exp = claims["exp"].as_i64();
            (
                format!("❌ expired since {} (now {}); the signature is good", time(exp), time(Some(now.timestamp()))),
                false,
            )
        }
        Err(AuthError::InvalidToken(why)) => {
            let text = match why {
                "bad signature" => format!(
                    "bad signature: the header names our key {} but the signature does not match (the token was altered, or forged)",
                    said("kid")
                ),
                "unknown key id" => format!(
                    "unknown kid {}: not a key of this server (signed by a retired key, another deployment, or another JWT_SECRET_KEY); this server verifies kids {}",
                    said("kid"),
                    known.join(", ")
                ),
                "no key id" => {
                    "no kid in the header: not issued by this server (every token it signs names its key)".into()
                }
                "algorithm not allowed" => {
                    format!(
                        "algorithm {} is not accepted: this server signs and verifies {alg} only (JWT_ALGORITHM)",
                        said("alg")
                    )
                }
                "not an access token" => format!(
                    "wrong type: {:?}, only \"access\" tokens are accepted",
                    claims["type"].as_str().unwrap_or("(none)")
                ),
                other => other.to_owned(),
            };
            (format!("❌ invalid: {text}"), false)
        }
        Err(other) => (format!("❌ invalid: {other}"), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sources;
    use fraise_core::model::SessionId;

    const SECRET: &[u8] = b"token-cmd-test-secret-token-cmd-test";

    fn cfg() -> Config {
        Config::from_sources(&Sources::from_pairs(&[])).unwrap_or_else(|e| panic!("{e}"))
    }

    fn issue(at: DateTime<Utc>) -> String {
        let t = AccessTokens::hs256(SECRET, JwtSettings::default()).unwrap_or_else(|e| panic!("{e}"));
        t.issue(uuid::Uuid::new_v4(), SessionId::new(), &["admin".into()], &[], None, at)
            .map(|x| x.0)
            .unwrap_or_default()
    }

    #[test]
    fn decode_shows_claims_without_verifying() {
        let (header, claims) = decode(&issue(Utc::now())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(header["alg"], "HS256");
        assert_eq!(claims["type"], "access");
        assert!(decode("a.b").is_err() && decode("!!.@@.##").is_err());
    }

    #[test]
    fn verify_says_valid_expired_or_why_not() {
        let now = Utc::now();
        assert!(verify(&cfg(), SECRET, &issue(now), now).1);
        let (text, ok) = verify(&cfg(), SECRET, &issue(now - Duration::hours(1)), now);
        assert!(!ok && text.contains("expired since"), "{text}");
        let (text, ok) = verify(&cfg(), b"another-secret-another-secret-xx", &issue(now), now);
        assert!(!ok && text.contains("unknown kid"), "{text}");
        let tok = issue(now);
        let sig_at = tok.rfind('.').unwrap_or_default() + 1;
        let flipped = if tok[sig_at..].starts_with('A') { "B" } else { "A" };
        let tampered = format!("{}{flipped}{}", &tok[..sig_at], &tok[sig_at + 1..]);
        let (text, ok) = verify(&cfg(), SECRET, &tampered, now);
        assert!(!ok && text.contains("bad signature"), "{text}");
        let (text, ok) = verify(&cfg(), SECRET, "garbage", now);
        assert!(!ok && text.contains("not a valid"), "{text}");
        let refresh = RefreshTokens::from_secret(SECRET)
            .mint(fraise_core::tokens::RefreshToken { session: SessionId::new(), counter: 3 }, "");
        let (text, ok) = verify(&cfg(), SECRET, &refresh, now);
        assert!(ok && text.contains("rotation 3"), "{text}");
    }
}
