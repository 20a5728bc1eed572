//! Second factors' building blocks, without I/O: TOTP (RFC 6238 through `totp-rs`), recovery
//! codes, the sealing of TOTP secrets at rest, and the login's `mfa_token`.
//!
//! - TOTP: SHA-1, 6 digits, 30 s steps, ±1 step of skew, 160-bit secrets. [`TotpSecret::check`]
//!   returns the matched *step*, so the store can refuse a step at or before the last one used
//!   (replay, also across nodes).
//! - Secrets are sealed with XChaCha20-Poly1305 under a key derived (HKDF-SHA256) from
//!   `MFA_ENCRYPTION_KEY`, else from the server secret; the user's id is the associated data, so a
//!   sealed secret copied onto another user's row does not open. Sealed blobs name their key by
//!   a 4-byte fingerprint, so former keys keep opening old rows after a rotation.
//! - Recovery codes carry 80 random bits and are stored as SHA-256 only (like reset tokens).
//! - The `mfa_token` carries 256 random bits and is stored as SHA-256 only.
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Seconds per TOTP step.
pub const TOTP_STEP_SECONDS: i64 = 30;
/// Digits of a TOTP code.
pub const TOTP_DIGITS: usize = 6;
/// Steps accepted on each side of the current one.
pub const TOTP_SKEW: i64 = 1;
/// Bytes of a TOTP secret (RFC 4226 recommends 160 bits).
pub const TOTP_SECRET_BYTES: usize = 20;
/// Recovery codes issued when TOTP is confirmed.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Tries one `mfa_token` allows.
pub const MFA_TOKEN_MAX_ATTEMPTS: i32 = 5;
/// How long an `mfa_token` lives, in seconds.
pub const MFA_TOKEN_TTL_SECONDS: i64 = 300;
/// Consecutive wrong second factors of one user (any clients, any tokens) before the second step
/// is locked for everyone.
pub const MFA_LOCK_THRESHOLD: i64 = 10;
/// The first lock, doubling with every further wrong code (after it ends), at most a day.
pub const MFA_LOCK_FIRST_SECONDS: i64 = 15 * 60;
pub const MFA_LOCK_MAX_SECONDS: i64 = 24 * 3600;

/// How long the second step is locked after `failures` consecutive wrong factors (0: not).
pub fn mfa_lock_seconds(failures: i64) -> i64 {
    if failures < MFA_LOCK_THRESHOLD {
        return 0;
    }
    let doublings = u32::try_from((failures - MFA_LOCK_THRESHOLD).min(20)).unwrap_or(20);
    MFA_LOCK_FIRST_SECONDS.saturating_mul(1_i64 << doublings).min(MFA_LOCK_MAX_SECONDS)
}

const MFA_TOKEN_PREFIX: &str = "mfa_";
/// Base32 alphabet of recovery codes (RFC 4648, lower-cased): no digits 0, 1, 8 or 9 to mistake
/// for o, l, b or g.
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// 16 base32 characters = 80 bits.
const RECOVERY_CHARS: usize = 16;

/// Which second factors a user has, as stored in `tb_user.mfa_methods` (a bit set), so the
/// bearer path and `/auth/me` learn it from the row they already read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MfaMethods(pub i32);

impl MfaMethods {
    pub const TOTP: i32 = 1;
    pub const WEBAUTHN: i32 = 2;

    pub fn none() -> Self {
        Self(0)
    }

    pub fn is_enabled(self) -> bool {
        self.0 & (Self::TOTP | Self::WEBAUTHN) != 0
    }

    pub fn totp(self) -> bool {
        self.0 & Self::TOTP != 0
    }

    pub fn webauthn(self) -> bool {
        self.0 & Self::WEBAUTHN != 0
    }

    /// The enrolled methods by name, for `/auth/me`: `totp`, `webauthn`.
    pub fn names(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.totp() {
            out.push("totp");
        }
        if self.webauthn() {
            out.push("webauthn");
        }
        out
    }

    /// What a login's second step may use: TOTP brings recovery codes with it.
    pub fn login_methods(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.totp() {
            out.extend(["totp", "recovery_code"]);
        }
        if self.webauthn() {
            out.push("webauthn");
        }
        out
    }
}

