//! The key directory (`JWT_KEY_DIR`, default `DATA_DIR/keys`) and the access-token key ring built
//! from the configuration.
//!
//! Layout: one PKCS#8 PEM private key per file (`<kid>.pem`, mode 0600; the directory 0700), and
//! a file `current` holding the kid that signs. Every key of the configured algorithm verifies;
//! only `current` signs. A key's kid is always computed from its contents (RFC 7638 thumbprint),
//! never taken from the file name, so a renamed or copied-in `*.pem` file cannot lie about it.
//! Writes are atomic (`current` is replaced by rename; key files are created exclusively), so a
//! server starting during a rotation sees the old or the new state, never half of one.
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fraise_core::tokens::{JwtAlgorithm, KeyRing, PrivateKey};
use secrecy::ExposeSecret as _;

use crate::config::{Config, write_private};

/// Name of the file naming the signing kid.
pub const CURRENT: &str = "current";

/// A key found in the directory.
#[derive(Debug)]
pub struct StoredKey {
    pub key: PrivateKey,
    pub path: PathBuf,
    /// When the file was written (keys are never modified after).
    pub created: Option<SystemTime>,
}

impl StoredKey {
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    pub fn created_rfc3339(&self) -> String {
        self.created
            .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "-".into())
    }
}

/// A key directory.
#[derive(Debug, Clone)]
pub struct KeyDir {
    path: PathBuf,
}

