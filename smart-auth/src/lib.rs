//! SMART on FHIR authorization (App Launch 2.x and Backend Services) as protocol logic:
//! - scopes (what each means and permits) and the practice's roles that bound them;
//! - the /authorize and /token rules, client authentication, redirects back to apps, PKCE;
//! - JWTs: the server's RS256 keys and JWKS, clients' RS384/ES384 assertions, and a
//!   bounded cache of verified tokens, and tokens of outside identity providers;
//! - passwords, TOTP, CSRF tokens for the pages, and the discovery documents.
//!
//! It knows nothing of storage or of an HTTP framework; the server wires it to both.
//!
//! Specification: https://hl7.org/fhir/smart-app-launch/STU2.2/ (digest in
//! `../shared/specs/interop-digest.md`, part 1).

pub mod assertion;
pub mod authorize;
pub mod cache;
pub mod client_auth;
pub mod csrf;
pub mod discovery;
pub mod external;
pub mod jwt;
pub mod password;
pub mod pkce;
pub mod redirect;
pub mod role;
pub mod scope;
pub mod token;
pub mod totp;

/// Compares without stopping at the first difference, so the time taken says nothing of
/// how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The SHA-256 of `text`, hex: how the server keeps client secrets, codes and refresh
/// tokens (its database never holds one that works).
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A new random token of 256 bits, URL-safe: codes, refresh tokens, secrets, launch ids.
pub fn random_token() -> Result<String, String> {
    random_text::<32>()
}

/// A new random id of 128 bits, URL-safe (22 characters): a token's `jti` and its grant's
/// id, which name things but open nothing, and ride in every request's token.
pub fn random_id() -> Result<String, String> {
    random_text::<16>()
}

fn random_text<const N: usize>() -> Result<String, String> {
    use base64::Engine;
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|error| format!("no randomness: {error}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
