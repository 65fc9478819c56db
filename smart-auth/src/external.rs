//! Access tokens from an outside identity provider (Keycloak, Okta, Entra ID, Azure AD B2C)
//! that a tenant trusts: the token is checked against the provider's JWKS (which the server
//! fetches, and keeps no longer than its `Cache-Control` allows), and its claims are mapped
//! to SMART scopes and launch context.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::scope::Scopes;

/// A trusted provider, as a tenant configures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// The `aud` its tokens must carry for this server (often the FHIR base or an API id).
    pub audience: String,
    /// The claim with the scopes: a space-separated string (`scope`) or an array (`scp`).
    pub scope_claim: String,
    /// The claim with the patient in context (`patient`, or a custom one).
    pub patient_claim: String,
    /// The claim with the user's FHIR resource, if the provider sets one.
    pub fhir_user_claim: String,
    /// The claim with the user's roles: a string or an array (Keycloak and Entra ID put
    /// app roles in `roles`).
    pub role_claim: String,
}

impl Issuer {
    /// A provider with the usual claim names.
    pub fn new(issuer: &str, audience: &str) -> Issuer {
        Issuer {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            scope_claim: "scope".into(),
            patient_claim: "patient".into(),
            fhir_user_claim: "fhirUser".into(),
            role_claim: "roles".into(),
        }
    }
}

/// What an outside token grants here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Scopes,
    pub patient: Option<String>,
    pub fhir_user: Option<String>,
    /// What the role claim names, in its order.
    pub roles: Vec<String>,
    /// The token's `jti`, if it has one.
    pub jti: Option<String>,
    pub exp: i64,
}

/// The algorithms accepted from outside providers (never `none`, never an HMAC one: the
/// server holds no shared secret with them).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
];

/// Checks `token` against the provider's keys `jwks` at `now`, and maps its claims.
pub fn verify(token: &str, issuer: &Issuer, jwks: &Value, now: i64) -> Result<Mapped, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| "not a JWT".to_owned())?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(format!("algorithm {:?} is not accepted", header.alg));
    }
    let set: JwkSet = serde_json::from_value(jwks.clone())
        .map_err(|_| "the provider's JWKS does not parse".to_owned())?;
    let key = match &header.kid {
        Some(kid) => set.find(kid),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
    .ok_or_else(|| "no key of the provider's JWKS signed this token".to_owned())?;
    let decoding =
        DecodingKey::from_jwk(key).map_err(|_| "the provider's key does not parse".to_owned())?;
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .map_err(|_| "the signature does not verify".to_owned())?
        .claims;
    check_claims(&claims, issuer, now)?;
    map(&claims, issuer)
}

