//! A tenant's clients, users and roles, as the authorization server keeps them
//! (`store::auth` records of kind client, user and role, their bodies this JSON).

use serde::{Deserialize, Serialize};
use smart_auth::role::Role;
use smart_auth::scope::Scopes;

use crate::error::FhirError;
use crate::ids::TenantId;
use crate::store::Store;
use crate::store::auth::RecordKind;

/// How a client authenticates at /token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ClientType {
    /// A browser or native app with no secret: PKCE alone.
    Public,
    /// A shared secret (client_secret_basic or client_secret_post).
    ConfidentialSymmetric,
    /// A signed assertion with its own key (private_key_jwt; Backend Services).
    ConfidentialAsymmetric,
}

/// A registered client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    #[serde(rename = "type")]
    pub client_type: ClientType,
    /// The SHA-256 of its secret, hex (confidential-symmetric). Secrets are long random
    /// strings the server makes, so a fast hash keeps them as safe as a slow one would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_sha256: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// The scopes it may be granted (system/ scopes only where listed here).
    pub scopes: String,
    /// Its public keys (confidential-asymmetric): a JWKS, or where to fetch one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Whether it may make EHR launch contexts (`POST {base}/auth/launch`).
    #[serde(default)]
    pub may_launch: bool,
}

impl Client {
    /// Whether `secret` is this client's, compared in constant time.
    pub fn secret_is(&self, secret: &str) -> bool {
        self.secret_sha256.as_deref().is_some_and(|stored| {
            smart_auth::constant_time_eq(
                stored.as_bytes(),
                smart_auth::sha256_hex(secret).as_bytes(),
            )
        })
    }

    pub fn allowed_scopes(&self) -> Scopes {
        Scopes::parse(&self.scopes).unwrap_or_default()
    }

    /// The origins of its redirect URIs (for CORS).
    pub fn origins(&self) -> impl Iterator<Item = String> + '_ {
        self.redirect_uris.iter().filter_map(|uri| origin_of(uri))
    }
}

/// `scheme://host[:port]` of a URL.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

/// A user of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    /// The practice role's name.
    pub role: String,
    /// Its FHIR resource (`Practitioner/7`, `Patient/42`).
    pub fhir_user: String,
    /// Whether the user must sign in with a TOTP code too (enrolled at the next login).
    #[serde(default)]
    pub totp_required: bool,
    /// The TOTP secret, once enrolled (base32 is for people; this is base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_secret: Option<String>,
    /// The time step of the last TOTP code accepted (each code works once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_last_step: Option<u64>,
}

impl User {
    /// The patient the user is, for a patient's own login (`Patient/42` → `42`).
    pub fn own_patient(&self) -> Option<&str> {
        self.fhir_user.strip_prefix("Patient/")
    }
}

fn corrupt(what: &str, error: serde_json::Error) -> FhirError {
    FhirError::internal(format!("a stored {what} does not parse: {error}"))
}

pub async fn client(
    store: &Store,
    tenant: TenantId,
    id: &str,
) -> Result<Option<Client>, FhirError> {
    match store.auth_get(tenant, RecordKind::Client, id, 0).await? {
        Some((body, _)) => serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| corrupt("client", e)),
        None => Ok(None),
    }
}

pub async fn clients(store: &Store, tenant: TenantId) -> Result<Vec<Client>, FhirError> {
    let rows = store.auth_list(tenant, RecordKind::Client).await?;
    rows.iter()
        .map(|(_, body)| serde_json::from_str(body).map_err(|e| corrupt("client", e)))
        .collect()
}

pub async fn put_client(store: &Store, tenant: TenantId, client: &Client) -> Result<(), FhirError> {
    let body = serde_json::to_string(client).map_err(|e| corrupt("client", e))?;
    Ok(store
        .auth_put(tenant, RecordKind::Client, &client.id, &body, None)
        .await?)
}

pub async fn user(
    store: &Store,
    tenant: TenantId,
    username: &str,
) -> Result<Option<User>, FhirError> {
    match store
        .auth_get(tenant, RecordKind::User, username, 0)
        .await?
    {
        Some((body, _)) => serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| corrupt("user", e)),
        None => Ok(None),
    }
}

pub async fn users(store: &Store, tenant: TenantId) -> Result<Vec<User>, FhirError> {
    let rows = store.auth_list(tenant, RecordKind::User).await?;
    rows.iter()
        .map(|(_, body)| serde_json::from_str(body).map_err(|e| corrupt("user", e)))
        .collect()
}

pub async fn put_user(store: &Store, tenant: TenantId, user: &User) -> Result<(), FhirError> {
    let body = serde_json::to_string(user).map_err(|e| corrupt("user", e))?;
    Ok(store
        .auth_put(tenant, RecordKind::User, &user.username, &body, None)
        .await?)
}

/// The role named `name`: the tenant's own definition if it has one, else the default.
pub async fn role(store: &Store, tenant: TenantId, name: &str) -> Result<Option<Role>, FhirError> {
    if let Some((body, _)) = store.auth_get(tenant, RecordKind::Role, name, 0).await? {
        return serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| corrupt("role", e));
    }
    Ok(smart_auth::role::defaults()
        .into_iter()
        .find(|role| role.name == name))
}

pub async fn put_role(store: &Store, tenant: TenantId, role: &Role) -> Result<(), FhirError> {
    let body = serde_json::to_string(role).map_err(|e| corrupt("role", e))?;
    Ok(store
        .auth_put(tenant, RecordKind::Role, &role.name, &body, None)
        .await?)
}
