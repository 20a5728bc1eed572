//! One file per route group.
pub mod auth;
pub mod health;
