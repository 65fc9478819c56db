//! The /token endpoint's rules (RFC 6749 4.1.3 and 6, SMART App Launch 2.x): exchanging a
//! code, narrowing a refresh, and what an access token, an id_token, a token response and
//! an introspection answer hold. The server stores codes and grants; the rules are here.

use serde_json::{Map, Value, json};

use crate::pkce;
use crate::scope::{Scope, Scopes};

/// How long a code may be exchanged, in seconds (SMART: about a minute).
pub const CODE_LIFETIME: i64 = 60;
/// How long an access token lives, in seconds (SMART: at most an hour).
pub const ACCESS_LIFETIME: i64 = 3600;
/// How long a Backend Services token lives, in seconds (SMART: at most five minutes).
pub const BACKEND_LIFETIME: i64 = 300;

/// A /token error (RFC 6749 5.2): its code, and a description for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub error: &'static str,
    pub description: String,
}

impl TokenError {
    pub fn new(error: &'static str, description: impl Into<String>) -> TokenError {
        TokenError {
            error,
            description: description.into(),
        }
    }

    /// The HTTP status: 401 for a client that failed to authenticate, else 400.
    pub fn status(&self) -> u16 {
        if self.error == "invalid_client" {
            401
        } else {
            400
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }
}

/// What an authorization decided: the scopes granted and the launch context.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    pub client_id: String,
    pub scopes: Scopes,
    /// The patient in context (required when a patient/ scope is granted).
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// The signed-in user's FHIR resource (`Practitioner/7`), if a user signed in.
    pub fhir_user: Option<String>,
    /// The user's own id (the id_token's `sub`).
    pub user_id: Option<String>,
    /// Whether the app should show which patient it is about (an EHR launch inside the
    /// EHR's own banner says no).
    pub need_patient_banner: bool,
    pub smart_style_url: Option<String>,
}

/// A code as the server issued it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    pub grant: Grant,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub issued_at: i64,
}

/// Checks the exchange of `code` by `client_id` (already authenticated, or a public
/// client naming itself): the same client, the same redirect URI, within its lifetime,
/// and the PKCE verifier. The caller marks the code used before answering, so a second
/// exchange finds it gone (and revokes what the first one got).
pub fn exchange_code(
    code: &IssuedCode,
    client_id: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    now: i64,
) -> Result<(), TokenError> {
    if code.grant.client_id != client_id {
        return Err(TokenError::new(
            "invalid_grant",
            "the code was issued to another client",
        ));
    }
    if now >= code.issued_at + CODE_LIFETIME {
        return Err(TokenError::new("invalid_grant", "the code has expired"));
    }
    if redirect_uri != Some(code.redirect_uri.as_str()) {
        return Err(TokenError::new(
            "invalid_grant",
            "redirect_uri is not the one the code was issued for",
        ));
    }
    pkce::verify(verifier, &code.code_challenge)
        .map_err(|error| TokenError::new("invalid_grant", error.0))
}

/// The scopes of a refreshed token: those asked for (`scope`, optional), which must all be
/// within the grant, or the grant's own.
pub fn refresh_scopes(scope: Option<&str>, granted: &Scopes) -> Result<Scopes, TokenError> {
    let Some(scope) = scope.filter(|s| !s.trim().is_empty()) else {
        return Ok(granted.clone());
    };
    let asked = Scopes::parse(scope)
        .map_err(|error| TokenError::new("invalid_scope", error.to_string()))?;
    if !asked.is_within(granted) {
        return Err(TokenError::new(
            "invalid_scope",
            "a refresh may not ask for more than was granted",
        ));
    }
    Ok(asked)
}

/// Whether the grant may have a refresh token (the app asked for offline or online access).
pub fn gets_refresh_token(scopes: &Scopes) -> bool {
    scopes.contains(&Scope::OfflineAccess) || scopes.contains(&Scope::OnlineAccess)
}

