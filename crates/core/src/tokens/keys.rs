//! Access-token keys: the algorithm, key ids (`kid`), the key ring (one key signs, several
//! verify, so tokens of the previous key live until they expire), key generation and the public
//! JWKS.
//!
//! Pure: keys come in as bytes or PEM text and go out as PEM text. Reading and writing the key
//! directory is the binary's job; this module knows no files. Nothing here ever shows a secret or
//! a private key: `Debug` prints kids and algorithms only, and the JWKS of HS256 is empty.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};

/// Smallest RSA modulus accepted, in bits (NIST: 2048 until 2030).
pub const MIN_RSA_BITS: usize = 2048;

/// The signing algorithm of access tokens (`JWT_ALGORITHM`). Verification is pinned to it: the
/// `alg` a token claims is never trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `JWT_SECRET_KEY`: only this server can verify.
    #[default]
    Hs256,
    /// Ed25519 signatures: small keys, fast; anyone with the JWKS can verify.
    EdDsa,
    /// RSA PKCS#1 v1.5 with SHA-256: the most widely supported public-key JWT algorithm.
    Rs256,
}

impl JwtAlgorithm {
    /// Parses `HS256`, `EdDSA` or `RS256` (case-insensitive).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_uppercase().as_str() {
            "HS256" => Ok(Self::Hs256),
            "EDDSA" | "ED25519" => Ok(Self::EdDsa),
            "RS256" => Ok(Self::Rs256),
            _ => Err(format!("{text:?} is not a supported JWT algorithm: use HS256, EdDSA or RS256")),
        }
    }

    /// The name used in JWT headers and JWKS (`HS256`, `EdDSA`, `RS256`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }

    pub fn jwt(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::EdDsa => Algorithm::EdDSA,
            Self::Rs256 => Algorithm::RS256,
        }
    }

    /// Whether keys are key pairs (in files) rather than a shared secret.
    pub fn is_asymmetric(self) -> bool {
        self != Self::Hs256
    }
}

impl std::fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The kid of an HS256 secret: the first 8 bytes of SHA-256(HMAC-SHA256(secret, "fraise-auth
/// kid")), base64url. One-way, so publishing it (every token header does) says nothing about
/// the secret, yet each secret gets a stable, distinct id.
pub fn hs256_kid(secret: &[u8]) -> String {
    let tag = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(b"fraise-auth kid");
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC accepts keys of any length; kept total rather than panicking.
        Err(_) => Vec::new(),
    };
    let digest = Sha256::digest(&tag);
    B64.encode(&digest[..8])
}

/// A private key of an asymmetric algorithm, with its kid (RFC 7638 thumbprint) and public JWK.
#[derive(Clone)]
pub struct PrivateKey {
    alg: JwtAlgorithm,
    kid: String,
    encoding: EncodingKey,
    /// The public half, as published in the JWKS (with kid, alg and use).
    jwk: Jwk,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): SEQUENCE { version 0, AlgorithmIdentifier
/// { 1.3.101.112 }, OCTET STRING { OCTET STRING (32 bytes) } }. Written by hand because the JWT
/// library reads exactly this 48-byte form (the v2 form with the public key is refused), and it
/// is what `openssl genpkey -algorithm ed25519` writes.
const ED25519_PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

impl PrivateKey {
    /// Reads a PKCS#8 PEM private key (Ed25519 or RSA; PKCS#1 `RSA PRIVATE KEY` too) and works out
    /// its algorithm, public key and kid.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        if let Ok(encoding) = EncodingKey::from_ed_pem(pem.as_bytes()) {
            return Self::from_encoding(JwtAlgorithm::EdDsa, encoding);
        }
        match EncodingKey::from_rsa_pem(pem.as_bytes()) {
            Ok(encoding) => Self::from_encoding(JwtAlgorithm::Rs256, encoding),
            Err(_) => Err("not a PEM Ed25519 or RSA private key (expected PKCS#8 `BEGIN PRIVATE KEY`)".into()),
        }
    }

    fn from_encoding(alg: JwtAlgorithm, encoding: EncodingKey) -> Result<Self, String> {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg.jwt())
            .map_err(|e| format!("cannot derive the public key of this {alg} key: {e}"))?;
        if let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = &jwk.algorithm {
            let bits = B64.decode(&rsa.n).map(|n| n.iter().skip_while(|b| **b == 0).count() * 8).unwrap_or(0);
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA key of {bits} bits: at least {MIN_RSA_BITS} are required"));
            }
        }
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(|e| format!("cannot compute the key id: {e}"))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match alg {
            JwtAlgorithm::EdDsa => KeyAlgorithm::EdDSA,
            JwtAlgorithm::Rs256 => KeyAlgorithm::RS256,
            JwtAlgorithm::Hs256 => KeyAlgorithm::HS256,
        });
        Ok(Self { alg, kid, encoding, jwk })
    }

    /// A new random key of `alg` (`rsa_bits` for RS256) and its PKCS#8 PEM text, to be stored
    /// privately. HS256 has no key pairs: use a secret.
    pub fn generate(alg: JwtAlgorithm, rsa_bits: usize) -> Result<(Self, String), String> {
        let der = match alg {
            JwtAlgorithm::Hs256 => return Err("HS256 uses JWT_SECRET_KEY, not a key pair".into()),
            JwtAlgorithm::EdDsa => {
                let mut seed = [0u8; 32];
                rand::fill(&mut seed);
                let mut der = ED25519_PKCS8_PREFIX.to_vec();
                der.extend_from_slice(&seed);
                der
            }
            JwtAlgorithm::Rs256 => {
                use rsa::pkcs8::EncodePrivateKey as _;
                if bits_out_of_range(rsa_bits) {
                    return Err(format!("RSA keys of {rsa_bits} bits are not offered: use 2048, 3072 or 4096"));
                }
                let key = rsa::PrivateKey::new(&mut rand::rng(), rsa_bits)
                    .map_err(|e| format!("RSA key generation failed: {e}"))?;
                key.to_pkcs8_der().map_err(|e| format!("cannot encode the RSA key: {e}"))?.as_bytes().to_vec()
            }
        };
        let pem = pem_encode("PRIVATE KEY", &der);
        Ok((Self::from_pem(&pem)?, pem))
    }

    pub fn alg(&self) -> JwtAlgorithm {
        self.alg
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }
}

