//! One file per route group.
pub mod account;
pub mod auth;
pub mod health;
pub mod jwks;
pub mod mfa;
pub mod sessions;
pub mod webauthn;
