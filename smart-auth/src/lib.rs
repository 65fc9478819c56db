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
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
