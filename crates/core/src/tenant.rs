//! Tenants: a validated name, where a tenant's data lives, and the per-tenant services.
//!
//! Each tenant has its own store (a PostgreSQL schema or a SQLite file) and its own
//! [`AuthService`], which differs from the base service only in its store, the tenant its tokens
//! are bound to, and its emailed links. The hashing pool, keys, clock, mailer and the in-memory
//! per-client limits are shared: one CPU budget and one idea of "this client" for the process.
//!
//! [`Tenants`] resolves a name to its service. It keeps at most `max_open` tenants' services (and
//! so at most that many SQLite files open); a known tenant is re-checked against the directory
//! after [`RECHECK_AFTER`], so a tenant dropped on another node stops being served within that
//! time. Unknown names are not cached: a client naming random tenants costs one cheap lookup each,
//! under the rate limits like any other request.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::{AuthError, StoreError};
use crate::service::AuthService;
use crate::store::Store;

/// How long a resolved tenant is served from memory before its existence is checked again.
pub const RECHECK_AFTER: Duration = Duration::from_secs(30);

/// Names no tenant may take: they collide with PostgreSQL's own schemas or with names that read
/// as parts of the service.
const RESERVED: &[&str] = &["public", "admin", "api", "www", "system", "information_schema"];

/// A tenant name: `^[a-z][a-z0-9_]{0,30}[a-z0-9]$` (2 to 32 characters), not reserved, not
/// `pg_*`. Safe as a PostgreSQL identifier, a file name and a DNS label's worth of text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(name: &str) -> Result<Self, AuthError> {
        let bytes = name.as_bytes();
        let shape_ok = (2..=32).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
            && bytes.last().is_some_and(|b| *b != b'_');
        if !shape_ok {
            return Err(AuthError::Validation {
                field: Some("tenant"),
                message: "Tenant names are 2 to 32 characters of a-z, 0-9 and _, starting with a letter and not \
                          ending with _"
                    .into(),
            });
        }
        if RESERVED.contains(&name) || name.starts_with("pg_") {
            return Err(AuthError::Validation {
                field: Some("tenant"),
                message: format!("'{name}' is a reserved name"),
            });
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where tenants' data lives: implemented by each storage backend.
#[async_trait]
pub trait TenantDirectory: Send + Sync + std::fmt::Debug {
    /// The store of `name`, or `None` when there is no such tenant.
    async fn open(&self, name: &TenantName) -> Result<Option<Arc<dyn Store>>, StoreError>;
    /// Every tenant, sorted by name.
    async fn list(&self) -> Result<Vec<TenantName>, StoreError>;
    /// A cheap check, made on every use of an open tenant, that it was not dropped meanwhile.
    /// Backends where that costs a query answer `true` and rely on [`RECHECK_AFTER`].
    fn still_there(&self, _name: &TenantName) -> bool {
        true
    }
}

struct Open {
    service: AuthService,
    checked: Instant,
    used: Instant,
}

/// Tenant name → that tenant's [`AuthService`], with a bounded cache.
pub struct Tenants {
    base: AuthService,
    directory: Arc<dyn TenantDirectory>,
    max_open: usize,
    open: Mutex<HashMap<TenantName, Open>>,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants")
            .field("directory", &self.directory)
            .field("max_open", &self.max_open)
            .finish_non_exhaustive()
    }
}

impl Tenants {
    /// `base` supplies everything a tenant's service shares; `max_open` (at least 1) bounds the
    /// tenants held open at once.
    pub fn new(base: AuthService, directory: Arc<dyn TenantDirectory>, max_open: usize) -> Self {
        Self { base, directory, max_open: max_open.max(1), open: Mutex::new(HashMap::new()) }
    }

    pub fn directory(&self) -> &Arc<dyn TenantDirectory> {
        &self.directory
    }

    /// How many tenants are held open now (never more than `max_open`).
    pub fn open_count(&self) -> usize {
        self.open.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// The service of `name`: 404 TENANT_NOT_FOUND when the directory does not know it.
    pub async fn service(&self, name: &TenantName) -> Result<AuthService, AuthError> {
        let now = Instant::now();
        if let Ok(mut open) = self.open.lock()
            && let Some(entry) = open.get_mut(name)
            && now.duration_since(entry.checked) < RECHECK_AFTER
        {
            if !self.directory.still_there(name) {
                open.remove(name);
                return Err(AuthError::TenantNotFound);
            }
            entry.used = now;
            return Ok(entry.service.clone());
        }
        let store = self.directory.open(name).await.map_err(AuthError::from)?;
        let Some(store) = store else {
            if let Ok(mut open) = self.open.lock() {
                open.remove(name);
            }
            return Err(AuthError::TenantNotFound);
        };
        let service = self.base.for_tenant(name, store);
        if let Ok(mut open) = self.open.lock() {
            if !open.contains_key(name) && open.len() >= self.max_open {
                // Least recently used goes; its store closes once in-flight requests finish.
                if let Some(oldest) = open.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) {
                    open.remove(&oldest);
                }
            }
            open.insert(name.clone(), Open { service: service.clone(), checked: now, used: now });
        }
        Ok(service)
    }

    /// Runs `f` on every tenant's service in turn (cleanup, for instance), without holding them
    /// all open. Returns the tenants for which `f` or opening failed, with why.
    pub async fn for_each<F, Fut>(&self, mut f: F) -> Result<Vec<(TenantName, AuthError)>, AuthError>
    where
        F: FnMut(AuthService) -> Fut,
        Fut: std::future::Future<Output = Result<(), AuthError>>,
    {
        let mut failed = Vec::new();
        for name in self.directory.list().await.map_err(AuthError::from)? {
            let outcome = match self.directory.open(&name).await {
                Ok(Some(store)) => f(self.base.for_tenant(&name, store)).await,
                Ok(None) => continue, // dropped meanwhile
                Err(e) => Err(AuthError::from(e)),
            };
            if let Err(e) = outcome {
                failed.push((name, e));
            }
        }
        Ok(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in ["ab", "acme", "tenant_1", "a1", "x2345678901234567890123456789012"] {
            assert!(TenantName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "1abc",
            "_abc",
            "abc_",
            "Acme",
            "ac-me",
            "a.b",
            "..",
            "a'b",
            "a;b",
            "a b",
            "caf\u{e9}",
            "x23456789012345678901234567890123",
            "public",
            "admin",
            "api",
            "www",
            "system",
            "information_schema",
            "pg_catalog",
            "pg_x",
        ] {
            assert!(TenantName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(TenantName::parse(&"a".repeat(200)).is_err());
    }
}