/// A TOTP shared secret. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    pub fn generate() -> Self {
        let mut raw = [0u8; TOTP_SECRET_BYTES];
        rand::fill(&mut raw);
        Self(raw.to_vec())
    }

    pub fn from_bytes(raw: Vec<u8>) -> Self {
        Self(raw)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Base32 without padding, as authenticator apps take it typed in.
    pub fn base32(&self) -> String {
        self.totp("x", "x").secret().to_base32()
    }

    fn totp(&self, issuer: &str, account: &str) -> totp_rs::Totp {
        // Neither part may contain ':' (the label's separator); everything else is percent-encoded
        // by the crate.
        let clean = |s: &str| s.replace(':', "_");
        totp_rs::Builder::new()
            .with_secret(self.0.clone())
            .with_digits(TOTP_DIGITS as u8)
            .with_step_duration(TOTP_STEP_SECONDS as u64)
            .with_skew(TOTP_SKEW as u16)
            .with_issuer(Some(clean(issuer)))
            .with_account_name(clean(account))
            .build_noncompliant()
    }

    /// `otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=ISSUER` (SHA-1, 6 digits, 30 s: the
    /// defaults every authenticator assumes).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        // The label parts were cleaned of ':' above, the one thing `to_url` refuses.
        self.totp(issuer, account).to_url().unwrap_or_default()
    }

    /// The code for the step containing `unix` (seconds).
    pub fn code_at(&self, unix: i64) -> String {
        self.totp("x", "x").generate(u64::try_from(unix).unwrap_or(0)).to_string()
    }

    /// The step (`unix / 30`) whose code `code` is, among the current step and one either side,
    /// or `None`. Anything but exactly six ASCII digits (spaces removed) is `None`. Every candidate
    /// is compared in constant time.
    pub fn check(&self, code: &str, unix: i64) -> Option<i64> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if code.len() != TOTP_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let totp = self.totp("x", "x");
        let now = u64::try_from(unix).ok()?;
        let step = now / TOTP_STEP_SECONDS as u64;
        let first = step.saturating_sub(TOTP_SKEW as u64);
        let mut found = None;
        // All candidates are computed and compared (no early exit on a match).
        for s in first..=step + TOTP_SKEW as u64 {
            let candidate = totp.generate(s * TOTP_STEP_SECONDS as u64).to_string();
            let equal: bool = subtle::ConstantTimeEq::ct_eq(candidate.as_bytes(), code.as_bytes()).into();
            if equal && found.is_none() {
                found = i64::try_from(s).ok();
            }
        }
        found
    }
}

/// The QR code of `uri` as an SVG document (for `img src="data:image/svg+xml;..."` or inline).
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
    )
}

/// Ten fresh recovery codes, shown as `xxxx-xxxx-xxxx-xxxx`.
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODE_COUNT)
        .map(|_| {
            let mut raw = [0u8; RECOVERY_CHARS];
            rand::fill(&mut raw);
            let chars: Vec<u8> = raw.iter().map(|b| RECOVERY_ALPHABET[usize::from(b & 31)]).collect();
            chars.chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
        })
        .collect()
}

/// A recovery code as typed (any case, with or without dashes and spaces) in its canonical form,
/// or `None` if it cannot be one.
pub fn normalize_recovery_code(input: &str) -> Option<String> {
    let s: String = input.chars().filter(|c| *c != '-' && !c.is_whitespace()).map(|c| c.to_ascii_lowercase()).collect();
    (s.len() == RECOVERY_CHARS && s.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))).then_some(s)
}

/// What is stored of a recovery code (canonical form, see [`normalize_recovery_code`]).
pub fn recovery_code_hash(canonical: &str) -> [u8; 32] {
    Sha256::digest(canonical.as_bytes()).into()
}

/// A new `mfa_token` and the hash that is stored of it.
pub fn new_mfa_token() -> (String, [u8; 32]) {
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    let token = format!("{MFA_TOKEN_PREFIX}{}", B64.encode(raw));
    let hash = mfa_token_hash(&token);
    (token, hash)
}

/// The stored form of an `mfa_token`; `None` for anything that cannot be one (no lookup needed).
pub fn parse_mfa_token(token: &str) -> Option<[u8; 32]> {
    let raw = token.strip_prefix(MFA_TOKEN_PREFIX)?;
    (raw.len() == 43 && B64.decode(raw).is_ok_and(|b| b.len() == 32)).then(|| mfa_token_hash(token))
}

fn mfa_token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

const SEAL_VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;