impl KeyDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every `*.pem` key, oldest first. A missing directory holds no keys; an unreadable or
    /// invalid file is an error naming it (a half-broken key set is not served silently).
    pub fn keys(&self) -> Result<Vec<StoredKey>, String> {
        let entries = match std::fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot read the key directory {}: {e}", self.path.display())),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read the key directory {}: {e}", self.path.display()))?;
            let path = entry.path();
            if path.extension().is_none_or(|ext| ext != "pem") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let key = PrivateKey::from_pem(&text).map_err(|e| {
                format!("{}: {e}. Fix: remove the file, or replace it with a PKCS#8 private key", path.display())
            })?;
            let created = entry.metadata().and_then(|m| m.modified()).ok();
            keys.push(StoredKey { key, path, created });
        }
        keys.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.kid().cmp(b.kid())));
        Ok(keys)
    }

    /// The kid in `current`, if the file exists.
    pub fn current_kid(&self) -> Result<Option<String>, String> {
        let path = self.path.join(CURRENT);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|k| !k.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Generates a key of `alg` and writes it as `<kid>.pem` (mode 0600). Does not make it current.
    pub fn generate(&self, alg: JwtAlgorithm, rsa_bits: usize) -> Result<StoredKey, String> {
        if !alg.is_asymmetric() {
            return Err("JWT_ALGORITHM=HS256 signs with JWT_SECRET_KEY and has no key files. Fix: set JWT_ALGORITHM=EdDSA or RS256 to use keys (`fraise-auth secret` prints a new HS256 secret)".into());
        }
        self.create_dir()?;
        let (key, pem) = PrivateKey::generate(alg, rsa_bits)?;
        let path = self.path.join(format!("{}.pem", key.kid()));
        write_private(&path, &pem).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let created = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Ok(StoredKey { key, path, created })
    }

    /// Makes `kid` the signing key (atomically: a temporary file renamed over `current`).
    pub fn set_current(&self, kid: &str) -> Result<(), String> {
        let tmp = self.path.join(format!(".{CURRENT}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        write_private(&tmp, &format!("{kid}\n")).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, self.path.join(CURRENT))
            .map_err(|e| format!("cannot replace {}: {e}", self.path.join(CURRENT).display()))
    }

    /// Deletes the key `kid`; refuses the current one.
    pub fn retire(&self, kid: &str) -> Result<StoredKey, String> {
        if self.current_kid()?.as_deref() == Some(kid) {
            return Err(format!(
                "{kid} is the current signing key and cannot be retired. Fix: `fraise-auth keys rotate` first, wait until the tokens it signed have expired (ACCESS_TOKEN_TTL_MINUTES), then retire it"
            ));
        }
        let key = self.keys()?.into_iter().find(|k| k.kid() == kid).ok_or_else(|| {
            format!("no key {kid} in {}. `fraise-auth keys list` shows the kids", self.path.display())
        })?;
        std::fs::remove_file(&key.path).map_err(|e| format!("cannot delete {}: {e}", key.path.display()))?;
        Ok(key)
    }

    fn create_dir(&self) -> Result<(), String> {
        std::fs::create_dir_all(&self.path)
            .map_err(|e| format!("cannot create the key directory {}: {e}", self.path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("cannot restrict {} to its owner: {e}", self.path.display()))?;
        }
        Ok(())
    }

    /// The ring for `alg`: the current key signs, every key of `alg` verifies. `Ok(None)` when
    /// the directory holds no key at all (the caller decides whether to generate one).
    pub fn ring(&self, alg: JwtAlgorithm) -> Result<Option<KeyRing>, String> {
        let keys = self.keys()?;
        if keys.is_empty() {
            return Ok(None);
        }
        let dir = self.path.display();
        let current = self.current_kid()?.ok_or_else(|| {
            format!("{dir} holds keys but no `{CURRENT}` file naming the signing key. Fix: `fraise-auth keys rotate --to KID` (kids: `fraise-auth keys list`)")
        })?;
        let signing = keys.iter().find(|k| k.kid() == current).ok_or_else(|| {
            format!("{dir}/{CURRENT} names {current}, which is not a key in {dir}. Fix: `fraise-auth keys rotate` (or `keys rotate --to KID`)")
        })?;
        if signing.key.alg() != alg {
            return Err(format!(
                "the current key {current} is {} but JWT_ALGORITHM={alg}. Fix: `fraise-auth keys rotate` to make a new {alg} key current, or set JWT_ALGORITHM={}",
                signing.key.alg(),
                signing.key.alg()
            ));
        }
        let others: Vec<PrivateKey> = keys
            .iter()
            .filter(|k| k.kid() != current)
            .filter(|k| {
                let same = k.key.alg() == alg;
                if !same {
                    tracing::warn!(kid = k.kid(), alg = %k.key.alg(), "key of another algorithm ignored (JWT_ALGORITHM={alg})");
                }
                same
            })
            .map(|k| k.key.clone())
            .collect();
        KeyRing::asymmetric(&signing.key, &others).map(Some)
    }
}

/// Whether [`access_keys`] may create the first key when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstKey {
    /// `serve` in development: generate it (like the JWT secret), with a warning.
    GenerateInDevelopment,
    /// Read-only commands (`token verify`): never write.
    Never,
}

/// The access-token key ring of `cfg`. HS256: `secret` signs, `JWT_PREVIOUS_SECRET_KEYS` verify.
/// EdDSA/RS256: the key directory; with no key there, development generates one and production
/// refuses with the command to run.
pub fn access_keys(cfg: &Config, secret: &[u8], first: FirstKey) -> anyhow::Result<KeyRing> {
    let alg = cfg.jwt_algorithm;
    if !alg.is_asymmetric() {
        let previous: Vec<&[u8]> = cfg.jwt_previous_secrets.iter().map(|s| s.expose_secret().as_bytes()).collect();
        return KeyRing::hs256(secret, &previous).map_err(anyhow::Error::msg);
    }
    let dir = KeyDir::new(&cfg.jwt_key_dir);
    if let Some(ring) = dir.ring(alg).map_err(anyhow::Error::msg)? {
        return Ok(ring);
    }
    if cfg.production || first == FirstKey::Never {
        anyhow::bail!(
            "JWT_ALGORITHM={alg} but there is no key in {}. Fix: run `fraise-auth keys generate` (with the same JWT_KEY_DIR), or set JWT_KEY_DIR to the directory holding your keys",
            dir.path().display()
        );
    }
    let key = dir.generate(alg, cfg.jwt_rsa_bits).map_err(anyhow::Error::msg)?;
    dir.set_current(key.kid()).map_err(anyhow::Error::msg)?;
    tracing::warn!(
        path = %key.path.display(),
        kid = key.kid(),
        "JWT_ALGORITHM={alg} and no key yet: generated one (mode 0600). For production, create keys with `fraise-auth keys generate` and keep JWT_KEY_DIR the same on every node"
    );
    dir.ring(alg)
        .map_err(anyhow::Error::msg)?
        .ok_or_else(|| anyhow::anyhow!("the key just generated in {} cannot be read back", dir.path().display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_rotate_and_retire_keep_one_signing_key() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = KeyDir::new(tmp.path().join("keys"));
        assert!(dir.ring(JwtAlgorithm::EdDsa).unwrap_or_else(|e| panic!("{e}")).is_none());
        let first = dir.generate(JwtAlgorithm::EdDsa, 2048).unwrap_or_else(|e| panic!("{e}"));
        let err = dir.ring(JwtAlgorithm::EdDsa).err().unwrap_or_default();
        assert!(err.contains("no `current` file"), "{err}");
        dir.set_current(first.kid()).unwrap_or_else(|e| panic!("{e}"));
        let second = dir.generate(JwtAlgorithm::EdDsa, 2048).unwrap_or_else(|e| panic!("{e}"));
        dir.set_current(second.kid()).unwrap_or_else(|e| panic!("{e}"));
        let ring = dir.ring(JwtAlgorithm::EdDsa).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("none"));
        assert_eq!(ring.signing_kid(), second.kid());
        assert_eq!(ring.verifying_kids().count(), 2);
        assert!(dir.retire(second.kid()).is_err(), "the current key stays");
        dir.retire(first.kid()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dir.keys().map(|k| k.len()).unwrap_or(0), 1);
        let err = dir.ring(JwtAlgorithm::Rs256).err().unwrap_or_default();
        assert!(err.contains("is EdDSA but JWT_ALGORITHM=RS256"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            assert_eq!(mode(&second.path), 0o600);
            assert_eq!(mode(dir.path()), 0o700);
        }
    }
}
