//! JWTs: the server's own signing keys (RS256, the algorithm OpenID Connect requires of
//! id_tokens), its JWKS, checking tokens it issued, and verifying clients' assertions with
//! their keys (RS384 or ES384, one key chosen by `kid`, its type matching the algorithm).
//!
//! Expiry is checked against the `now` the caller passes (the server's settable clock),
//! not the system clock.

use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::PrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::Value;

use crate::assertion::{self, AssertionError, Checked, Expected};

/// How many characters of a key's thumbprint name it.
const KID_LENGTH: usize = 16;

/// RSA modulus size of new signing keys.
const KEY_BITS: usize = 2048;

/// One of the server's signing keys.
pub struct SigningKey {
    /// The first 16 characters (96 bits) of its JWK thumbprint (RFC 7638): it names the
    /// key in token headers and the JWKS, and is short because every request carries it.
    pub kid: String,
    der: Vec<u8>,
    encoding: EncodingKey,
    public: Jwk,
}

impl SigningKey {
    /// A new key (done on first start, and by `keys rotate`).
    pub fn generate() -> Result<SigningKey, String> {
        let key = PrivateKey::new(&mut getrandom::SysRng, KEY_BITS)
            .map_err(|error| format!("cannot make a signing key: {error}"))?;
        let der = key
            .to_pkcs1_der()
            .map_err(|error| format!("cannot encode the signing key: {error}"))?;
        SigningKey::from_pkcs1_der(der.as_bytes())
    }

    /// A key as stored (PKCS#1 DER).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<SigningKey, String> {
        let encoding = EncodingKey::from_rsa_der(der);
        let mut public = Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .map_err(|error| format!("not an RSA private key: {error}"))?;
        let mut kid = public
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|error| format!("cannot name the key: {error}"))?;
        kid.truncate(KID_LENGTH);
        public.common.key_id = Some(kid.clone());
        Ok(SigningKey {
            kid,
            der: der.to_vec(),
            encoding,
            public,
        })
    }

    /// The private key to store (PKCS#1 DER). Keep it as secret as the database.
    pub fn pkcs1_der(&self) -> &[u8] {
        &self.der
    }

    /// The public key, as the JWKS lists it.
    pub fn public_jwk(&self) -> &Jwk {
        &self.public
    }

    /// A signed JWT of `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|error| format!("cannot sign: {error}"))
    }
}

/// The JWKS document of `keys` (the current key, and older ones until their tokens expire).
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Value {
    let set = JwkSet {
        keys: keys.into_iter().map(|key| key.public.clone()).collect(),
    };
    serde_json::to_value(set).unwrap_or(Value::Null)
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError(pub String);

/// The claims of a token this server issued, once its signature (by one of `keys`, chosen
/// by `kid`), issuer, audience and expiry hold.
pub fn verify_own<'a>(
    token: &str,
    keys: impl IntoIterator<Item = &'a SigningKey>,
    issuer: &str,
    audience: &str,
    now: i64,
) -> Result<Value, TokenError> {
    let refuse = |reason: &str| TokenError(reason.to_owned());
    let header = jsonwebtoken::decode_header(token).map_err(|_| refuse("not a JWT"))?;
    if header.alg != Algorithm::RS256 {
        return Err(refuse("not signed by this server"));
    }
    let kid = header
        .kid
        .ok_or_else(|| refuse("not signed by this server"))?;
    let key = keys
        .into_iter()
        .find(|key| key.kid == kid)
        .ok_or_else(|| refuse("signed by a key this server does not have"))?;
    let decoding = DecodingKey::from_jwk(&key.public).map_err(|_| refuse("bad key"))?;
    let claims =
        signed_claims(token, &decoding, Algorithm::RS256).map_err(|_| refuse("bad signature"))?;
    if claims["iss"].as_str() != Some(issuer) {
        return Err(refuse("issued for another server"));
    }
    let aud_ok = match &claims["aud"] {
        Value::String(aud) => aud == audience,
        Value::Array(auds) => auds.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(refuse("issued for another audience"));
    }
    match claims["exp"].as_i64() {
        Some(exp) if exp > now => Ok(claims),
        _ => Err(refuse("expired")),
    }
}

/// The claims of `token` once its signature by `key` holds; nothing else is checked here.
fn signed_claims(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(token, key, &validation).map(|data| data.claims)
}

