//! The TOTP second factor (RFC 6238): SHA-1, 6 digits, 30-second steps, one step of clock
//! skew either way, as authenticator apps expect. A code is accepted once: the caller keeps
//! the last step used and passes it back (RFC 6238 5.2).

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Seconds per step.
pub const STEP: u64 = 30;
const DIGITS: u8 = 6;

/// A new random secret of 160 bits (RFC 4226 4's recommendation).
pub fn new_secret() -> Result<Vec<u8>, String> {
    let mut secret = vec![0u8; 20];
    getrandom::fill(&mut secret).map_err(|error| format!("no randomness: {error}"))?;
    Ok(secret)
}

/// The `otpauth://` URI an authenticator app enrols from (shown as text and as a QR code).
pub fn enrolment_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let secret = Secret::from(secret.to_vec()).to_base32();
    format!(
        "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        encode(issuer),
        encode(account),
        encode(issuer)
    )
}

fn totp(secret: &[u8], digits: u8) -> Result<Totp, String> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(digits)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .build()
        .map_err(|error| format!("cannot use the TOTP secret: {error}"))
}

/// The code at `unix_seconds` (for enrolment checks and tests).
pub fn code_at(secret: &[u8], unix_seconds: u64) -> Result<String, String> {
    Ok(totp(secret, DIGITS)?.generate(unix_seconds).to_string())
}

/// The step `code` is valid for at `unix_seconds` (within one step of skew), if it is and
/// that step is later than `last_used` (a code is accepted once).
pub fn check(secret: &[u8], code: &str, unix_seconds: u64, last_used: Option<u64>) -> Option<u64> {
    let totp = totp(secret, DIGITS).ok()?;
    let origin = unix_seconds / STEP;
    (origin.saturating_sub(1)..=origin + 1)
        .filter(|step| last_used.is_none_or(|last| *step > last))
        .find(|step| totp.generate(step * STEP).to_string() == code.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, 8 digits.
    #[test]
    fn the_rfc_test_vectors() {
        let secret = b"12345678901234567890";
        let totp = totp(secret, 8).unwrap();
        for (time, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(totp.generate(time).to_string(), code, "{time}");
        }
    }

    #[test]
    fn a_code_is_accepted_once_within_a_step_of_skew() {
        let secret = new_secret().unwrap();
        let now = 1_700_000_000;
        let code = code_at(&secret, now).unwrap();
        let step = check(&secret, &code, now, None).unwrap();
        assert_eq!(step, now / STEP);
        // The next step still takes it (clock skew), the one after does not.
        assert!(check(&secret, &code, now + STEP, None).is_some());
        assert!(check(&secret, &code, now + 3 * STEP, None).is_none());
        // Used once: not again.
        assert!(check(&secret, &code, now, Some(step)).is_none());
        assert!(check(&secret, "000000x", now, None).is_none());
    }

    #[test]
    fn the_enrolment_uri_names_the_secret_and_issuer() {
        let uri = enrolment_uri(b"12345678901234567890", "Main Street Clinic", "alice");
        assert!(uri.starts_with(
            "otpauth://totp/Main+Street+Clinic:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        ));
        assert!(uri.contains("&period=30"));
    }
}