/// One sealing key and its fingerprint.
#[derive(Clone)]
struct SealKey {
    id: [u8; KEY_ID_LEN],
    cipher: XChaCha20Poly1305,
}

impl SealKey {
    fn derive(material: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"fraise-auth"), material);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32: this cannot fail.
        let _ = hk.expand(b"mfa secret seal v1", &mut key);
        let mut id_hash = Sha256::new();
        id_hash.update(b"fraise-auth mfa key id");
        id_hash.update(key);
        let digest = id_hash.finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        let cipher = XChaCha20Poly1305::new(&key.into());
        Self { id, cipher }
    }
}

/// Seals and opens TOTP secrets: the current key seals, it and any former key open.
#[derive(Clone)]
pub struct SecretSealer {
    current: SealKey,
    previous: Vec<SealKey>,
}

impl fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSealer").field("previous_keys", &self.previous.len()).finish_non_exhaustive()
    }
}

/// A sealed secret that no known key opens, or that was tampered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stored MFA secret cannot be opened with the configured keys")]
pub struct SealError;

impl SecretSealer {
    /// `current` seals; `previous` (former keys) only open.
    pub fn new(current: &[u8], previous: &[&[u8]]) -> Self {
        Self { current: SealKey::derive(current), previous: previous.iter().map(|k| SealKey::derive(k)).collect() }
    }