/// Verifies a client assertion: its header and claims (see `assertion`), then its
/// signature by the one key of the client's JWKS `jwks` named by its `kid`, whose type
/// matches its algorithm. The caller then refuses a `jti` it has seen.
pub fn verify_assertion(
    token: &str,
    jwks: &Value,
    expected: &Expected<'_>,
) -> Result<Checked, AssertionError> {
    let refuse = |reason: &str| AssertionError(reason.to_owned());
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| refuse("the client assertion is not a JWT"))?;
    let header =
        serde_json::to_value(&header).map_err(|_| refuse("the client assertion is not a JWT"))?;
    let claims =
        unverified_claims(token).ok_or_else(|| refuse("the client assertion is not a JWT"))?;
    let checked = assertion::check(&header, &claims, expected)?;
    let set: JwkSet = serde_json::from_value(jwks.clone())
        .map_err(|_| refuse("the client's JWKS does not parse"))?;
    let alg = match checked.alg.as_str() {
        "RS384" => Algorithm::RS384,
        _ => Algorithm::ES384,
    };
    let mut named = set
        .keys
        .iter()
        .filter(|key| key.common.key_id.as_deref() == Some(checked.kid.as_str()));
    let key = match (named.next(), named.next()) {
        (Some(key), None) => key,
        (None, _) => return Err(refuse("no key of the client's JWKS has this kid")),
        (Some(_), Some(_)) => {
            return Err(refuse("several keys of the client's JWKS have this kid"));
        }
    };
    if !key_fits(key, alg) {
        return Err(refuse(
            "the key named by kid is not of the assertion's algorithm",
        ));
    }
    let decoding =
        DecodingKey::from_jwk(key).map_err(|_| refuse("the client's key does not parse"))?;
    signed_claims(token, &decoding, alg)
        .map_err(|_| refuse("the client assertion's signature does not verify"))?;
    Ok(checked)
}

/// Whether `key` can verify `alg`: an RSA key for RS384, a P-384 key for ES384.
fn key_fits(key: &Jwk, alg: Algorithm) -> bool {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    match (&key.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS384) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        _ => false,
    }
}

