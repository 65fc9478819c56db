//! Registering a tenant's clients and users, and making password reset links: the rules
//! the command line (`fhir-server client|user ...`) and the admin API
//! (`{base}/auth/admin/...`) share. Errors are FhirErrors with the status the API answers
//! (400 for bad input, 409 for a name taken, 404 for an unknown user).

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use smart_auth::scope::Scopes;

use super::accounts::{self, Client, ClientType, User};
use crate::error::FhirError;
use crate::ids::{ResourceType, TenantId, is_valid_id};
use crate::store::auth::RecordKind;
use crate::store::{Method, Store, WriteOp};

/// How long a password reset link is good for, in seconds (24 hours).
pub const RESET_LIFETIME: i64 = 24 * 3600;

/// A client to register.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub id: String,
    #[serde(rename = "type")]
    pub client_type: ClientType,
    /// A confidential-symmetric client's secret; one is made when not given.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub jwks: Option<Value>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    pub scopes: String,
    #[serde(default)]
    pub may_launch: bool,
}

/// A user to add.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: String,
    /// `Practitioner/7`, `Patient/42`.
    pub fhir_user: String,
    /// Create the `fhir_user` resource when it does not exist.
    #[serde(default)]
    pub create_resource: bool,
    #[serde(default)]
    pub require_totp: bool,
}

fn invalid(field: &str, diagnostics: impl Into<String>) -> FhirError {
    FhirError::bad_request(diagnostics).at(field.to_owned())
}

fn taken(diagnostics: String) -> FhirError {
    FhirError::new(StatusCode::CONFLICT, "duplicate", diagnostics)
}

/// Whether `username` can be a user's: 1 to 128 bytes, no `/` (failed logins are kept
/// under `username/...`), no control characters.
pub fn is_valid_username(username: &str) -> bool {
    !username.is_empty()
        && username.len() <= 128
        && !username.contains('/')
        && !username.chars().any(char::is_control)
}

/// Registers a client; the secret made for it, if one was (shown once, kept hashed).
pub async fn register_client(
    store: &Store,
    tenant: TenantId,
    new: NewClient,
) -> Result<Option<String>, FhirError> {
    if !is_valid_id(&new.id) {
        return Err(invalid(
            "id",
            "a client id is 1 to 64 letters, digits, '-' or '.'",
        ));
    }
    Scopes::parse(&new.scopes).map_err(|e| invalid("scopes", e.to_string()))?;
    if new
        .redirect_uris
        .iter()
        .any(|uri| accounts::origin_of(uri).is_none())
    {
        return Err(invalid(
            "redirect_uris",
            "a redirect URI is an absolute URL",
        ));
    }
    let asymmetric = new.client_type == ClientType::ConfidentialAsymmetric;
    if asymmetric && new.jwks.is_none() && new.jwks_url.is_none() {
        return Err(invalid(
            "jwks",
            "a confidential-asymmetric client needs a JWKS or a JWKS URL",
        ));
    }
    if let Some(url) = &new.jwks_url
        && !super::jwks::is_fetchable(url)
    {
        return Err(invalid(
            "jwks_url",
            "a JWKS URL is https (or http to this machine)",
        ));
    }
    if new
        .jwks
        .as_ref()
        .is_some_and(|jwks| !jwks["keys"].is_array())
    {
        return Err(invalid("jwks", "a JWKS is an object with a \"keys\" array"));
    }
    if accounts::client(store, tenant, &new.id).await?.is_some() {
        return Err(taken(format!("client '{}' already exists", new.id)));
    }
    let made = match (new.client_type, new.secret) {
        (ClientType::ConfidentialSymmetric, Some(secret)) => (Some(secret), false),
        (ClientType::ConfidentialSymmetric, None) => (
            Some(smart_auth::random_token().map_err(FhirError::internal)?),
            true,
        ),
        _ => (None, false),
    };
    let client = Client {
        id: new.id,
        client_type: new.client_type,
        secret_sha256: made.0.as_deref().map(smart_auth::sha256_hex),
        redirect_uris: new.redirect_uris,
        scopes: new.scopes,
        jwks: new.jwks,
        jwks_url: new.jwks_url,
        may_launch: new.may_launch,
    };
    accounts::put_client(store, tenant, &client).await?;
    Ok(if made.1 { made.0 } else { None })
}

