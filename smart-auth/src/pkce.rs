//! PKCE (RFC 7636), as SMART 2.x requires it: the `S256` method only (`plain` and a
//! missing challenge are refused at /authorize), and the verifier checked at /token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Why a PKCE step was refused; the text is the `error_description` to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkceError(pub &'static str);

/// Checks the challenge an /authorize request carries: present, `S256`, and shaped as a
/// SHA-256 digest in base64url (43 characters).
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<(), PkceError> {
    let challenge = challenge
        .filter(|c| !c.is_empty())
        .ok_or(PkceError("code_challenge is required (PKCE)"))?;
    match method {
        Some("S256") => {}
        Some("plain") => {
            return Err(PkceError(
                "code_challenge_method plain is not allowed; use S256",
            ));
        }
        Some(_) => return Err(PkceError("code_challenge_method must be S256")),
        None => {
            return Err(PkceError(
                "code_challenge_method is required and must be S256",
            ));
        }
    }
    if challenge.len() != 43 || !challenge.bytes().all(is_base64url) {
        return Err(PkceError(
            "code_challenge is not a base64url SHA-256 digest",
        ));
    }
    Ok(())
}

/// Checks a /token request's verifier against the challenge of its code.
pub fn verify(verifier: Option<&str>, challenge: &str) -> Result<(), PkceError> {
    let verifier = verifier
        .filter(|v| !v.is_empty())
        .ok_or(PkceError("code_verifier is required"))?;
    // RFC 7636 4.1: 43 to 128 unreserved characters.
    if !(43..=128).contains(&verifier.len()) || !verifier.bytes().all(is_unreserved) {
        return Err(PkceError(
            "code_verifier must be 43 to 128 unreserved characters",
        ));
    }
    // A client that sends the challenge as the verifier did not do PKCE.
    if verifier == challenge {
        return Err(PkceError("code_verifier does not match the code_challenge"));
    }
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !crate::constant_time_eq(digest.as_bytes(), challenge.as_bytes()) {
        return Err(PkceError("code_verifier does not match the code_challenge"));
    }
    Ok(())
}

/// The S256 challenge of a verifier (for clients and tests).
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn the_rfc_example_verifies() {
        assert_eq!(challenge_of(VERIFIER), CHALLENGE);
        assert_eq!(check_challenge(Some(CHALLENGE), Some("S256")), Ok(()));
        assert_eq!(verify(Some(VERIFIER), CHALLENGE), Ok(()));
    }

    #[test]
    fn plain_missing_and_malformed_challenges_are_refused() {
        assert!(check_challenge(Some(CHALLENGE), Some("plain")).is_err());
        assert!(check_challenge(Some(CHALLENGE), None).is_err());
        assert!(check_challenge(None, Some("S256")).is_err());
        assert!(check_challenge(Some(""), Some("S256")).is_err());
        assert!(check_challenge(Some("short"), Some("S256")).is_err());
    }

    #[test]
    fn missing_blank_wrong_or_echoed_verifiers_are_refused() {
        assert!(verify(None, CHALLENGE).is_err());
        assert!(verify(Some(""), CHALLENGE).is_err());
        assert!(verify(Some(&"a".repeat(43)), CHALLENGE).is_err());
        assert!(verify(Some(CHALLENGE), CHALLENGE).is_err());
        assert!(verify(Some("too-short"), CHALLENGE).is_err());
        assert!(verify(Some(&format!("{VERIFIER} ")), CHALLENGE).is_err());
    }
}
