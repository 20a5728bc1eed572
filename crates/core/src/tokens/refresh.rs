//! Opaque refresh tokens.
//!
//! A refresh token is `base64url(session id ‖ counter ‖ HMAC-SHA256(key, tenant ‖ session id ‖
//! counter))`. The database keeps only each session's current counter, so:
//! - rotating is one conditional `UPDATE … WHERE counter = presented` (no token table, no race);
//! - the current token can be minted again from the row (the reuse grace window needs no storage);
//! - a token forged without the key, or moved to another tenant, fails the MAC before any query.
//!
//! The key is derived from the server secret with a fixed label, so the JWT key and the refresh
//! key are never the same bytes.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::error::AuthError;
use crate::model::SessionId;

type HmacSha256 = Hmac<Sha256>;

const ID_LEN: usize = 16;
const COUNTER_LEN: usize = 8;
const TAG_LEN: usize = 32;
const RAW_LEN: usize = ID_LEN + COUNTER_LEN + TAG_LEN;
/// Length of the base64url text of a token: 56 bytes without padding.
pub const TOKEN_LEN: usize = (RAW_LEN * 4).div_ceil(3);
const KEY_LABEL: &[u8] = b"fraise-auth/refresh-token/v1";

/// A refresh token whose MAC checked out: which session, and which link of its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshToken {
    pub session: SessionId,
    pub counter: i64,
}

/// Mints and parses refresh tokens under one derived key.
#[derive(Clone)]
pub struct RefreshTokens {
    /// HMAC-SHA256 already keyed with the derived key: each tag clones it rather than
    /// re-deriving the key pads (two SHA-256 blocks) per token.
    keyed: HmacSha256,
}

impl std::fmt::Debug for RefreshTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTokens { key: [redacted] }")
    }
}

impl RefreshTokens {
    /// Derives the refresh-token key from the server secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| {
            // HMAC accepts keys of any length; this branch cannot be taken.
            <HmacSha256 as KeyInit>::new_from_slice(&[0u8; 32]).unwrap_or_else(|_| unreachable!())
        });
        mac.update(KEY_LABEL);
        let key = mac.finalize().into_bytes();
        let keyed = <HmacSha256 as KeyInit>::new_from_slice(&key).unwrap_or_else(|_| unreachable!());
        Self { keyed }
    }

    fn tag(&self, tenant: &str, session: &[u8], counter: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        // Length-prefixed so that no (tenant, id) pair can collide with another.
        mac.update(&u32::try_from(tenant.len()).unwrap_or(u32::MAX).to_be_bytes());
        mac.update(tenant.as_bytes());
        mac.update(session);
        mac.update(counter);
        mac
    }

    pub fn mint(&self, token: RefreshToken, tenant: &str) -> String {
        let id = token.session.0.into_bytes();
        let counter = token.counter.to_be_bytes();
        let tag = self.tag(tenant, &id, &counter).finalize().into_bytes();
        let mut raw = [0u8; RAW_LEN];
        raw[..ID_LEN].copy_from_slice(&id);
        raw[ID_LEN..ID_LEN + COUNTER_LEN].copy_from_slice(&counter);
        raw[ID_LEN + COUNTER_LEN..].copy_from_slice(&tag);
        B64.encode(raw)
    }

    /// Checks the shape and the MAC (in constant time) and returns what the token names.
    pub fn parse(&self, text: &str, tenant: &str) -> Result<RefreshToken, AuthError> {
        let malformed = AuthError::InvalidToken("malformed refresh token");
        if text.len() != TOKEN_LEN {
            return Err(malformed);
        }
        let mut raw = [0u8; RAW_LEN];
        match B64.decode_slice(text, &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return Err(malformed),
        }
        let (id, rest) = raw.split_at(ID_LEN);
        let (counter, tag) = rest.split_at(COUNTER_LEN);
        self.tag(tenant, id, counter)
            .verify_slice(tag)
            .map_err(|_| AuthError::InvalidToken("refresh token signature mismatch"))?;
        let id: [u8; ID_LEN] = id.try_into().map_err(|_| AuthError::InvalidToken("malformed refresh token"))?;
        let counter: [u8; COUNTER_LEN] =
            counter.try_into().map_err(|_| AuthError::InvalidToken("malformed refresh token"))?;
        Ok(RefreshToken { session: SessionId(Uuid::from_bytes(id)), counter: i64::from_be_bytes(counter) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> RefreshTokens {
        RefreshTokens::from_secret(b"test-secret-test-secret-test-secret")
    }

    #[test]
    fn a_minted_token_parses_back() {
        let k = keys();
        let t = RefreshToken { session: SessionId::new(), counter: 41 };
        let text = k.mint(t, "public");
        assert_eq!(text.len(), TOKEN_LEN);
        assert_eq!(k.parse(&text, "public").ok(), Some(t));
    }

    #[test]
    fn minting_is_deterministic_so_the_grace_window_needs_no_storage() {
        let k = keys();
        let t = RefreshToken { session: SessionId::new(), counter: 3 };
        assert_eq!(k.mint(t, "public"), k.mint(t, "public"));
    }

    #[test]
    fn another_tenant_another_secret_or_a_flipped_bit_fails() {
        let k = keys();
        let t = RefreshToken { session: SessionId::new(), counter: 1 };
        let text = k.mint(t, "tenant_a");
        assert!(k.parse(&text, "tenant_b").is_err());
        assert!(RefreshTokens::from_secret(b"other").parse(&text, "tenant_a").is_err());
        let mut raw = B64.decode(&text).unwrap_or_default();
        raw[ID_LEN] ^= 1; // counter 1 -> a different counter, same tag
        assert!(k.parse(&B64.encode(&raw), "tenant_a").is_err());
    }

    #[test]
    fn malformed_input_is_refused() {
        let k = keys();
        for junk in [
            "",
            "x",
            &"A".repeat(TOKEN_LEN),
            &"!".repeat(TOKEN_LEN),
            &"A".repeat(TOKEN_LEN + 1),
            "é".repeat(40).as_str(),
        ] {
            assert!(k.parse(junk, "public").is_err(), "{junk:.12}");
        }
    }
}
