//! `fraise-auth token decode|verify`: the guide's token debug tool, built in.
//!
//! `decode` shows header and claims without checking anything (clearly marked unverified);
//! `verify` checks an access token with the configured secret, issuer and audience at the current
//! time, or a refresh token's MAC, and says exactly why not when it fails.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Duration, Utc};
use fraise_core::AuthError;
use fraise_core::tokens::{AccessTokens, JwtSettings, RefreshTokens};
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

/// Verifies `token` with `cfg`'s keys at `now`; the text to print, and whether it is valid.
pub fn verify(cfg: &Config, secret: &[u8], token: &str, now: DateTime<Utc>) -> (String, bool) {
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
    let settings = JwtSettings {
        ttl: Duration::minutes(cfg.access_ttl_minutes),
        issuer: cfg.jwt_issuer.clone(),
        audience: cfg.jwt_audience.clone(),
        leeway: Duration::zero(),
    };
    let tokens = match AccessTokens::hs256(secret, settings) {
        Ok(t) => t,
        Err(e) => return (format!("❌ {e}"), false),
    };
    match tokens.verify(token, None, now) {
        Ok(claims) => {
            let pretty = serde_json::to_string_pretty(&claims).unwrap_or_default();
            (format!("✅ valid access token (expires {})\n{pretty}", time(Some(claims.exp))), true)
        }
        Err(AuthError::TokenExpired) => {
            let exp = decode(token).ok().and_then(|(_, c)| c["exp"].as_i64());
            (format!("❌ expired since {} (now {})", time(exp), time(Some(now.timestamp()))), false)
        }
        Err(AuthError::InvalidToken(why)) => {
            let hint = match why {
                "bad signature" => " (signed with another JWT_SECRET_KEY, or tampered with)",
                "algorithm not allowed" => " (only HS256 is accepted)",
                _ => "",
            };
            (format!("❌ invalid: {why}{hint}"), false)
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
        assert!(!ok && text.contains("bad signature"), "{text}");
        let (text, ok) = verify(&cfg(), SECRET, "garbage", now);
        assert!(!ok && text.contains("not a valid"), "{text}");
        let refresh = RefreshTokens::from_secret(SECRET)
            .mint(fraise_core::tokens::RefreshToken { session: SessionId::new(), counter: 3 }, "");
        let (text, ok) = verify(&cfg(), SECRET, &refresh, now);
        assert!(ok && text.contains("rotation 3"), "{text}");
    }
}
