//! Hashing and verifying passwords.
//!
//! New hashes are Argon2id PHC strings with the configured parameters. Verification accepts any
//! Argon2 PHC string (passlib and argon2-cffi write the same format) and bcrypt (`$2a$`/`$2b$`/
//! `$2y$`) for imported accounts, and reports when the stored hash should be replaced by one with
//! the current parameters. Everything here is CPU-bound and blocking: call it from the [`HashPool`]
//! (crate::password::HashPool), never from an async task.
use std::cell::RefCell;
use std::sync::OnceLock;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

thread_local! {
    /// This thread's Argon2 working memory (the configured `m_cost` blocks), kept from one hash to
    /// the next: allocating 100 MiB per hash cost ~25,600 page faults, each zero-filling a page,
    /// on every call. Peak memory stays threads x m_cost. The hashing pool hands it back to the
    /// system when its thread has been idle for a moment ([`release_thread_memory`]), so an idle
    /// service does not keep it.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Frees this thread's kept Argon2 memory (see `MEMORY`); the next hash allocates it again.
pub fn release_thread_memory() {
    MEMORY.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            *m = Vec::new();
        }
    });
}

/// Runs `f` over `blocks` Argon2 blocks: this thread's kept memory when `blocks` is at most
/// `keep` (the configured cost), a temporary buffer otherwise (an imported hash with a higher
/// cost: never kept, so it cannot pin more than the configured memory).
fn with_memory<R>(blocks: usize, keep: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
    if blocks <= keep {
        let kept = MEMORY.with(|m| {
            let mut m = m.try_borrow_mut().ok()?;
            if m.len() < keep {
                *m = Vec::new(); // never two buffers at once
                m.resize(keep, Block::default());
            }
            Some(std::mem::take(&mut *m))
        });
        if let Some(mut mem) = kept {
            let out = f(&mut mem[..blocks]);
            MEMORY.with(|m| {
                if let Ok(mut m) = m.try_borrow_mut() {
                    *m = mem;
                }
            });
            return out;
        }
    }
    let mut mem = vec![Block::default(); blocks];
    f(&mut mem)
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// The guide's (and the Python original's) parameters: 100 MiB, 2 passes, 8 lanes.
    fn default() -> Self {
        Self { memory_kib: 102_400, iterations: 2, parallelism: 8 }
    }
}

impl Argon2Params {
    /// Checks the parameters against Argon2's own limits, so a bad configuration fails at start-up
    /// rather than at the first login.
    pub fn validate(&self) -> Result<(), String> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, Some(OUTPUT_LEN))
            .map(|_| ())
            .map_err(|e| format!("invalid Argon2 parameters: {e}"))
    }
}

/// 32-byte digest and 16-byte salt: what passlib wrote, so old and new hashes look alike.
const OUTPUT_LEN: usize = 32;
const SALT_LEN: usize = 16;
/// Highest bcrypt cost accepted from imported hashes (cost 14 is ~1 s; each step doubles it).
const MAX_BCRYPT_COST: u32 = 14;

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Invalid,
    Valid,
    /// Correct, but the stored hash is not Argon2id with the current parameters.
    ValidNeedsRehash,
}

/// Hashes and verifies passwords with the configured Argon2id parameters.
#[derive(Debug)]
pub struct PasswordHasher {
    params: Argon2Params,
    argon: Argon2<'static>,
    /// A hash of a random password, made once, for verifying unknown emails in the same time as
    /// known ones.
    dummy: OnceLock<String>,
}