fn bits_out_of_range(bits: usize) -> bool {
    ![2048, 3072, 4096].contains(&bits)
}

/// PEM armour: base64 in lines of 64 characters between BEGIN/END lines.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// One key that verifies: its kid and the key material.
struct Verifier {
    kid: String,
    key: DecodingKey,
    /// HS256 only: the HMAC already keyed with the secret. Verifying clones it instead of
    /// re-deriving the key pads on every request (a profile showed that as ~8% of `/auth/me`).
    hmac: Option<hmac::Hmac<sha2::Sha256>>,
}

/// The keys of access tokens: exactly one signs (its kid goes in every header), every one
/// verifies the tokens that name its kid. All share one algorithm.
pub struct KeyRing {
    alg: JwtAlgorithm,
    signing_kid: String,
    encoding: EncodingKey,
    verifiers: Vec<Verifier>,
    /// Public keys of the verifiers (empty for HS256).
    jwks: Vec<Jwk>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("alg", &self.alg)
            .field("signing_kid", &self.signing_kid)
            .field("verifying_kids", &self.verifiers.iter().map(|v| v.kid.as_str()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// HS256: `current` signs and verifies; each of `previous` (older secrets) still verifies.
    /// Fails only for an empty secret.
    pub fn hs256(current: &[u8], previous: &[&[u8]]) -> Result<Self, String> {
        let bad = |e: jsonwebtoken::errors::Error| format!("unusable JWT secret: {e}");
        let mut verifiers = Vec::new();
        for secret in std::iter::once(current).chain(previous.iter().copied()) {
            let kid = hs256_kid(secret);
            if !verifiers.iter().any(|v: &Verifier| v.kid == kid) {
                let hmac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
                    .map_err(|_| "unusable JWT secret".to_owned())?;
                verifiers.push(Verifier { kid, key: DecodingKey::from_secret(secret).map_err(bad)?, hmac: Some(hmac) });
            }
        }
        Ok(Self {
            alg: JwtAlgorithm::Hs256,
            signing_kid: hs256_kid(current),
            encoding: EncodingKey::from_secret(current).map_err(bad)?,
            verifiers,
            jwks: Vec::new(),
        })
    }

    /// EdDSA or RS256: `current` signs and verifies; each of `others` still verifies. Every key
    /// must be of `current`'s algorithm (the algorithm is pinned, so another could never verify).
    pub fn asymmetric(current: &PrivateKey, others: &[PrivateKey]) -> Result<Self, String> {
        let mut ring = Self {
            alg: current.alg,
            signing_kid: current.kid.clone(),
            encoding: current.encoding.clone(),
            verifiers: Vec::new(),
            jwks: Vec::new(),
        };
        for key in std::iter::once(current).chain(others) {
            if key.alg != current.alg {
                return Err(format!(
                    "key {} is {} but the signing key {} is {}: one algorithm at a time",
                    key.kid, key.alg, current.kid, current.alg
                ));
            }
            if ring.verifiers.iter().any(|v| v.kid == key.kid) {
                continue;
            }
            let decoding = DecodingKey::from_jwk(&key.jwk).map_err(|e| format!("key {}: {e}", key.kid))?;
            ring.verifiers.push(Verifier { kid: key.kid.clone(), key: decoding, hmac: None });
            ring.jwks.push(key.jwk.clone());
        }
        Ok(ring)
    }

    pub fn alg(&self) -> JwtAlgorithm {
        self.alg
    }

    /// The kid written into every token this ring signs.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn verifying_kids(&self) -> impl Iterator<Item = &str> {
        self.verifiers.iter().map(|v| v.kid.as_str())
    }

    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The key that verifies tokens naming `kid`, if it is one of ours.
    pub(crate) fn decoding(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifiers.iter().find(|v| v.kid == kid).map(|v| &v.key)
    }

    /// HS256: the keyed HMAC of the secret named `kid`, if it is one of ours.
    pub(crate) fn hs256_mac(&self, kid: &str) -> Option<&hmac::Hmac<sha2::Sha256>> {
        self.verifiers.iter().find(|v| v.kid == kid).and_then(|v| v.hmac.as_ref())
    }

    /// `{"keys": [...]}`: the public key of every verifying key; always empty for HS256 (a
    /// secret is never published).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.jwks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_parse_by_their_jwt_names() {
        assert_eq!(JwtAlgorithm::parse("eddsa"), Ok(JwtAlgorithm::EdDsa));
        assert_eq!(JwtAlgorithm::parse(" RS256 "), Ok(JwtAlgorithm::Rs256));
        assert_eq!(JwtAlgorithm::parse("HS256"), Ok(JwtAlgorithm::Hs256));
        let err = JwtAlgorithm::parse("none").err().unwrap_or_default();
        assert!(err.contains("HS256, EdDSA or RS256"), "{err}");
        assert!(JwtAlgorithm::parse("ES256").is_err());
    }

