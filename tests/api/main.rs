//! The conformance suite: every test runs against SQLite and PostgreSQL (see `both_backends!`),
//! each on a database of its own, in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod account;
mod attacks;
mod batching;
mod cache;
mod cli_ops;
mod cli_tenants;
mod cookies;
mod embedding;
mod errors;
mod flow;
mod hashing;
mod keys;
mod lockout;
mod logout;
mod maintenance;
mod metrics;
mod mfa;
mod model;
mod openapi;
mod outage;
mod protection;
mod races;
mod refresh;
mod sessions;
mod storage;
mod tenancy;
mod ui;
mod webauthn;
