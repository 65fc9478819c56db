//! The claims of a client assertion (`private_key_jwt`, RFC 7523 section 3, as SMART
//! Backend Services and asymmetric client authentication profile it): checked after the
//! signature, on the decoded header and claims. Every failure is `invalid_client`.

use serde_json::Value;

/// The algorithms a client may sign its assertions with.
pub const ALGORITHMS: &[&str] = &["RS384", "ES384"];

/// How far ahead an assertion may expire, in seconds (SMART: at most five minutes).
pub const MAX_LIFETIME: i64 = 300;

/// What the server knows when it checks an assertion.
pub struct Expected<'a> {
    /// The client the request names (`client_id`, or the assertion's own `iss`).
    pub client_id: &'a str,
    /// The token endpoint's URL: the assertion's `aud`.
    pub token_url: &'a str,
    /// The client's registered JWKS URL, if any (a `jku` header must equal it).
    pub jwks_url: Option<&'a str>,
    /// Now, in seconds since the epoch.
    pub now: i64,
}

/// What a good assertion identifies: the key to verify it with, and its replay key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub alg: String,
    pub kid: String,
    pub jti: String,
    /// Until when the `jti` must be remembered (its `exp`).
    pub expires: i64,
}

/// Why an assertion was refused (the `error_description` of an `invalid_client`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionError(pub String);

fn refuse(reason: impl Into<String>) -> AssertionError {
    AssertionError(reason.into())
}

/// Checks the header: a supported `alg` (never `none`, never an HMAC one), a `kid`, `typ`
/// JWT when given, and a `jku` only when it is the registered JWKS URL.
pub fn check_header(
    header: &Value,
    expected: &Expected<'_>,
) -> Result<(String, String), AssertionError> {
    let alg = header["alg"].as_str().unwrap_or_default();
    if !ALGORITHMS.contains(&alg) {
        return Err(refuse(format!(
            "alg '{alg}' is not accepted; use RS384 or ES384"
        )));
    }
    let kid = header["kid"]
        .as_str()
        .filter(|kid| !kid.is_empty())
        .ok_or_else(|| refuse("the assertion's header names no kid"))?;
    if let Some(typ) = header.get("typ").and_then(Value::as_str)
        && !typ.eq_ignore_ascii_case("JWT")
    {
        return Err(refuse(format!("typ '{typ}' is not JWT")));
    }
    if let Some(jku) = header.get("jku").and_then(Value::as_str)
        && Some(jku) != expected.jwks_url
    {
        return Err(refuse("jku is not the client's registered JWKS URL"));
    }
    Ok((alg.to_owned(), kid.to_owned()))
}

/// Checks the claims: `iss` = `sub` = the client, `aud` the token URL, not expired and
/// expiring at most five minutes ahead, not used before its `nbf`, with a `jti`. The
/// caller refuses a `jti` it has seen for this client before [`Checked::expires`].
pub fn check_claims(
    claims: &Value,
    expected: &Expected<'_>,
) -> Result<(String, i64), AssertionError> {
    let iss = claims["iss"].as_str().unwrap_or_default();
    let sub = claims["sub"].as_str().unwrap_or_default();
    if iss != expected.client_id || sub != expected.client_id {
        return Err(refuse("iss and sub must both be the client_id"));
    }
    let aud_ok = match &claims["aud"] {
        Value::String(aud) => aud == expected.token_url,
        Value::Array(auds) => auds.iter().any(|a| a.as_str() == Some(expected.token_url)),
        _ => false,
    };
    if !aud_ok {
        return Err(refuse("aud must be the token endpoint's URL"));
    }
    let exp = claims["exp"]
        .as_i64()
        .ok_or_else(|| refuse("the assertion has no exp"))?;
    if exp <= expected.now {
        return Err(refuse("the assertion has expired"));
    }
    if exp > expected.now + MAX_LIFETIME {
        return Err(refuse(
            "the assertion's exp is more than five minutes ahead",
        ));
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64)
        && nbf > expected.now
    {
        return Err(refuse("the assertion is not valid yet (nbf)"));
    }
    let jti = claims["jti"]
        .as_str()
        .filter(|jti| !jti.is_empty())
        .ok_or_else(|| refuse("the assertion has no jti"))?;
    Ok((jti.to_owned(), exp))
}

/// Both checks: what the caller needs to pick the key and to refuse a replay.
pub fn check(
    header: &Value,
    claims: &Value,
    expected: &Expected<'_>,
) -> Result<Checked, AssertionError> {
    let (alg, kid) = check_header(header, expected)?;
    let (jti, expires) = check_claims(claims, expected)?;
    Ok(Checked {
        alg,
        kid,
        jti,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn expected() -> Expected<'static> {
        Expected {
            client_id: "backend-1",
            token_url: "https://ehr.example/fhir/auth/token",
            jwks_url: Some("https://app.example/jwks.json"),
            now: NOW,
        }
    }

    fn header() -> Value {
        json!({"alg": "ES384", "kid": "k1", "typ": "JWT"})
    }

    fn claims() -> Value {
        json!({"iss": "backend-1", "sub": "backend-1", "aud": "https://ehr.example/fhir/auth/token",
            "exp": NOW + 240, "jti": "one"})
    }

    #[test]
    fn a_good_assertion_names_its_key_and_jti() {
        let checked = check(&header(), &claims(), &expected()).unwrap();
        assert_eq!(checked.kid, "k1");
        assert_eq!(checked.jti, "one");
        assert_eq!(checked.expires, NOW + 240);
    }

    #[test]
    fn bad_headers_are_refused() {
        for bad in [
            json!({"alg": "none", "kid": "k1"}),
            json!({"alg": "HS256", "kid": "k1"}),
            json!({"alg": "RS256", "kid": "k1"}),
            json!({"alg": "ES384"}),
            json!({"alg": "ES384", "kid": "k1", "typ": "at+jwt"}),
            json!({"alg": "ES384", "kid": "k1", "jku": "https://evil.example/jwks.json"}),
        ] {
            assert!(check(&bad, &claims(), &expected()).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_claims_are_refused() {
        let with = |name: &str, value: Value| {
            let mut claims = claims();
            claims[name] = value;
            claims
        };
        for bad in [
            with("iss", json!("other")),
            with("sub", json!("other")),
            with("aud", json!("https://ehr.example/fhir")),
            with("exp", json!(NOW - 1)),
            with("exp", json!(NOW + 301)),
            with("exp", json!("soon")),
            with("jti", json!("")),
            with("nbf", json!(NOW + 60)),
        ] {
            assert!(check(&header(), &bad, &expected()).is_err(), "{bad}");
        }
        let mut no_jti = claims();
        no_jti.as_object_mut().unwrap().remove("jti");
        assert!(check(&header(), &no_jti, &expected()).is_err());
    }
}
