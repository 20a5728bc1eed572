//! The `Email` newtype: parse, don't validate.
//!
//! An `Email` is trimmed, lower-cased and syntactically valid by construction; every other part
//! of the system can rely on that and compare emails with `==`.
use std::fmt;

use crate::error::AuthError;

/// RFC 5321 caps a path at 256 octets including the brackets: 254 for the address itself.
const MAX_LEN: usize = 254;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses what a user typed. The syntax check is `email_address`'s (RFC 5322), narrowed to
    /// what mail servers deliver in practice: no quoted local parts, no IP-literal domains, and a
    /// domain with at least one dot.
    pub fn parse(raw: &str) -> Result<Self, AuthError> {
        let invalid = || AuthError::validation("email", "Invalid email address");
        let email = raw.trim().to_lowercase();
        if email.is_empty() || email.len() > MAX_LEN {
            return Err(invalid());
        }
        let parsed = email_address::EmailAddress::parse_with_options(
            &email,
            email_address::Options::default().without_display_text().without_domain_literal(),
        )
        .map_err(|_| invalid())?;
        let (local, domain) = (parsed.local_part(), parsed.domain());
        let plain = |c: char| !c.is_control() && !c.is_whitespace();
        if local.starts_with('"')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || !email.chars().all(plain)
        {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_trims_and_lowercases() {
        let e = Email::parse("  Alice.Smith+tag@Example.COM ").map(Email::into_string);
        assert_eq!(e.ok().as_deref(), Some("alice.smith+tag@example.com"));
    }

    #[test]
    fn parse_accepts_unicode_domains_and_locals() {
        assert!(Email::parse("jürgen@bücher.de").is_ok());
    }

    #[test]
    fn parse_rejects_what_cannot_be_delivered() {
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a@@example.com",
            "a b@example.com",
            "\"quoted\"@example.com",
            "a@[127.0.0.1]",
            "Name <a@example.com>",
            "a@example.com.",
            "a\u{0}@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }
}