/// The claims of an access token for `grant`, issued by `issuer` for the FHIR base
/// `audience` (the same URL for this server), valid `lifetime` seconds from `now`.
pub fn access_claims(
    grant: &Grant,
    issuer: &str,
    audience: &str,
    now: i64,
    lifetime: i64,
    jti: &str,
) -> Value {
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(issuer));
    claims.insert("aud".into(), json!(audience));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + lifetime));
    claims.insert("jti".into(), json!(jti));
    claims.insert("client_id".into(), json!(grant.client_id));
    claims.insert("scope".into(), json!(grant.scopes.to_string()));
    if let Some(user) = &grant.user_id {
        claims.insert("sub".into(), json!(user));
    }
    for (name, value) in [
        ("patient", &grant.patient),
        ("encounter", &grant.encounter),
        ("fhirUser", &grant.fhir_user),
    ] {
        if let Some(value) = value {
            claims.insert(name.into(), json!(value));
        }
    }
    Value::Object(claims)
}

/// The claims of an id_token (OpenID Connect Core 2): for a grant with `openid` and a
/// signed-in user; `fhirUser` when that scope was granted.
pub fn id_token_claims(
    grant: &Grant,
    issuer: &str,
    now: i64,
    nonce: Option<&str>,
) -> Option<Value> {
    if !grant.scopes.contains(&Scope::OpenId) {
        return None;
    }
    let sub = grant.user_id.as_ref()?;
    let mut claims = json!({"iss": issuer, "sub": sub, "aud": grant.client_id, "iat": now,
        "exp": now + ACCESS_LIFETIME});
    if grant.scopes.contains(&Scope::FhirUser)
        && let Some(fhir_user) = &grant.fhir_user
    {
        claims["fhirUser"] = json!(format!("{issuer}/{fhir_user}"));
    }
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    Some(claims)
}

/// Tokens to put in an answer besides the access token.
#[derive(Debug, Default)]
pub struct Extra {
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
}

/// The /token answer (SMART 2.x "Response"): the token, its lifetime and scope, the launch
/// context, and the id and refresh tokens when issued. Sent with `Cache-Control: no-store`.
pub fn response(access_token: &str, lifetime: i64, grant: &Grant, extra: Extra) -> Value {
    let mut body = json!({"access_token": access_token, "token_type": "Bearer",
        "expires_in": lifetime, "scope": grant.scopes.to_string()});
    if let Some(patient) = &grant.patient {
        body["patient"] = json!(patient);
        body["need_patient_banner"] = json!(grant.need_patient_banner);
    }
    if let Some(encounter) = &grant.encounter {
        body["encounter"] = json!(encounter);
    }
    if let Some(url) = &grant.smart_style_url {
        body["smart_style_url"] = json!(url);
    }
    if let Some(id_token) = extra.id_token {
        body["id_token"] = json!(id_token);
    }
    if let Some(refresh_token) = extra.refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    body
}