/// Adds a user (the password policy applies; the role must exist); whether its FHIR
/// resource was created.
pub async fn add_user(store: &Store, tenant: TenantId, new: NewUser) -> Result<bool, FhirError> {
    smart_auth::password::check_policy(&new.password, &new.username)
        .map_err(|e| invalid("password", e.0))?;
    if !is_valid_username(&new.username) {
        return Err(invalid(
            "username",
            "a username is 1 to 128 characters, without '/' or control characters",
        ));
    }
    if accounts::role(store, tenant, &new.role).await?.is_none() {
        return Err(invalid(
            "role",
            format!(
                "no role '{}' (admin, provider, front-desk, billing, patient)",
                new.role
            ),
        ));
    }
    let (resource_type, id) = new
        .fhir_user
        .split_once('/')
        .filter(|(t, i)| ResourceType::parse(t).is_some() && is_valid_id(i))
        .ok_or_else(|| invalid("fhir_user", "expected Type/id, e.g. Practitioner/7"))?;
    if accounts::user(store, tenant, &new.username)
        .await?
        .is_some()
    {
        return Err(taken(format!("user '{}' already exists", new.username)));
    }
    let exists = store
        .read(tenant, resource_type, id)
        .await?
        .is_some_and(|v| !v.is_deleted());
    if !exists && !new.create_resource {
        return Err(invalid(
            "fhir_user",
            format!("{} does not exist (ask to create it)", new.fhir_user),
        ));
    }
    if !exists {
        let resource = json!({"resourceType": resource_type, "id": id});
        let index = crate::index::extract(resource_type, &resource);
        let op = WriteOp::Update {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            resource,
            index,
            if_match: None,
            method: Method::Put,
        };
        store.write(tenant, op).await?;
    }
    let password = new.password;
    let password_hash = tokio::task::spawn_blocking(move || smart_auth::password::hash(&password))
        .await
        .map_err(|e| FhirError::internal(e.to_string()))?
        .map_err(FhirError::internal)?;
    let user = User {
        username: new.username,
        password_hash,
        role: new.role,
        fhir_user: new.fhir_user,
        totp_required: new.require_totp,
        totp_secret: None,
        totp_last_step: None,
    };
    accounts::put_user(store, tenant, &user).await?;
    Ok(!exists)
}

/// A one-time password reset token for `username`, valid [`RESET_LIFETIME`]; the page is
/// `{base}/auth/reset?token=...`.
pub async fn reset_token(
    store: &Store,
    tenant: TenantId,
    username: &str,
) -> Result<String, FhirError> {
    if accounts::user(store, tenant, username).await?.is_none() {
        return Err(FhirError::not_found(format!("no user '{username}'")));
    }
    let token = smart_auth::random_token().map_err(FhirError::internal)?;
    let expires = crate::clock::now_seconds() + RESET_LIFETIME;
    let body = json!({"username": username}).to_string();
    store
        .auth_put(
            tenant,
            RecordKind::Reset,
            &smart_auth::sha256_hex(&token),
            &body,
            Some(expires),
        )
        .await?;
    Ok(token)
}

/// A client as listed (no secret, no keys).
pub fn client_summary(client: &Client) -> Value {
    json!({"id": client.id, "type": client.client_type, "scopes": client.scopes,
        "redirect_uris": client.redirect_uris, "jwks_url": client.jwks_url,
        "may_launch": client.may_launch})
}

/// A user as listed (no password hash, no TOTP secret).
pub fn user_summary(user: &User) -> Value {
    json!({"username": user.username, "role": user.role, "fhirUser": user.fhir_user,
        "totp": user.totp_secret.is_some(), "totp_required": user.totp_required})
}
