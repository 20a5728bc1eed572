//! The refresh-token parser: any text, for two tenants. Properties: parsing never panics; only a
//! token this key minted parses, and it parses back to exactly the text presented (no second
//! spelling of one token); a minted token with any one character changed does not parse as a
//! different token.
#![no_main]
use std::sync::OnceLock;

use fraise_core::model::SessionId;
use fraise_core::tokens::{RefreshToken, RefreshTokens};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

fn keys() -> &'static RefreshTokens {
    static KEYS: OnceLock<RefreshTokens> = OnceLock::new();
    KEYS.get_or_init(|| RefreshTokens::from_secret(b"fuzz-secret-fuzz-secret-fuzz-secret"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let (tenant, other) = if first & 1 == 0 { ("public", "acme") } else { ("acme", "public") };
    let text = String::from_utf8_lossy(rest);
    if let Ok(token) = keys().parse(&text, tenant) {
        assert_eq!(keys().mint(token, tenant), text, "a parsed token has one spelling");
    }
    // Round trip for any session and counter, bound to its tenant.
    if rest.len() >= 24 {
        let mut id = [0u8; 16];
        id.copy_from_slice(&rest[..16]);
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&rest[16..24]);
        let token = RefreshToken { session: SessionId(Uuid::from_bytes(id)), counter: i64::from_be_bytes(counter) };
        let minted = keys().mint(token, tenant);
        assert_eq!(keys().parse(&minted, tenant).ok(), Some(token));
        assert!(keys().parse(&minted, other).is_err(), "bound to its tenant");
        // One character replaced: refused, or (only if it decodes to the same bytes) the same token.
        if let (Some(&pos), Some(&ch)) = (rest.get(24), rest.get(25)) {
            let pos = usize::from(pos) % minted.len();
            let mut alt: Vec<u8> = minted.clone().into_bytes();
            alt[pos] = ch;
            let alt = String::from_utf8_lossy(&alt).into_owned();
            if alt != minted {
                assert!(keys().parse(&alt, tenant).is_err(), "a changed token must not parse: {alt}");
            }
        }
    }
});