    /// `version | key id | nonce | ciphertext+tag`, bound to `user`.
    pub fn seal(&self, user: Uuid, secret: &TotpSecret) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let aad = user.as_bytes();
        let sealed = self
            .current
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: secret.as_bytes(), aad })
            // Encryption fails only for messages over ~256 GiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + sealed.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Whether `blob` was sealed with the current key (else it should be sealed again).
    pub fn is_current(&self, blob: &[u8]) -> bool {
        blob.get(1..1 + KEY_ID_LEN).is_some_and(|id| id == self.current.id)
    }

    pub fn open(&self, user: Uuid, blob: &[u8]) -> Result<TotpSecret, SealError> {
        let (&version, rest) = blob.split_first().ok_or(SealError)?;
        if version != SEAL_VERSION || rest.len() < KEY_ID_LEN + NONCE_LEN + 16 {
            return Err(SealError);
        }
        let (id, rest) = rest.split_at(KEY_ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let key = std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == id).ok_or(SealError)?;
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        key.cipher
            .decrypt(&XNonce::from(n), Payload { msg: sealed, aad: user.as_bytes() })
            .map(TotpSecret)
            .map_err(|_| SealError)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    /// RFC 4226 §5.3 dynamic truncation over HMAC-SHA-1, written from the RFC, not through
    /// totp-rs: the independent check of the crate.
    fn rfc_totp(secret: &[u8], unix: u64) -> String {
        let mut mac = <Hmac<sha1::Sha1> as hmac::KeyInit>::new_from_slice(secret).unwrap();
        mac.update(&(unix / 30).to_be_bytes());
        let h = mac.finalize().into_bytes();
        let off = usize::from(h[19] & 0x0f);
        let bin = (u32::from(h[off]) & 0x7f) << 24
            | u32::from(h[off + 1]) << 16
            | u32::from(h[off + 2]) << 8
            | u32::from(h[off + 3]);
        format!("{:06}", bin % 1_000_000)
    }

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 Appendix B, SHA-1 rows (8 digits there; the last 6 are the 6-digit code).
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        for (t, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000_i64, "65353130"),
        ] {
            assert_eq!(secret.code_at(t), eight[2..], "t = {t}");
            assert_eq!(rfc_totp(secret.as_bytes(), t as u64), eight[2..], "independent, t = {t}");
            assert_eq!(secret.check(&eight[2..], t), Some(t / 30));
        }
    }

    #[test]
    fn skew_is_one_step_either_side_and_no_more() {
        let secret = TotpSecret::generate();
        let t = 1_700_000_015; // mid-step
        let step = t / 30;
        let code = |s: i64| rfc_totp(secret.as_bytes(), (s * 30) as u64);
        assert_eq!(secret.check(&code(step), t), Some(step));
        assert_eq!(secret.check(&code(step - 1), t), Some(step - 1));
        assert_eq!(secret.check(&code(step + 1), t), Some(step + 1));
        // Two steps away: refused (unless the codes happen to collide, 1 in 10^6 per step).
        if code(step - 2) != code(step - 1) && code(step - 2) != code(step) && code(step - 2) != code(step + 1) {
            assert_eq!(secret.check(&code(step - 2), t), None);
        }
        // Step edges: the last second of a step and the first of the next.
        let edge = 1_700_000_039; // step ends at ...040
        assert_eq!(secret.check(&code(edge / 30 + 1), edge), Some(edge / 30 + 1));
        // One second later the step before the previous one has left the window.
        let gone = code(edge / 30 - 1);
        if ![code(edge / 30), code(edge / 30 + 1), code(edge / 30 + 2)].contains(&gone) {
            assert_eq!(secret.check(&gone, edge), Some(edge / 30 - 1));
            assert_eq!(secret.check(&gone, edge + 1), None);
        }
    }

    #[test]
    fn malformed_codes_are_none() {
        let secret = TotpSecret::generate();
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６", "-12345", "123 45"] {
            assert_eq!(secret.check(bad, 1_700_000_000), None, "{bad:?}");
        }
        let c = secret.code_at(1_700_000_000);
        assert!(secret.check(&format!("{} {}", &c[..3], &c[3..]), 1_700_000_000).is_some());
    }

    #[test]
    fn otpauth_uri_names_issuer_account_and_secret() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        let uri = secret.otpauth_uri("fraise-auth", "ada@example.com");
        assert!(uri.starts_with("otpauth://totp/fraise-auth:ada%40example.com?"), "{uri}");
        assert!(uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), "{uri}");
        assert!(uri.contains("issuer=fraise-auth"), "{uri}");
        // A ':' in the account cannot break the label.
        assert!(secret.otpauth_uri("a:b", "c:d").starts_with("otpauth://totp/a_b:c_d?"));
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }

    #[test]
    fn sealed_secrets_open_only_for_their_user_and_known_keys() {
        let user = Uuid::new_v4();
        let secret = TotpSecret::generate();
        let old = SecretSealer::new(b"old-server-secret", &[]);
        let blob = old.seal(user, &secret);
        assert_eq!(old.open(user, &blob).unwrap(), secret);
        assert!(!blob.windows(secret.as_bytes().len()).any(|w| w == secret.as_bytes()), "secret in clear");
        assert_eq!(old.open(Uuid::new_v4(), &blob), Err(SealError), "another user's row");
        let rotated = SecretSealer::new(b"new-server-secret", &[b"old-server-secret"]);
        assert_eq!(rotated.open(user, &blob).unwrap(), secret, "former key still opens");
        assert!(old.is_current(&blob) && !rotated.is_current(&blob));
        assert!(rotated.is_current(&rotated.seal(user, &secret)));
        assert_eq!(SecretSealer::new(b"new-server-secret", &[]).open(user, &blob), Err(SealError));
        let mut tampered = blob.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(old.open(user, &tampered), Err(SealError));
        assert_eq!(old.open(user, &[]), Err(SealError));
        assert_eq!(old.open(user, &blob[..10]), Err(SealError));
    }

    #[test]
    fn the_second_step_locks_after_ten_wrong_factors_doubling_to_a_day() {
        assert_eq!(mfa_lock_seconds(9), 0);
        assert_eq!(mfa_lock_seconds(10), 900);
        assert_eq!(mfa_lock_seconds(11), 1800);
        assert_eq!(mfa_lock_seconds(16), 57_600);
        assert_eq!(mfa_lock_seconds(17), 86_400);
        assert_eq!(mfa_lock_seconds(i64::MAX), 86_400);
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalise() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        let set: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(set.len(), codes.len());
        for c in &codes {
            assert_eq!(c.len(), 19);
            let canon = normalize_recovery_code(c).unwrap();
            assert_eq!(normalize_recovery_code(&c.to_uppercase().replace('-', " ")), Some(canon));
        }
        assert_eq!(normalize_recovery_code("123456"), None);
        assert_eq!(normalize_recovery_code("abcd-efgh-ijkl-mno0"), None);
    }

    #[test]
    fn mfa_tokens_parse_only_in_their_own_shape() {
        let (t, h) = new_mfa_token();
        assert_eq!(parse_mfa_token(&t), Some(h));
        assert_eq!(parse_mfa_token(&t[4..]), None);
        assert_eq!(parse_mfa_token("mfa_"), None);
        assert_eq!(parse_mfa_token(&format!("{t}A")), None);
    }
}