/// The introspection answer (RFC 7662, as SMART profiles it) for an access token's claims,
/// or `{"active": false}` for anything else.
pub fn introspection(claims: Option<&Value>) -> Value {
    let Some(claims) = claims else {
        return json!({"active": false});
    };
    let mut answer = json!({"active": true, "token_type": "Bearer"});
    for name in [
        "scope",
        "client_id",
        "exp",
        "iat",
        "iss",
        "sub",
        "aud",
        "patient",
        "encounter",
        "fhirUser",
    ] {
        if let Some(value) = claims.get(name) {
            answer[name] = value.clone();
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const NOW: i64 = 1_800_000_000;
    const BASE: &str = "https://ehr.example/fhir";

    fn grant() -> Grant {
        Grant {
            client_id: "app".into(),
            scopes: Scopes::parse("launch/patient patient/*.rs openid fhirUser offline_access")
                .unwrap(),
            patient: Some("p1".into()),
            fhir_user: Some("Patient/p1".into()),
            user_id: Some("u-42".into()),
            need_patient_banner: true,
            ..Grant::default()
        }
    }

    fn code() -> IssuedCode {
        IssuedCode {
            grant: grant(),
            redirect_uri: "https://app.example/cb".into(),
            code_challenge: CHALLENGE.into(),
            issued_at: NOW,
        }
    }

    #[test]
    fn a_code_is_exchanged_by_its_client_with_its_verifier_in_time() {
        let exchange =
            |client, uri, verifier, now| exchange_code(&code(), client, uri, verifier, now);
        assert_eq!(
            exchange(
                "app",
                Some("https://app.example/cb"),
                Some(VERIFIER),
                NOW + 59
            ),
            Ok(())
        );
        for (client, uri, verifier, now) in [
            ("other", Some("https://app.example/cb"), Some(VERIFIER), NOW),
            (
                "app",
                Some("https://app.example/other"),
                Some(VERIFIER),
                NOW,
            ),
            ("app", None, Some(VERIFIER), NOW),
            ("app", Some("https://app.example/cb"), None, NOW),
            ("app", Some("https://app.example/cb"), Some(CHALLENGE), NOW),
            (
                "app",
                Some("https://app.example/cb"),
                Some(VERIFIER),
                NOW + 60,
            ),
        ] {
            let error = exchange(client, uri, verifier, now).unwrap_err();
            assert_eq!(error.error, "invalid_grant");
            assert_eq!(error.status(), 400);
        }
    }

    #[test]
    fn a_refresh_may_narrow_but_not_widen() {
        let granted = grant().scopes;
        assert_eq!(refresh_scopes(None, &granted).unwrap(), granted);
        assert_eq!(
            refresh_scopes(Some("patient/Observation.rs"), &granted)
                .unwrap()
                .to_string(),
            "patient/Observation.rs"
        );
        assert_eq!(
            refresh_scopes(Some("patient/*.cruds"), &granted)
                .unwrap_err()
                .error,
            "invalid_scope"
        );
        assert_eq!(
            refresh_scopes(Some("user/*.rs"), &granted)
                .unwrap_err()
                .error,
            "invalid_scope"
        );
        assert!(gets_refresh_token(&granted));
        assert!(!gets_refresh_token(&Scopes::parse("patient/*.rs").unwrap()));
    }

    #[test]
    fn the_answer_carries_the_launch_context_and_tokens() {
        let body = response(
            "at",
            ACCESS_LIFETIME,
            &grant(),
            Extra {
                id_token: Some("it".into()),
                refresh_token: Some("rt".into()),
            },
        );
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["patient"], "p1");
        assert_eq!(body["need_patient_banner"], true);
        assert_eq!(body["id_token"], "it");
        assert_eq!(body["refresh_token"], "rt");
        assert_eq!(
            body["scope"],
            "launch/patient patient/*.rs openid fhirUser offline_access"
        );
    }

    #[test]
    fn access_and_id_token_claims() {
        let claims = access_claims(&grant(), BASE, BASE, NOW, ACCESS_LIFETIME, "j1");
        assert_eq!(claims["exp"], NOW + 3600);
        assert_eq!(claims["patient"], "p1");
        assert_eq!(claims["aud"], BASE);
        let id = id_token_claims(&grant(), BASE, NOW, Some("n")).unwrap();
        assert_eq!(id["sub"], "u-42");
        assert_eq!(id["aud"], "app");
        assert_eq!(id["fhirUser"], "https://ehr.example/fhir/Patient/p1");
        let mut backend = grant();
        backend.scopes = Scopes::parse("system/*.rs").unwrap();
        assert!(id_token_claims(&backend, BASE, NOW, None).is_none());
    }

    #[test]
    fn introspection_of_active_and_inactive_tokens() {
        let claims = access_claims(&grant(), BASE, BASE, NOW, ACCESS_LIFETIME, "j1");
        let active = introspection(Some(&claims));
        assert_eq!(active["active"], true);
        assert_eq!(active["client_id"], "app");
        assert_eq!(active["patient"], "p1");
        assert_eq!(introspection(None), json!({"active": false}));
        let error = TokenError::new("invalid_client", "wrong secret");
        assert_eq!(error.status(), 401);
        assert_eq!(error.body()["error"], "invalid_client");
    }
}
