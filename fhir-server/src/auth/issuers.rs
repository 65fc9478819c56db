//! The outside identity providers a tenant trusts (Keycloak, Okta, Entra ID, Azure AD B2C):
//! access tokens they sign are accepted beside the server's own. Kept as `store::auth`
//! records of kind issuer, keyed by the issuer URL; registered by the command line
//! (`fhir-server issuer add|list|remove`) and the admin API (`{base}/auth/admin/issuers`).

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use smart_auth::external::Issuer;
use smart_auth::scope::Scopes;

use super::jwks::is_fetchable;
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::store::Store;
use crate::store::auth::RecordKind;

/// A provider, as registered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Where its public keys are (fetched, and kept as its `Cache-Control` allows).
    pub jwks_url: String,
    /// The `aud` its tokens must carry to be good here.
    pub audience: String,
    /// The most its tokens may grant here: a token's scopes count only as far as these
    /// cover them (system/ scopes only where listed).
    pub scopes: String,
    /// The claim with the scopes (`scope`, a space-separated string; `scp`, an array).
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    /// The claim with the patient in context.
    #[serde(default = "default_patient_claim")]
    pub patient_claim: String,
    /// The claim with the user's FHIR resource (`Practitioner/7`).
    #[serde(default = "default_fhir_user_claim")]
    pub fhir_user_claim: String,
    /// The claim naming the user's practice role; the first name that is one of the
    /// tenant's roles counts.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// The role of a user whose token names none of the tenant's roles. Without a role,
    /// a token's patient/ and user/ scopes permit nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<String>,
}

fn default_scope_claim() -> String {
    "scope".into()
}
fn default_patient_claim() -> String {
    "patient".into()
}
fn default_fhir_user_claim() -> String {
    "fhirUser".into()
}
fn default_role_claim() -> String {
    "roles".into()
}

impl TrustedIssuer {
    /// What `smart_auth::external` checks a token against.
    pub fn claims(&self) -> Issuer {
        Issuer {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            scope_claim: self.scope_claim.clone(),
            patient_claim: self.patient_claim.clone(),
            fhir_user_claim: self.fhir_user_claim.clone(),
            role_claim: self.role_claim.clone(),
        }
    }

    pub fn allowed_scopes(&self) -> Scopes {
        Scopes::parse(&self.scopes).unwrap_or_default()
    }

    /// One line of `issuer list`, one entry of the admin API's list.
    pub fn summary(&self) -> Value {
        json!({
            "issuer": self.issuer, "jwks_url": self.jwks_url, "audience": self.audience,
            "scopes": self.scopes, "scope_claim": self.scope_claim,
            "patient_claim": self.patient_claim, "fhir_user_claim": self.fhir_user_claim,
            "role_claim": self.role_claim, "default_role": self.default_role,
        })
    }
}

fn invalid(field: &str, diagnostics: impl Into<String>) -> FhirError {
    FhirError::bad_request(diagnostics).at(field.to_owned())
}

/// Whether `text` is an absolute http(s) URL of at most 512 bytes.
fn is_url(text: &str) -> bool {
    text.len() <= 512
        && (text.starts_with("https://") || text.starts_with("http://"))
        && text.parse::<axum::http::Uri>().is_ok()
}

/// Registers a provider for `tenant` (409 when its issuer is registered already).
pub async fn add(store: &Store, tenant: TenantId, new: TrustedIssuer) -> Result<(), FhirError> {
    if !is_url(&new.issuer) {
        return Err(invalid("issuer", "the issuer is an absolute http(s) URL"));
    }
    if !is_fetchable(&new.jwks_url) {
        return Err(invalid(
            "jwks_url",
            "the JWKS URL is https (or http to this machine)",
        ));
    }
    if new.audience.trim().is_empty() || new.audience.len() > 512 {
        return Err(invalid("audience", "the audience is 1 to 512 characters"));
    }
    Scopes::parse(&new.scopes).map_err(|e| invalid("scopes", e.to_string()))?;
    for (field, claim) in [
        ("scope_claim", &new.scope_claim),
        ("patient_claim", &new.patient_claim),
        ("fhir_user_claim", &new.fhir_user_claim),
        ("role_claim", &new.role_claim),
    ] {
        if claim.is_empty() || claim.len() > 128 {
            return Err(invalid(field, "a claim name is 1 to 128 characters"));
        }
    }
    if let Some(role) = &new.default_role
        && super::accounts::role(store, tenant, role).await?.is_none()
    {
        return Err(invalid("default_role", format!("no role '{role}'")));
    }
    if issuer(store, tenant, &new.issuer).await?.is_some() {
        return Err(FhirError::new(
            StatusCode::CONFLICT,
            "duplicate",
            format!("the issuer '{}' is trusted already", new.issuer),
        ));
    }
    let body = serde_json::to_string(&new).map_err(|e| FhirError::internal(e.to_string()))?;
    Ok(store
        .auth_put(tenant, RecordKind::Issuer, &new.issuer, &body, None)
        .await?)
}

/// Stops trusting a provider (404 when it was not trusted). Tokens of it already checked
/// stay good for at most [`super::principal::OUTSIDE_TOKEN_KEPT`] seconds.
pub async fn remove(store: &Store, tenant: TenantId, issuer: &str) -> Result<(), FhirError> {
    if store
        .auth_delete(tenant, RecordKind::Issuer, issuer)
        .await?
    {
        Ok(())
    } else {
        Err(FhirError::not_found(format!(
            "the issuer '{issuer}' is not trusted"
        )))
    }
}

/// The provider whose tokens carry `iss`, if the tenant trusts it.
pub async fn issuer(
    store: &Store,
    tenant: TenantId,
    iss: &str,
) -> Result<Option<TrustedIssuer>, FhirError> {
    match store.auth_get(tenant, RecordKind::Issuer, iss, 0).await? {
        Some((body, _)) => serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| FhirError::internal(format!("a stored issuer does not parse: {e}"))),
        None => Ok(None),
    }
}

/// Every provider the tenant trusts.
pub async fn issuers(store: &Store, tenant: TenantId) -> Result<Vec<TrustedIssuer>, FhirError> {
    let rows = store.auth_list(tenant, RecordKind::Issuer).await?;
    rows.iter()
        .map(|(_, body)| {
            serde_json::from_str(body)
                .map_err(|e| FhirError::internal(format!("a stored issuer does not parse: {e}")))
        })
        .collect()
}
