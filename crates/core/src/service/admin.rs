//! Administration (the `user` subcommand): accounts created, found, listed and given roles by an
//! operator rather than by their owner. Same rules as self-service: the password policy, the
//! hashing pool, the audit trail.
use serde_json::json;

use super::{AuthService, ClientInfo};
use crate::email::Email;
use crate::error::AuthError;
use crate::model::User;

/// Longest role name, in bytes.
const MAX_ROLE_BYTES: usize = 64;
/// Most roles one user may hold.
const MAX_ROLES: usize = 64;

/// Parses a comma-separated role list: trimmed, de-duplicated, each of `A-Z a-z 0-9 _ - . :`.
pub fn parse_roles(text: &str) -> Result<Vec<String>, AuthError> {
    let mut roles: Vec<String> = Vec::new();
    for role in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let valid = role.len() <= MAX_ROLE_BYTES
            && role.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !valid {
            return Err(AuthError::validation(
                "roles",
                format!("role {role:?}: use up to {MAX_ROLE_BYTES} characters of A-Z, a-z, 0-9, _ - . :"),
            ));
        }
        if !roles.iter().any(|r| r == role) {
            roles.push(role.to_owned());
        }
    }
    if roles.len() > MAX_ROLES {
        return Err(AuthError::validation("roles", format!("at most {MAX_ROLES} roles")));
    }
    Ok(roles)
}

impl AuthService {
    /// The user with `email`.
    pub async fn find_user(&self, email: &str) -> Result<Option<User>, AuthError> {
        let email = Email::parse(email)?;
        Ok(self.store.user_by_email(&email).await?)
    }

    /// Creates an account without a session (nobody is logged in by it).
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
        roles: &[String],
        verified: bool,
    ) -> Result<User, AuthError> {
        let mut user = self.insert_new_user(email, password, name).await?;
        let now = self.clock.now();
        if !roles.is_empty() {
            user = self.store.set_roles(user.id, roles, now).await?.unwrap_or(user);
        }
        if verified {
            user = self.store.set_email_verified(user.id, now).await?.unwrap_or(user);
        }
        self.audit("register", Some(user.id), None, &ClientInfo::default(), json!({"by": "admin"})).await;
        Ok(user)
    }

    /// Replaces the roles of the user with `email`; access tokens issued before keep their old
    /// roles until they expire (ACCESS_TOKEN_TTL_MINUTES).
    pub async fn set_roles(&self, email: &str, roles: &[String]) -> Result<Option<User>, AuthError> {
        let Some(user) = self.find_user(email).await? else {
            return Ok(None);
        };
        let updated = self.store.set_roles(user.id, roles, self.clock.now()).await?;
        if updated.is_some() {
            let details = json!({"roles": roles, "previous": user.roles});
            self.audit("roles_changed", Some(user.id), None, &ClientInfo::default(), details).await;
        }
        Ok(updated)
    }

    /// Users ordered by email.
    pub async fn list_users(&self, limit: u32, offset: u32) -> Result<Vec<User>, AuthError> {
        Ok(self.store.list_users(limit, offset).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_trimmed_deduplicated_and_checked() {
        assert_eq!(parse_roles(" admin, editor ,admin,,").ok(), Some(vec!["admin".to_owned(), "editor".to_owned()]));
        assert_eq!(parse_roles("").ok(), Some(vec![]));
        assert!(parse_roles("ad min").is_err());
        assert!(parse_roles("x'; drop").is_err());
        assert!(parse_roles(&"r".repeat(65)).is_err());
    }
}