/// `iss`, `aud`, `exp` and `nbf`.
fn check_claims(claims: &Value, issuer: &Issuer, now: i64) -> Result<(), String> {
    if claims["iss"].as_str() != Some(issuer.issuer.as_str()) {
        return Err("issued by another provider".into());
    }
    let aud_ok = match &claims["aud"] {
        Value::String(aud) => *aud == issuer.audience,
        Value::Array(auds) => auds
            .iter()
            .any(|a| a.as_str() == Some(issuer.audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err("issued for another audience".into());
    }
    match claims["exp"].as_i64() {
        Some(exp) if exp > now => {}
        _ => return Err("expired".into()),
    }
    if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now) {
        return Err("not valid yet".into());
    }
    Ok(())
}

/// The words of a claim that is a space-separated string or an array of strings.
fn words(claim: &Value) -> Vec<String> {
    match claim {
        Value::String(text) => text.split_whitespace().map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn map(claims: &Value, issuer: &Issuer) -> Result<Mapped, String> {
    let scope_text = words(&claims[issuer.scope_claim.as_str()]).join(" ");
    let scopes = Scopes::parse(&scope_text).map_err(|error| error.to_string())?;
    let text = |name: &str| claims[name].as_str().map(str::to_owned);
    Ok(Mapped {
        subject: text("sub"),
        client_id: text("client_id").or_else(|| text("azp")),
        scopes,
        patient: text(&issuer.patient_claim),
        fhir_user: text(&issuer.fhir_user_claim),
        roles: words(&claims[issuer.role_claim.as_str()]),
        jti: text("jti"),
        exp: claims["exp"].as_i64().unwrap_or_default(),
    })
}

/// How long a fetched JWKS may be kept, in seconds, from its `Cache-Control` header:
/// `max-age` (capped at a day), nothing for `no-store`/`no-cache`, and 5 minutes when the
/// header says nothing.
pub fn keep_for(cache_control: Option<&str>) -> u64 {
    const DEFAULT: u64 = 300;
    const MAX: u64 = 86_400;
    let Some(header) = cache_control else {
        return DEFAULT;
    };
    let mut keep = DEFAULT;
    for directive in header.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return 0;
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            keep = seconds.trim_matches('"').parse().unwrap_or(0).min(MAX);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use serde_json::json;

    use super::*;
    use crate::jwt::SigningKey;

    const NOW: i64 = 1_800_000_000;

    /// The provider's own key, and another one (made once: a key costs a second in a debug
    /// build).
    static KEYS: LazyLock<(SigningKey, SigningKey)> = LazyLock::new(|| {
        (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        )
    });

    /// The provider's key and JWKS.
    fn provider() -> (&'static SigningKey, Value) {
        (&KEYS.0, crate::jwt::jwks([&KEYS.0]))
    }

    fn issuer() -> Issuer {
        Issuer::new(
            "https://idp.example/realms/clinic",
            "https://ehr.example/fhir",
        )
    }

    #[test]
    fn a_providers_token_maps_to_scopes_and_context() {
        let (key, jwks) = provider();
        let token = key
            .sign(&json!({"iss": "https://idp.example/realms/clinic", "aud": ["account", "https://ehr.example/fhir"],
                "exp": NOW + 60, "sub": "u1", "azp": "portal", "scope": "openid patient/*.rs profile",
                "patient": "p7"}))
            .unwrap();
        let mapped = verify(&token, &issuer(), &jwks, NOW).unwrap();
        assert_eq!(mapped.scopes.to_string(), "openid patient/*.rs");
        assert_eq!(mapped.patient.as_deref(), Some("p7"));
        assert_eq!(mapped.client_id.as_deref(), Some("portal"));
        assert!(mapped.roles.is_empty());
        // Entra ID's `scp` array.
        let mut entra = issuer();
        entra.scope_claim = "scp".into();
        let token = key
            .sign(&json!({"iss": "https://idp.example/realms/clinic", "aud": "https://ehr.example/fhir",
                "exp": NOW + 60, "scp": ["user/Patient.rs", "user/Appointment.cruds"],
                "roles": ["reader", "front-desk"]}))
            .unwrap();
        let mapped = verify(&token, &entra, &jwks, NOW).unwrap();
        assert_eq!(
            mapped.scopes.to_string(),
            "user/Patient.rs user/Appointment.cruds"
        );
        assert_eq!(mapped.roles, ["reader", "front-desk"]);
    }

    #[test]
    fn wrong_issuer_audience_time_or_key_is_refused() {
        let (key, jwks) = provider();
        let other = &KEYS.1;
        let claims = json!({"iss": "https://idp.example/realms/clinic", "aud": "https://ehr.example/fhir",
            "exp": NOW + 60});
        let good = key.sign(&claims).unwrap();
        assert!(verify(&good, &issuer(), &jwks, NOW + 60).is_err());
        let mut wrong_iss = issuer();
        wrong_iss.issuer = "https://evil.example".into();
        assert!(verify(&good, &wrong_iss, &jwks, NOW).is_err());
        let mut wrong_aud = issuer();
        wrong_aud.audience = "https://other.example/fhir".into();
        assert!(verify(&good, &wrong_aud, &jwks, NOW).is_err());
        // Signed by a key the provider's JWKS does not hold.
        assert!(verify(&other.sign(&claims).unwrap(), &issuer(), &jwks, NOW).is_err());
        assert!(verify("not.a.jwt", &issuer(), &jwks, NOW).is_err());
    }

    #[test]
    fn jwks_are_kept_as_cache_control_allows() {
        assert_eq!(keep_for(None), 300);
        assert_eq!(keep_for(Some("public, max-age=3600")), 3600);
        assert_eq!(keep_for(Some("max-age=999999")), 86_400);
        assert_eq!(keep_for(Some("no-store")), 0);
        assert_eq!(keep_for(Some("max-age=60, no-cache")), 0);
        assert_eq!(keep_for(Some("max-age=abc")), 0);
    }
}
