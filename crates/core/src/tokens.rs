//! Tokens: short-lived JWT access tokens and opaque, rotating refresh tokens.
mod access;
mod refresh;

pub use access::{AccessClaims, AccessTokens, JwtSettings};
pub use refresh::{RefreshToken, RefreshTokens};
