//! The password policy: one definition of each character class, used by register, reset and
//! change alike.
use serde::Deserialize;

/// Argon2 accepts longer input, but nobody types more than this; the cap also bounds hashing work.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The rules a new password must meet. Defaults are the guide's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PasswordPolicy {
    /// Minimum length, in characters (not bytes).
    pub min_length: usize,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_digit: bool,
    /// "Special" means: any character that is neither a letter nor a digit (Unicode classes).
    pub require_special: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 8,
            require_uppercase: true,
            require_lowercase: true,
            require_digit: true,
            require_special: true,
        }
    }
}

impl PasswordPolicy {
    /// Returns the list of unmet requirements, human-readable; empty when the password passes.
    pub fn violations(&self, password: &str) -> Vec<String> {
        let mut out = Vec::new();
        if password.chars().count() < self.min_length {
            out.push(format!("at least {} characters", self.min_length));
        }
        if password.len() > MAX_PASSWORD_BYTES {
            out.push(format!("at most {MAX_PASSWORD_BYTES} bytes"));
        }
        if self.require_uppercase && !password.chars().any(char::is_uppercase) {
            out.push("an uppercase letter".to_owned());
        }
        if self.require_lowercase && !password.chars().any(char::is_lowercase) {
            out.push("a lowercase letter".to_owned());
        }
        if self.require_digit && !password.chars().any(char::is_numeric) {
            out.push("a digit".to_owned());
        }
        if self.require_special && !password.chars().any(|c| !c.is_alphanumeric()) {
            out.push("a character that is not a letter or digit".to_owned());
        }
        out
    }

    pub fn is_satisfied_by(&self, password: &str) -> bool {
        self.violations(password).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_examples_pass_and_fail_as_documented() {
        let p = PasswordPolicy::default();
        for (pw, ok) in [
            ("weak", false),
            ("WeakPassword", false),
            ("weakpass123", false),
            ("WEAKPASS123!", false),
            ("WeakPass123!", true),
            ("TestPass123!", true),
            ("Pässwörd-ünïcode-9Ü", true),
            ("Sp ace123A", true),
        ] {
            assert_eq!(p.is_satisfied_by(pw), ok, "{pw}");
        }
    }

    #[test]
    fn length_counts_characters_and_bytes_are_capped() {
        let p = PasswordPolicy::default();
        assert!(!p.is_satisfied_by("Ää1!Ää1"), "7 characters is too short even at 11 bytes");
        let long = format!("Aa1!{}", "x".repeat(MAX_PASSWORD_BYTES));
        assert_eq!(p.violations(&long), vec![format!("at most {MAX_PASSWORD_BYTES} bytes")]);
    }

    #[test]
    fn each_requirement_can_be_switched_off() {
        let p = PasswordPolicy {
            min_length: 4,
            require_uppercase: false,
            require_lowercase: false,
            require_digit: false,
            require_special: false,
        };
        assert!(p.is_satisfied_by("abcd"));
    }
}
