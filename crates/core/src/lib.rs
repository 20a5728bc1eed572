//! fraise-core: the domain of fraise-auth.
//!
//! Everything that decides *whether* someone is authenticated lives here, and nothing that
//! decides *how bytes travel*: this crate depends on neither axum nor sqlx, so the compiler keeps
//! HTTP and SQL out of the rules.
//!
//! | module | owns |
//! |---|---|
//! | [`clock`] | the injected notion of "now" (tests move time without sleeping) |
//! | [`error`] | [`AuthError`], the one error the service returns, and [`StoreError`] |
//! | [`email`] | the [`Email`] newtype: trimmed, lower-cased, validated once |
//! | [`password`] | the password policy, Argon2id/bcrypt hashing and the bounded hashing pool |
//! | [`tokens`] | JWT access tokens and HMAC-authenticated opaque refresh tokens |
//! | [`mfa`] | TOTP, recovery codes, sealed TOTP secrets and the login's `mfa_token` |
//! | [`model`] | users, sessions and audit events as the service sees them |
//! | [`store`] | the narrow async storage traits the backends implement |
//! | [`tenant`] | tenant names, the tenant directory trait and the per-tenant services |
//! | [`service`] | [`AuthService`]: register, login, refresh, logout, authenticate |
#![forbid(unsafe_code)]

pub mod clock;
pub mod email;
pub mod error;
pub mod mail;
pub mod mfa;
pub mod model;
pub mod password;
pub mod service;
pub mod store;
pub mod tenant;
pub mod tokens;

pub use clock::{Clock, ManualClock, SystemClock};
pub use email::Email;
pub use error::{AuthError, StoreError};
pub use service::{AuthService, LockoutPolicy, Settings, TheftScope};
