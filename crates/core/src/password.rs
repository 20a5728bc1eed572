//! Passwords: the policy a new password must meet, how a password is hashed and verified, and the
//! bounded pool that keeps hashing off the async runtime.
mod hasher;
mod policy;
mod pool;

pub use hasher::{Argon2Params, PasswordHasher, Verification};
pub use policy::{MAX_PASSWORD_BYTES, PasswordPolicy};
pub use pool::{HashPool, PoolBusy};