/// The claims of a JWT before its signature is checked (to check them first, and to know
/// whose keys verify it).
pub fn unverified_claims(token: &str) -> Option<Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `kid` in a JWT's header, unverified: which key of a fetched JWKS should verify it
/// (a kid the kept set lacks is the sign to fetch the set again).
pub fn unverified_kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// Whether the JWKS `jwks` has a key with the id `kid`.
pub fn jwks_has_kid(jwks: &Value, kid: &str) -> bool {
    jwks["keys"]
        .as_array()
        .is_some_and(|keys| keys.iter().any(|key| key["kid"].as_str() == Some(kid)))
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use serde_json::json;

    use super::*;

    /// One key for all tests: making one costs seconds in a debug build.
    static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::generate().unwrap());

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn own_tokens_verify_until_they_expire() {
        let token = KEY
            .sign(
                &json!({"iss": "https://ehr.example/fhir", "aud": "https://ehr.example/fhir",
                "exp": NOW + 300, "scope": "patient/*.rs"}),
            )
            .unwrap();
        let claims = verify_own(
            &token,
            [&*KEY],
            "https://ehr.example/fhir",
            "https://ehr.example/fhir",
            NOW,
        )
        .unwrap();
        assert_eq!(claims["scope"], "patient/*.rs");
        let verify = |now, issuer, audience| verify_own(&token, [&*KEY], issuer, audience, now);
        assert!(
            verify(
                NOW + 300,
                "https://ehr.example/fhir",
                "https://ehr.example/fhir"
            )
            .is_err()
        );
        assert!(
            verify(
                NOW,
                "https://other.example/fhir",
                "https://ehr.example/fhir"
            )
            .is_err()
        );
        assert!(
            verify(
                NOW,
                "https://ehr.example/fhir",
                "https://ehr.example/t/b/fhir"
            )
            .is_err()
        );
        // A changed payload breaks the signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        use base64::Engine;
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            json!({"iss": "https://ehr.example/fhir", "aud": "https://ehr.example/fhir", "exp": NOW + 300,
                "scope": "user/*.cruds"}).to_string(),
        );
        assert!(
            verify_own(
                &parts.join("."),
                [&*KEY],
                "https://ehr.example/fhir",
                "https://ehr.example/fhir",
                NOW
            )
            .is_err()
        );
    }

    #[test]
    fn a_stored_key_is_the_same_key() {
        let again = SigningKey::from_pkcs1_der(KEY.pkcs1_der()).unwrap();
        assert_eq!(again.kid, KEY.kid);
        let set = jwks([&*KEY]);
        assert_eq!(set["keys"][0]["kid"], KEY.kid.as_str());
        assert_eq!(set["keys"][0]["kty"], "RSA");
        assert!(
            set["keys"][0].get("d").is_none(),
            "the JWKS holds no private part"
        );
    }

    /// A client's RS384 assertion, signed with a key of its own (here the test key, listed
    /// in the client's JWKS under its own kid).
    fn client_jwks(kid: &str) -> Value {
        let mut jwk = serde_json::to_value(KEY.public_jwk()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!("RS384");
        json!({"keys": [jwk]})
    }

    fn assertion(kid: &str, alg: Algorithm, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        header.typ = Some("JWT".to_owned());
        jsonwebtoken::encode(&header, claims, &KEY.encoding).unwrap()
    }

    fn expected() -> Expected<'static> {
        Expected {
            client_id: "backend-1",
            token_url: "https://ehr.example/fhir/auth/token",
            jwks_url: None,
            now: NOW,
        }
    }

    fn claims() -> Value {
        json!({"iss": "backend-1", "sub": "backend-1", "aud": "https://ehr.example/fhir/auth/token",
            "exp": NOW + 60, "jti": "j-1"})
    }

    #[test]
    fn a_client_assertion_verifies_with_its_key() {
        let token = assertion("client-key", Algorithm::RS384, &claims());
        let checked = verify_assertion(&token, &client_jwks("client-key"), &expected()).unwrap();
        assert_eq!(checked.jti, "j-1");
    }

    #[test]
    fn wrong_keys_algorithms_and_signatures_are_refused() {
        let token = assertion("client-key", Algorithm::RS384, &claims());
        // Unknown kid.
        assert!(verify_assertion(&token, &client_jwks("other-key"), &expected()).is_err());
        // RS256 is not accepted for assertions.
        let rs256 = assertion("client-key", Algorithm::RS256, &claims());
        assert!(verify_assertion(&rs256, &client_jwks("client-key"), &expected()).is_err());
        // An HMAC "signed" with the public key as its secret.
        let public = serde_json::to_string(KEY.public_jwk()).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("client-key".to_owned());
        let hs = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(public.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(verify_assertion(&hs, &client_jwks("client-key"), &expected()).is_err());
        // alg none.
        use base64::Engine;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!(
            "{}.{}.",
            b64(json!({"alg": "none", "kid": "client-key"})),
            b64(claims())
        );
        assert!(verify_assertion(&none, &client_jwks("client-key"), &expected()).is_err());
        // A changed signature (its first character: every bit of it is signature).
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
        let forged = format!("{signed}.{flipped}{}", &signature[1..]);
        assert!(verify_assertion(&forged, &client_jwks("client-key"), &expected()).is_err());
        // An ES384 header over an RSA key.
        let mut jwks = client_jwks("client-key");
        jwks["keys"][0]["alg"] = json!("ES384");
        let (_, rest) = token.split_once('.').unwrap();
        let header_es = b64(json!({"alg": "ES384", "kid": "client-key", "typ": "JWT"}));
        assert!(verify_assertion(&format!("{header_es}.{rest}"), &jwks, &expected()).is_err());
    }

    #[test]
    fn an_es384_assertion_verifies_with_a_p384_key() {
        use p384::elliptic_curve::Generate;
        use p384::pkcs8::EncodePrivateKey;
        let secret = p384::SecretKey::try_generate_from_rng(&mut getrandom::SysRng).unwrap();
        let der = secret.to_pkcs8_der().unwrap();
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&encoding, Algorithm::ES384).unwrap())
                .unwrap();
        jwk["kid"] = json!("ec-key");
        let jwks = json!({"keys": [jwk]});
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some("ec-key".to_owned());
        let token = jsonwebtoken::encode(&header, &claims(), &encoding).unwrap();
        assert_eq!(
            verify_assertion(&token, &jwks, &expected()).unwrap().alg,
            "ES384"
        );
        // The same key does not verify an RS384 header.
        let (_, rest) = token.split_once('.').unwrap();
        use base64::Engine;
        let rs = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"alg": "RS384", "kid": "ec-key"}).to_string());
        assert!(verify_assertion(&format!("{rs}.{rest}"), &jwks, &expected()).is_err());
    }
}
