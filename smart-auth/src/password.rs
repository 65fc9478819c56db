//! Passwords: stored as argon2id PHC strings (salted, with their parameters), checked
//! against a policy when set: long enough, not the username, not one of the 10,000 most
//! common (NIST SP 800-63B 5.1.1.2; the list is `wordlists/common-passwords.txt`).

use std::collections::HashSet;
use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// The shortest password accepted.
pub const MIN_LENGTH: usize = 10;
/// The longest (argon2 takes any length; a bound keeps one login from costing much).
pub const MAX_LENGTH: usize = 256;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../wordlists/common-passwords.txt")
        .lines()
        .filter(|line| !line.is_empty())
        .collect()
});

/// Why a new password is refused; the text is for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub &'static str);

/// Checks a new password for `username` against the policy.
pub fn check_policy(password: &str, username: &str) -> Result<(), PolicyError> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(PolicyError(
            "the password must be at least 10 characters long",
        ));
    }
    if length > MAX_LENGTH {
        return Err(PolicyError(
            "the password must be at most 256 characters long",
        ));
    }
    let lower = password.to_lowercase();
    let user = username.to_lowercase();
    if !user.is_empty() && lower.contains(&user) {
        return Err(PolicyError("the password must not contain the username"));
    }
    if COMMON.contains(lower.as_str()) {
        return Err(PolicyError(
            "the password is one of the most common passwords",
        ));
    }
    Ok(())
}

/// The argon2id PHC string of `password`, with a new random salt.
pub fn hash(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| format!("cannot hash the password: {error}"))
}

/// Whether `password` is the one `stored` (a PHC string) was made from. A stored value
/// that does not parse matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("correct horse battery", "not a phc string"));
        // A new salt each time.
        assert_ne!(stored, hash("correct horse battery").unwrap());
    }

    #[test]
    fn the_policy_refuses_short_common_and_username_passwords() {
        assert!(check_policy("short", "alice").is_err());
        assert!(check_policy("alice-in-chains-99", "Alice").is_err());
        assert!(check_policy("1234567890", "bob").is_err());
        assert!(check_policy("Qwertyuiop", "bob").is_err());
        assert!(check_policy(&"x".repeat(257), "bob").is_err());
        assert_eq!(check_policy("violet staple marmot", "bob"), Ok(()));
        assert_eq!(COMMON.len(), 10_000);
    }
}