    #[test]
    fn the_hs256_kid_is_stable_distinct_and_reveals_nothing() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let kid = hs256_kid(secret);
        assert_eq!(kid, hs256_kid(secret));
        assert_eq!(kid.len(), 11, "8 bytes in base64url");
        assert_ne!(kid, hs256_kid(b"0123456789abcdef0123456789abcdeF"));
        assert!(!kid.contains("0123"));
    }

    #[test]
    fn a_generated_ed25519_key_round_trips_through_pem_with_its_thumbprint_kid() {
        let (key, pem) = PrivateKey::generate(JwtAlgorithm::EdDsa, 0).unwrap_or_else(|e| panic!("{e}"));
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let again = PrivateKey::from_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((again.alg(), again.kid()), (JwtAlgorithm::EdDsa, key.kid()));
        assert_eq!(key.kid().len(), 43, "SHA-256 in base64url");
        let jwk = serde_json::to_value(key.public_jwk()).unwrap_or_default();
        assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
        assert_eq!((jwk["alg"].as_str(), jwk["use"].as_str()), (Some("EdDSA"), Some("sig")));
        assert_eq!(jwk["kid"].as_str(), Some(key.kid()));
        assert!(jwk.get("d").is_none(), "no private part: {jwk}");
        // RFC 7638 by hand: SHA-256 of {"crv","kty","x"} in that order, no spaces.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, jwk["x"].as_str().unwrap_or(""));
        assert_eq!(key.kid(), B64.encode(Sha256::digest(canonical.as_bytes())));
    }

    #[test]
    fn the_rfc8037_example_key_has_the_rfc_thumbprint() {
        // RFC 8037 appendix A.1/A.3: this private key's JWK thumbprint is kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k.
        let seed = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49,
            0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
        ];
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let key = PrivateKey::from_pem(&pem_encode("PRIVATE KEY", &der)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn junk_and_small_rsa_sizes_are_refused() {
        assert!(PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
        assert!(PrivateKey::from_pem("hello").is_err());
        assert!(PrivateKey::generate(JwtAlgorithm::Rs256, 1024).is_err());
        assert!(PrivateKey::generate(JwtAlgorithm::Hs256, 0).is_err());
    }

    #[test]
    fn a_ring_refuses_mixed_algorithms_and_publishes_no_secret() {
        let (ed, _) = PrivateKey::generate(JwtAlgorithm::EdDsa, 0).unwrap_or_else(|e| panic!("{e}"));
        let (rsa, _) = PrivateKey::generate(JwtAlgorithm::Rs256, 2048).unwrap_or_else(|e| panic!("{e}"));
        assert!(KeyRing::asymmetric(&ed, std::slice::from_ref(&rsa)).is_err());
        let ring = KeyRing::asymmetric(&rsa, &[]).unwrap_or_else(|e| panic!("{e}"));
        let jwks = ring.jwks();
        assert_eq!(jwks["keys"][0]["kty"], "RSA");
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
        assert!(jwks["keys"][0].get("d").is_none() && jwks["keys"][0].get("p").is_none(), "{jwks}");
        let hs = KeyRing::hs256(b"secret-secret-secret-secret-secret", &[b"old-secret-old-secret-old-secret"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hs.jwks(), serde_json::json!({"keys": []}));
        assert_eq!(hs.verifying_kids().count(), 2);
        assert!(!format!("{hs:?}").contains("secret-secret"));
    }
}
