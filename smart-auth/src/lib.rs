//! SMART on FHIR authorization (App Launch 2.x and Backend Services) as protocol logic:
//! scopes (what each means and permits), the /authorize and /token rules, PKCE, JWTs (the server's
//! RS256 keys and JWKS, clients' RS384/ES384 assertions), the practice's roles and how
//! they bound user scopes, passwords and TOTP, and the discovery documents.
//! It knows nothing of storage or of an HTTP framework; the server wires it to both.
//!
//! Specification: https://hl7.org/fhir/smart-app-launch/STU2.2/ (digest in
//! `../shared/specs/interop-digest.md`, part 1).

pub mod assertion;
pub mod authorize;
pub mod discovery;
pub mod jwt;
pub mod password;
pub mod pkce;
pub mod role;
pub mod scope;
pub mod token;
pub mod totp;