impl PasswordHasher {
    pub fn new(params: Argon2Params) -> Result<Self, String> {
        let p = Params::new(params.memory_kib, params.iterations, params.parallelism, Some(OUTPUT_LEN))
            .map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
        Ok(Self { params, argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, p), dummy: OnceLock::new() })
    }

    pub fn params(&self) -> Argon2Params {
        self.params
    }

    /// Hashes `password` into an Argon2id PHC string with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, argon2::password_hash::Error> {
        let mut salt = [0u8; SALT_LEN];
        rand::fill(&mut salt);
        self.hash_with_salt(password, &salt)
    }

    /// [`Self::hash`] with a given salt: the PHC string `argon2`'s own `hash_password_with_salt`
    /// writes, computed in this thread's kept memory.
    fn hash_with_salt(&self, password: &str, salt: &[u8]) -> Result<String, argon2::password_hash::Error> {
        let params = self.argon.params();
        let mut out = [0u8; OUTPUT_LEN];
        let keep = params.block_count();
        with_memory(keep, keep, |mem| {
            self.argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, mem)
        })?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(params)?,
            salt: Some(Salt::new(salt)?),
            hash: Some(Output::new(&out)?),
        };
        Ok(hash.to_string())
    }

    /// Whether `password` produces `h` (what `argon2`'s `verify_password` checks: algorithm,
    /// version and costs from the hash itself, output compared in constant time), computed in
    /// this thread's kept memory when the costs allow.
    fn verify_argon2(&self, password: &str, h: &PasswordHash) -> bool {
        let (Some(salt), Some(expected)) = (&h.salt, &h.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(h.algorithm.as_str()) else {
            return false;
        };
        let version = match h.version.map(Version::try_from) {
            None => Version::default(),
            Some(Ok(v)) => v,
            Some(Err(_)) => return false,
        };
        let Ok(params) = Params::try_from(h) else {
            return false;
        };
        let argon = Argon2::new(algorithm, version, params);
        let mut out = [0u8; Output::MAX_LENGTH];
        let Some(out) = out.get_mut(..expected.len()) else {
            return false;
        };
        let blocks = argon.params().block_count();
        let keep = self.argon.params().block_count();
        let computed =
            with_memory(blocks, keep, |mem| argon.hash_password_into_with_memory(password.as_bytes(), salt, out, mem));
        computed.is_ok() && bool::from(out.ct_eq(expected.as_ref()))
    }

    /// Checks `password` against `stored`.
    ///
    /// A stored hash that cannot be parsed, or whose cost is beyond [`Self::within_ceiling`],
    /// never verifies, and costs the same work as a real verification (the dummy hash): neither
    /// its timing nor its cost is chosen by whoever wrote the row.
    pub fn verify(&self, password: &str, stored: &str) -> Verification {
        if stored.starts_with("$2") {
            let cost = stored.get(4..6).and_then(|c| c.parse::<u32>().ok());
            if cost.is_none_or(|c| c > MAX_BCRYPT_COST) {
                tracing::warn!("stored bcrypt hash is malformed or costlier than {MAX_BCRYPT_COST}; refusing it");
                return self.verify_dummy(password);
            }
            return match bcrypt::verify(password, stored) {
                Ok(true) => Verification::ValidNeedsRehash,
                _ => Verification::Invalid,
            };
        }
        let parsed = match PasswordHash::new(stored) {
            Ok(p) if self.within_ceiling(&p) => p,
            _ => {
                tracing::warn!("stored password hash is unparseable or beyond the cost ceiling; refusing it");
                return self.verify_dummy(password);
            }
        };
        if !self.verify_argon2(password, &parsed) {
            return Verification::Invalid;
        }
        if self.is_current(&parsed) { Verification::Valid } else { Verification::ValidNeedsRehash }
    }

    /// Spends the same work as verifying a real account's password, and always fails. Used for
    /// unknown emails so that response time does not reveal whether an account exists.
    pub fn verify_dummy(&self, password: &str) -> Verification {
        let dummy = self.dummy.get_or_init(|| {
            let mut random = [0u8; 24];
            rand::fill(&mut random);
            self.hash(&format!("{random:?}")).unwrap_or_default()
        });
        let _ = self.verify(password, dummy);
        Verification::Invalid
    }

    /// Stored Argon2 costs accepted for verification: up to 4x the configured memory and passes
    /// (at least 256 MiB and 10 passes) and 64 lanes. Beyond that one login could pin a worker or
    /// gigabytes of memory.
    fn within_ceiling(&self, h: &PasswordHash) -> bool {
        let Ok(p) = Params::try_from(h) else {
            return false;
        };
        p.m_cost() <= self.params.memory_kib.saturating_mul(4).max(262_144)
            && p.t_cost() <= self.params.iterations.saturating_mul(4).max(10)
            && p.p_cost() <= 64
    }

    /// Makes the dummy hash now, so the first unknown-email login costs one hash, not two.
    pub fn warm_up(&self) {
        let _ = self.verify_dummy("");
    }

    fn is_current(&self, h: &PasswordHash) -> bool {
        let same_alg = h.algorithm.as_str() == "argon2id" && h.version == Some(0x13);
        let same_len = h.hash.as_ref().map(|o| o.len()) == Some(OUTPUT_LEN);
        match Params::try_from(h) {
            Ok(p) => {
                same_alg
                    && same_len
                    && p.m_cost() == self.params.memory_kib
                    && p.t_cost() == self.params.iterations
                    && p.p_cost() == self.params.parallelism
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> PasswordHasher {
        PasswordHasher::new(Argon2Params { memory_kib: 8192, iterations: 1, parallelism: 1 })
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_fresh_hash_verifies_and_is_current() {
        let h = tiny();
        let stored = h.hash("TestPass123!").unwrap_or_default();
        assert!(stored.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{stored}");
        assert_eq!(h.verify("TestPass123!", &stored), Verification::Valid);
        assert_eq!(h.verify("TestPass123?", &stored), Verification::Invalid);
    }

    /// The kept-memory path writes exactly what `argon2`'s own hasher writes, and verifies what
    /// `argon2`'s own verifier accepts (other algorithms, versions and costs included).
    #[test]
    fn kept_memory_matches_the_crate_s_own_hashing() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let h = tiny();
        let salt = [7u8; SALT_LEN];
        let ours = h.hash_with_salt("TestPass123!", &salt).unwrap_or_default();
        let theirs = h.argon.hash_password_with_salt(b"TestPass123!", &salt).map(|p| p.to_string()).unwrap_or_default();
        assert_eq!(ours, theirs);
        for (alg, version, m, t, p, len) in [
            (Algorithm::Argon2id, Version::V0x13, 8192, 1, 1, 32),
            (Algorithm::Argon2id, Version::V0x13, 16384, 2, 4, 32), // more than the kept memory
            (Algorithm::Argon2i, Version::V0x13, 4096, 3, 1, 16),
            (Algorithm::Argon2d, Version::V0x10, 4096, 1, 2, 64),
        ] {
            let params = Params::new(m, t, p, Some(len)).unwrap_or_else(|e| panic!("{e}"));
            let stored = Argon2::new(alg, version, params)
                .hash_password_with_salt(b"TestPass123!", &salt)
                .map(|p| p.to_string())
                .unwrap_or_default();
            let parsed = PasswordHash::new(&stored).unwrap_or_else(|e| panic!("{e}"));
            assert!(h.argon.verify_password(b"TestPass123!", &parsed).is_ok(), "{stored}");
            assert!(h.verify_argon2("TestPass123!", &parsed), "{stored}");
            assert!(!h.verify_argon2("TestPass123?", &parsed), "{stored}");
        }
    }

    #[test]
    fn released_memory_is_allocated_again() {
        let h = tiny();
        let stored = h.hash("TestPass123!").unwrap_or_default();
        release_thread_memory();
        assert_eq!(h.verify("TestPass123!", &stored), Verification::Valid);
        release_thread_memory();
        assert_eq!(h.verify("TestPass123?", &stored), Verification::Invalid);
    }

    #[test]
    fn salts_differ_between_hashes() {
        let h = tiny();
        assert_ne!(h.hash("same").ok(), h.hash("same").ok());
    }

    #[test]
    fn other_parameters_verify_but_ask_for_a_rehash() {
        let old = PasswordHasher::new(Argon2Params { memory_kib: 8192, iterations: 2, parallelism: 1 })
            .unwrap_or_else(|e| panic!("{e}"));
        let stored = old.hash("TestPass123!").unwrap_or_default();
        assert_eq!(tiny().verify("TestPass123!", &stored), Verification::ValidNeedsRehash);
        assert_eq!(tiny().verify("wrong", &stored), Verification::Invalid);
    }

    #[test]
    fn garbage_never_verifies() {
        let h = tiny();
        for stored in ["", "$argon2id$", "plaintext", "$2b$12$short", "$argon2id$v=19$m=8,t=1,p=1$AAAA$AAAA"] {
            assert_eq!(h.verify("x", stored), Verification::Invalid, "{stored}");
        }
    }

    #[test]
    fn stored_costs_beyond_the_ceiling_are_refused_without_being_computed() {
        let h = tiny();
        let started = std::time::Instant::now();
        let huge =
            "$argon2id$v=19$m=4194304,t=2,p=8$GaOUsnaOkfJ+D8F47/3fWw$fja9+THxQVkS4Y+aMbB4//c7Dyn6mWfeFLBlbOW+Bs4";
        assert_eq!(h.verify("TestPassword123!", huge), Verification::Invalid);
        let bcrypt31 = "$2b$31$uoTVCAfhVHCUpzH/jd6KWudIe3xMgQoKWZNO00K0nV3Sgk1ykJY/O";
        assert_eq!(h.verify("TestPassword123!", bcrypt31), Verification::Invalid);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "neither hash was computed at its stated cost");
    }

    #[test]
    fn the_dummy_never_verifies() {
        assert_eq!(tiny().verify_dummy(""), Verification::Invalid);
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        assert!(PasswordHasher::new(Argon2Params { memory_kib: 1, iterations: 1, parallelism: 1 }).is_err());
        assert!(Argon2Params { memory_kib: 8192, iterations: 0, parallelism: 1 }.validate().is_err());
    }
}
