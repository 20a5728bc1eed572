//! fraise-store: the storage backends of fraise-auth.
//!
//! Both implement the traits of `fraise_core::store` and own their SQL and migrations; no query
//! branches on the backend. The conformance suite in the root `tests/` runs every test against
//! both.
//!
//! | module | owns |
//! |---|---|
//! | [`sqlite`] | the embedded default: one file, WAL, foreign keys on |
//! | [`postgres`] | production: a pool, one schema per tenant, identifiers validated before use |
//! | `TenantAdmin` | create, migrate and drop tenants (a schema each, or a file each) |
//! | `errors` | the single mapping from `sqlx::Error` to `StoreError` |
#![forbid(unsafe_code)]

mod errors;
mod one_time;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use fraise_core::StoreError;
use fraise_core::tenant::{TenantDirectory, TenantName};

pub use postgres::{PgPoolSettings, PgStore, PgTenants, SchemaName};
pub use sqlite::{SqliteStore, SqliteTenants};

/// One migration as `migrate status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

/// Every migration the binary knows, marked applied or pending against `applied` versions.
fn migration_states(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> Vec<MigrationState> {
    migrator
        .iter()
        .map(|m| MigrationState {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.contains(&m.version),
        })
        .collect()
}

/// Why a tenant operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant '{0}' already exists")]
    Exists(TenantName),
    #[error("no tenant '{0}'")]
    NotFound(TenantName),
    /// The name is valid but cannot be used here (it would reuse data that is not a tenant's).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creating, migrating and dropping tenants (the CLI's `tenant` and `migrate --all-tenants`).
#[async_trait]
pub trait TenantAdmin: TenantDirectory {
    /// Creates the tenant's storage and applies every migration; the tenant becomes visible to
    /// the service only once that succeeded.
    async fn create(&self, name: &TenantName) -> Result<MigrationReport, TenantError>;
    /// Applies pending migrations to an existing tenant (idempotent).
    async fn migrate_tenant(&self, name: &TenantName) -> Result<MigrationReport, TenantError>;
    /// Deletes the tenant and all its data.
    async fn drop_tenant(&self, name: &TenantName) -> Result<(), TenantError>;
}

/// What a `migrate` run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    /// Migrations applied by this run.
    pub applied: usize,
    /// Migrations this binary knows.
    pub known: usize,
}
