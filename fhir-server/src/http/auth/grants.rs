//! Grants, codes and refresh tokens as the store keeps them, and issuing the tokens of a
//! grant: the access token (RS256, this tenant's base as issuer and audience), the
//! id_token when `openid` was granted, and a refresh token (rotated at every use) when
//! offline or online access was.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use smart_auth::scope::Scopes;
use smart_auth::token::{self, Extra, Grant, TokenError};

use super::Tenant;
use crate::app::App;
use crate::clock::now_seconds;
use crate::store::auth::RecordKind;

/// How long a refresh token lives, in seconds (90 days; each use makes a new one).
pub const REFRESH_LIFETIME: i64 = 90 * 24 * 3600;

/// A grant: what a user (or a backend) authorized a client to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredGrant {
    pub id: String,
    pub client_id: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The user's role name (user tokens); none for a backend service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub need_patient_banner: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl StoredGrant {
    pub fn new(client_id: &str, scopes: &Scopes) -> Result<StoredGrant, TokenError> {
        Ok(StoredGrant {
            id: new_id()?,
            client_id: client_id.to_owned(),
            scope: scopes.to_string(),
            patient: None,
            encounter: None,
            fhir_user: None,
            username: None,
            role: None,
            need_patient_banner: false,
            nonce: None,
        })
    }

    fn grant(&self, scopes: Scopes) -> Grant {
        Grant {
            client_id: self.client_id.clone(),
            scopes,
            patient: self.patient.clone(),
            encounter: self.encounter.clone(),
            fhir_user: self.fhir_user.clone(),
            user_id: self.username.clone(),
            need_patient_banner: self.need_patient_banner,
            smart_style_url: None,
        }
    }
}

/// A code, as kept until it is exchanged (by its SHA-256).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredCode {
    pub grant: StoredGrant,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub issued_at: i64,
}

/// A refresh token, as kept (by its SHA-256): the grant it renews.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRefresh {
    pub grant_id: String,
}

pub fn new_id() -> Result<String, TokenError> {
    smart_auth::random_id().map_err(|e| TokenError::new("server_error", e))
}

pub fn new_token() -> Result<String, TokenError> {
    smart_auth::random_token().map_err(|e| TokenError::new("server_error", e))
}

pub fn server_error(error: impl std::fmt::Debug) -> TokenError {
    tracing::error!(?error, "the authorization server failed");
    TokenError::new("server_error", "the server could not complete the request")
}

/// Issues the tokens of `grant` within `scopes` (its own, or fewer on a refresh), the
/// access token living `lifetime` seconds; the /token answer.
pub async fn issue(
    app: &App,
    tenant: &Tenant,
    stored: &StoredGrant,
    scopes: Scopes,
    lifetime: i64,
) -> Result<Value, TokenError> {
    let now = now_seconds();
    let grant = stored.grant(scopes);
    let jti = new_id()?;
    let mut claims = token::access_claims(&grant, &tenant.base, &tenant.base, now, lifetime, &jti);
    claims["gid"] = json!(stored.id);
    if let Some(role) = &stored.role {
        claims["role"] = json!(role);
    }
    let keys = app.auth.keys.keys(&app.store).await.map_err(server_error)?;
    let signer = keys.first().ok_or_else(|| server_error("no signing key"))?;
    let access_token = signer.sign(&claims).map_err(server_error)?;
    let mut extra = Extra::default();
    if let Some(id_claims) =
        token::id_token_claims(&grant, &tenant.base, now, stored.nonce.as_deref())
    {
        extra.id_token = Some(signer.sign(&id_claims).map_err(server_error)?);
    }
    if token::gets_refresh_token(&grant.scopes) {
        let refresh = new_token()?;
        let body = serde_json::to_string(&StoredRefresh {
            grant_id: stored.id.clone(),
        })
        .map_err(server_error)?;
        app.store
            .auth_put(
                tenant.id,
                RecordKind::Refresh,
                &smart_auth::sha256_hex(&refresh),
                &body,
                Some(now + REFRESH_LIFETIME),
            )
            .await
            .map_err(server_error)?;
        extra.refresh_token = Some(refresh);
    }
    Ok(token::response(&access_token, lifetime, &grant, extra))
}

/// Keeps a grant (for its refreshes and its revocation). A grant revoked before it was
/// kept (its code was used twice at once) stays revoked.
pub async fn keep(app: &App, tenant: &Tenant, grant: &StoredGrant) -> Result<(), TokenError> {
    let body = serde_json::to_string(grant).map_err(server_error)?;
    app.store
        .auth_insert_new(
            tenant.id,
            RecordKind::Grant,
            &grant.id,
            &body,
            Some(now_seconds() + REFRESH_LIFETIME),
        )
        .await
        .map(|_| ())
        .map_err(server_error)
}

/// A kept grant that was not revoked.
pub async fn find(app: &App, tenant: &Tenant, id: &str) -> Result<Option<StoredGrant>, TokenError> {
    let found = app
        .store
        .auth_get(tenant.id, RecordKind::Grant, id, now_seconds())
        .await
        .map_err(server_error)?;
    match found {
        Some((body, false)) => serde_json::from_str(&body).map(Some).map_err(server_error),
        _ => Ok(None),
    }
}

/// Revokes a grant everywhere: this process at once, the others through the log; its
/// record is marked used (written so if it is not there yet), so that no refresh renews it.
pub async fn revoke_grant(app: &App, tenant: &Tenant, grant_id: &str) -> Result<(), TokenError> {
    let until = now_seconds() + REFRESH_LIFETIME;
    app.auth.revoked.note("grant", grant_id, until);
    app.store
        .auth_mark_used(tenant.id, RecordKind::Grant, grant_id, "{}", until)
        .await
        .map_err(server_error)?;
    app.store
        .revoke("grant", grant_id, until)
        .await
        .map_err(server_error)
}
