//! Tokens: short-lived JWT access tokens and opaque, rotating refresh tokens.
mod access;
pub mod keys;
mod refresh;

pub use access::{AccessClaims, AccessTokens, JwtSettings};
pub use keys::{JwtAlgorithm, KeyRing, PrivateKey};
pub use refresh::{RefreshToken, RefreshTokens};
