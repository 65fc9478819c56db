//! How a client says who it is at /token (RFC 6749 2.3.1 and RFC 7523 2.2): HTTP Basic
//! (`client_secret_basic`), the form's `client_id` and `client_secret`
//! (`client_secret_post`), a signed assertion (`private_key_jwt`), or, for a public
//! client, its `client_id` alone. Exactly one way per request; more is an error.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The assertion type of `private_key_jwt`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What a request presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// `client_secret_basic` or `client_secret_post`.
    Secret {
        client_id: String,
        secret: String,
        /// Whether it came in the Authorization header (then a failure is answered 401
        /// with `WWW-Authenticate: Basic`).
        basic: bool,
    },
    /// `private_key_jwt`: the assertion, and the client it claims (`client_id`, if sent).
    Assertion {
        assertion: String,
        client_id: Option<String>,
    },
    /// A public client naming itself.
    Public { client_id: String },
}

/// Reads how the client authenticates from the `Authorization` header and the form.
pub fn presented(
    authorization: Option<&str>,
    form: &[(String, String)],
) -> Result<Presented, String> {
    let field = |name: &str| -> Result<Option<&str>, String> {
        let mut values = form
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (value, None) => Ok(value),
            (Some(_), Some(_)) => Err(format!("{name} is given more than once")),
            (None, Some(_)) => Ok(None),
        }
    };
    let client_id = field("client_id")?;
    let secret = field("client_secret")?;
    let assertion = field("client_assertion")?;
    let assertion_type = field("client_assertion_type")?;
    let basic = authorization.map(basic_credentials).transpose()?;
    let ways = usize::from(basic.is_some())
        + usize::from(secret.is_some())
        + usize::from(assertion.is_some());
    if ways > 1 {
        return Err("use one way of client authentication, not several".into());
    }
    if let Some((id, secret)) = basic {
        if client_id.is_some_and(|given| given != id) {
            return Err("client_id differs from the Authorization header's".into());
        }
        return Ok(Presented::Secret {
            client_id: id,
            secret,
            basic: true,
        });
    }
    if let Some(assertion) = assertion {
        if assertion_type != Some(JWT_BEARER) {
            return Err(format!("client_assertion_type must be {JWT_BEARER}"));
        }
        return Ok(Presented::Assertion {
            assertion: assertion.to_owned(),
            client_id: client_id.map(str::to_owned),
        });
    }
    let client_id = client_id
        .filter(|id| !id.is_empty())
        .ok_or("the request names no client")?
        .to_owned();
    Ok(match secret {
        Some(secret) => Presented::Secret {
            client_id,
            secret: secret.to_owned(),
            basic: false,
        },
        None => Presented::Public { client_id },
    })
}

/// The client id and secret of `Basic base64(urlencode(id):urlencode(secret))`.
fn basic_credentials(header: &str) -> Result<(String, String), String> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
        .ok_or("the Authorization header is not Basic")?;
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or("the Basic credentials do not decode")?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or("the Basic credentials have no ':'")?;
    // RFC 6749 2.3.1: both parts are form-urlencoded before they are joined.
    let decode = |text: &str| -> String {
        form_urlencoded::parse(format!("x={text}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Ok((decode(id), decode(secret)))
}

/// Whether a presented secret is the registered one, in time that does not depend on
/// where they differ.
pub fn secret_matches(presented: &str, registered: &str) -> bool {
    crate::constant_time_eq(presented.as_bytes(), registered.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn basic_post_assertion_and_public() {
        let basic = format!("Basic {}", STANDARD.encode("my%20app:s%3Acret"));
        assert_eq!(
            presented(Some(&basic), &form(&[])).unwrap(),
            Presented::Secret {
                client_id: "my app".into(),
                secret: "s:cret".into(),
                basic: true
            }
        );
        assert_eq!(
            presented(None, &form(&[("client_id", "a"), ("client_secret", "s")])).unwrap(),
            Presented::Secret {
                client_id: "a".into(),
                secret: "s".into(),
                basic: false
            }
        );
        assert_eq!(
            presented(
                None,
                &form(&[
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", "x.y.z")
                ])
            )
            .unwrap(),
            Presented::Assertion {
                assertion: "x.y.z".into(),
                client_id: None
            }
        );
        assert_eq!(
            presented(None, &form(&[("client_id", "a")])).unwrap(),
            Presented::Public {
                client_id: "a".into()
            }
        );
    }

    #[test]
    fn ambiguous_or_malformed_authentication_is_refused() {
        let basic = format!("Basic {}", STANDARD.encode("a:s"));
        assert!(presented(Some(&basic), &form(&[("client_secret", "s")])).is_err());
        assert!(presented(Some(&basic), &form(&[("client_id", "b")])).is_err());
        assert!(presented(Some("Bearer x"), &form(&[])).is_err());
        assert!(presented(Some("Basic !!!"), &form(&[])).is_err());
        assert!(presented(None, &form(&[("client_assertion", "x.y.z")])).is_err());
        assert!(presented(None, &form(&[])).is_err());
        assert!(presented(None, &form(&[("client_id", "a"), ("client_id", "b")])).is_err());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(secret_matches("s3cret", "s3cret"));
        assert!(!secret_matches("s3cre", "s3cret"));
        assert!(!secret_matches("s3creT", "s3cret"));
    }
}
