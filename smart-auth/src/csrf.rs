//! CSRF tokens for the login, consent and patient-picker forms: the HMAC of the browser
//! session's id under a server secret. A form is accepted only with the token of the
//! session that posts it, so another site cannot post one on a user's behalf; nothing is
//! stored per form.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The token of `session` (put in a hidden field of every form).
pub fn token(secret: &[u8], session: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(secret, session))
}

/// Whether `presented` is the token of `session`. A missing or empty one never is.
pub fn verify(secret: &[u8], session: &str, presented: Option<&str>) -> bool {
    let Some(presented) = presented.filter(|p| !p.is_empty()) else {
        return false;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(presented) else {
        return false;
    };
    crate::constant_time_eq(&bytes, &mac(secret, session))
}

fn mac(secret: &[u8], session: &str) -> Vec<u8> {
    // HMAC takes a key of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return Vec::new();
    };
    mac.update(b"csrf:");
    mac.update(session.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_for_its_session_only() {
        let secret = b"a server secret of enough length";
        let good = token(secret, "session-1");
        assert!(verify(secret, "session-1", Some(&good)));
        assert!(!verify(secret, "session-2", Some(&good)));
        assert!(!verify(b"another secret", "session-1", Some(&good)));
        assert!(!verify(secret, "session-1", None));
        assert!(!verify(secret, "session-1", Some("")));
        assert!(!verify(secret, "session-1", Some("not base64!")));
    }
}
