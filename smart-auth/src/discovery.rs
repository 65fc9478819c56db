//! The discovery documents: `{base}/.well-known/smart-configuration` (SMART 2.x
//! conformance) and `{base}/.well-known/openid-configuration` (OpenID Connect Discovery),
//! and where each endpoint of a tenant's authorization server is.

use serde_json::{Value, json};

/// What this server supports, as SMART capability strings.
pub const CAPABILITIES: &[&str] = &[
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "context-banner",
    "context-style",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
];

/// The algorithms of client assertions (private_key_jwt) that are verified.
pub const ASSERTION_ALGORITHMS: &[&str] = &["RS384", "ES384"];

/// The scopes a client may ask for (resource scopes in their general form).
pub const SCOPES_SUPPORTED: &[&str] = &[
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "user/*.cruds",
    "system/*.cruds",
    "patient/*.read",
    "user/*.read",
    "system/*.read",
    "patient/*.write",
    "user/*.write",
    "system/*.write",
];

/// The endpoints of one tenant's authorization server, below its FHIR base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The FHIR base: the issuer, and the `aud` every request must name.
    pub issuer: String,
    pub authorize: String,
    pub token: String,
    pub introspect: String,
    pub revoke: String,
    pub jwks: String,
    /// Where a user manages the apps they authorized.
    pub manage: String,
}

impl Endpoints {
    /// The endpoints of the tenant whose FHIR base is `base` (no trailing slash).
    pub fn of(base: &str) -> Endpoints {
        let base = base.trim_end_matches('/');
        Endpoints {
            issuer: base.to_owned(),
            authorize: format!("{base}/auth/authorize"),
            token: format!("{base}/auth/token"),
            introspect: format!("{base}/auth/introspect"),
            revoke: format!("{base}/auth/revoke"),
            jwks: format!("{base}/.well-known/jwks.json"),
            manage: format!("{base}/auth/manage"),
        }
    }

    /// `.well-known/smart-configuration`: every required and recommended field.
    pub fn smart_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks,
            "authorization_endpoint": self.authorize,
            "token_endpoint": self.token,
            "token_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "scopes_supported": SCOPES_SUPPORTED,
            "response_types_supported": ["code"],
            "management_endpoint": self.manage,
            "introspection_endpoint": self.introspect,
            "revocation_endpoint": self.revoke,
            "code_challenge_methods_supported": ["S256"],
            "capabilities": CAPABILITIES,
        })
    }

    /// `.well-known/openid-configuration`, for the id_tokens this server issues.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks,
            "authorization_endpoint": self.authorize,
            "token_endpoint": self.token,
            "introspection_endpoint": self.introspect,
            "revocation_endpoint": self.revoke,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "fhirUser", "offline_access"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "fhirUser"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smart_configuration_has_what_the_spec_requires() {
        let document = Endpoints::of("https://ehr.example/t/acme/fhir/").smart_configuration();
        for field in [
            "issuer",
            "jwks_uri",
            "authorization_endpoint",
            "token_endpoint",
            "grant_types_supported",
            "capabilities",
            "code_challenge_methods_supported",
            "scopes_supported",
            "response_types_supported",
            "management_endpoint",
            "introspection_endpoint",
            "revocation_endpoint",
        ] {
            assert!(document.get(field).is_some(), "{field}");
        }
        assert_eq!(document["issuer"], "https://ehr.example/t/acme/fhir");
        assert_eq!(
            document["token_endpoint"],
            "https://ehr.example/t/acme/fhir/auth/token"
        );
        assert_eq!(
            document["code_challenge_methods_supported"],
            json!(["S256"])
        );
        assert_eq!(document["capabilities"].as_array().unwrap().len(), 18);
        // Every URL is absolute.
        for url in [
            "jwks_uri",
            "authorization_endpoint",
            "token_endpoint",
            "introspection_endpoint",
        ] {
            assert!(
                document[url].as_str().unwrap().starts_with("https://"),
                "{url}"
            );
        }
    }

    #[test]
    fn openid_discovery_names_the_same_issuer_and_keys() {
        let endpoints = Endpoints::of("http://127.0.0.1:8080/fhir");
        let document = endpoints.openid_configuration();
        assert_eq!(
            document["issuer"],
            endpoints.smart_configuration()["issuer"]
        );
        assert_eq!(
            document["jwks_uri"],
            "http://127.0.0.1:8080/fhir/.well-known/jwks.json"
        );
    }
}
