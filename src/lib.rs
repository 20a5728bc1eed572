//! fraise-auth: the binary's library half. Configuration ([`config`]) and assembly ([`boot`]) of
//! the store, the service and the router; `main.rs` only parses the command line and calls these.
//!
//! The crates underneath:
//! - `fraise-core`: the domain (passwords, tokens, sessions, the auth service); no HTTP, no SQL.
//! - `fraise-store`: the SQLite and PostgreSQL backends and their migrations.
//! - `fraise-http`: the axum router, extractors and error envelope.
#![forbid(unsafe_code)]

pub mod admin_cmd;
pub mod bench_cmd;
pub mod boot;
pub mod config;
pub mod doctor;
pub mod keys;
pub mod out;
pub mod smoke;
pub mod tenant_cmd;
pub mod token_cmd;
