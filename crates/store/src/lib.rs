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
//! | `errors` | the single mapping from `sqlx::Error` to `StoreError` |
#![forbid(unsafe_code)]

mod errors;
mod one_time;
pub mod postgres;
pub mod sqlite;

pub use postgres::{PgPoolSettings, PgStore, SchemaName};
pub use sqlite::SqliteStore;

/// What a `migrate` run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    /// Migrations applied by this run.
    pub applied: usize,
    /// Migrations this binary knows.
    pub known: usize,
}
