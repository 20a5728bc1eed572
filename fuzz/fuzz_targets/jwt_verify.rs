//! The bearer path: `AccessTokens::verify`, what every authenticated request runs first, under
//! HS256 and EdDSA. Four modes, picked by the first byte:
//! 0. any text as the token;
//! 1. any payload, correctly signed (HS256, our kid): the claim checks see arbitrary JSON;
//! 2. any header, correctly signed: the header parsing and algorithm pinning see arbitrary JSON;
//! 3. a genuine token with bytes changed: it must fail, or carry the original claims.
//!
//! Properties: nothing panics (overflow included: debug assertions are on); whatever verifies is
//! an unexpired access token of our issuer and audience, never a changed one.
#![no_main]
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Duration, Utc};
use fraise_core::model::SessionId;
use fraise_core::tokens::keys::{JwtAlgorithm, hs256_kid};
use fraise_core::tokens::{AccessTokens, JwtSettings, KeyRing, PrivateKey};
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret";

fn settings() -> JwtSettings {
    JwtSettings {
        ttl: Duration::minutes(15),
        issuer: Some("fraise".into()),
        audience: Some("app".into()),
        // Non-zero, so the leeway arithmetic is exercised with extreme claims.
        leeway: Duration::seconds(30),
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

struct Fixture {
    hs: AccessTokens,
    ed: AccessTokens,
    genuine: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let hs = AccessTokens::new(KeyRing::hs256(SECRET, &[]).unwrap_or_else(|e| panic!("{e}")), settings());
        let key = PrivateKey::generate(JwtAlgorithm::EdDsa, 2048).unwrap_or_else(|e| panic!("{e}")).0;
        let ed = AccessTokens::new(KeyRing::asymmetric(&key, &[]).unwrap_or_else(|e| panic!("{e}")), settings());
        let user = uuid::Uuid::from_u128(7);
        let genuine = [&hs, &ed]
            .iter()
            .map(|t| {
                t.issue(user, SessionId(uuid::Uuid::from_u128(9)), &["r".into()], &[], None, now())
                    .unwrap_or_else(|e| panic!("{e}"))
                    .0
            })
            .collect();
        Fixture { hs, ed, genuine }
    })
}

fn hs_signed(header: &[u8], payload: &[u8]) -> String {
    let signing_input = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET).unwrap_or_else(|_| unreachable!());
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn check(tokens: &AccessTokens, token: &str) {
    if let Ok(c) = tokens.verify(token, None, now()) {
        assert_eq!(c.token_type, "access");
        assert!(c.exp.saturating_add(30) > now().timestamp(), "expired token accepted: exp {}", c.exp);
        assert!(c.nbf.is_none_or(|nbf| nbf <= now().timestamp() + 30), "nbf {:?}", c.nbf);
        assert_eq!((c.iss.as_deref(), c.aud.as_deref()), (Some("fraise"), Some("app")));
        assert!(c.tenant.is_none());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let f = fixture();
    match mode % 4 {
        0 => {
            let text = String::from_utf8_lossy(rest);
            check(&f.hs, &text);
            check(&f.ed, &text);
        }
        1 => {
            let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#, hs256_kid(SECRET));
            check(&f.hs, &hs_signed(header.as_bytes(), rest));
        }
        2 => {
            let payload = br#"{"sub":"00000000-0000-0000-0000-000000000007","type":"access","iat":1800000000,"exp":1800000900,"jti":"j","session_id":"sess_00000000-0000-0000-0000-000000000009","iss":"fraise","aud":"app"}"#;
            let token = hs_signed(rest, payload);
            check(&f.hs, &token);
            check(&f.ed, &token);
        }
        _ => {
            for (tokens, genuine) in [(&f.hs, &f.genuine[0]), (&f.ed, &f.genuine[1])] {
                let original = tokens.verify(genuine, None, now()).unwrap_or_else(|e| panic!("{e}"));
                let mut bytes = genuine.clone().into_bytes();
                for pair in rest.chunks_exact(2) {
                    let pos = usize::from(pair[0]) * 7 % bytes.len();
                    bytes[pos] ^= pair[1];
                }
                let text = String::from_utf8_lossy(&bytes);
                if let Ok(c) = tokens.verify(&text, None, now()) {
                    assert_eq!(c, original, "a changed token verified with other claims: {text}");
                }
            }
        }
    }
});
