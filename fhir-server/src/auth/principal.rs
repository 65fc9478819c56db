//! Who is asking: the access token of a request, verified (signature by one of the
//! server's keys, issuer and audience this tenant's base, not expired, not revoked) and
//! made into a [`Principal`]. Verified tokens are cached by hash until they expire.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::Value;
use smart_auth::role::Role;
use smart_auth::scope::Scopes;

use super::AuthState;
use crate::clock::now_seconds;
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::store::Store;

/// The holder of a verified access token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: TenantId,
    /// The FHIR base the token was issued for (its `aud`).
    pub audience: String,
    pub client_id: String,
    pub scopes: Scopes,
    /// The patient in context (patient/ scopes are confined to this compartment).
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// The signed-in user's resource (`Practitioner/7`), if a user signed in.
    pub fhir_user: Option<String>,
    /// The signed-in user's name.
    pub username: Option<String>,
    /// The user's role; `None` for a backend service (system/ scopes).
    pub role: Option<Role>,
    pub jti: String,
    /// The grant it came from (a revoked grant revokes all its tokens).
    pub grant: Option<String>,
    pub expires_at: i64,
}

impl Principal {
    /// Who holds the token, as a stable text: the client, and the user and patient it acts
    /// for. What a background job started by this principal is owned by.
    pub fn holder(&self) -> String {
        format!(
            "{}|{}|{}",
            self.client_id,
            self.username.as_deref().unwrap_or_default(),
            self.patient.as_deref().unwrap_or_default()
        )
    }
}

/// 401, as RFC 6750 asks: the `WWW-Authenticate` header is added where the answer is
/// encoded (see `http`).
pub fn unauthorized(reason: impl Into<String>) -> FhirError {
    FhirError::new(StatusCode::UNAUTHORIZED, "login", reason)
}

/// The principal of `authorization` (the bytes of the request's `Authorization` header)
/// on the tenant `tenant` whose base is `base`. A token seen before is found by its bytes
/// as sent; only a new one is checked to be text, then verified.
pub async fn authenticate(
    auth: &AuthState,
    store: &Store,
    tenant: TenantId,
    base: &str,
    authorization: Option<&[u8]>,
) -> Result<Arc<Principal>, FhirError> {
    let token = bearer_token(authorization)?;
    let now = now_seconds();
    let principal = match auth.cache.get(token, now) {
        Some(principal) => principal,
        None => {
            let token = std::str::from_utf8(token)
                .map_err(|_| unauthorized("the access token is not valid: not a JWT"))?;
            let (principal, keep_until) = verify(auth, store, tenant, base, token, now).await?;
            auth.cache.insert(
                token,
                principal.clone(),
                keep_until,
                principal.grant.clone(),
                now,
            );
            Arc::new(principal)
        }
    };
    if principal.audience != base || principal.tenant != tenant {
        return Err(unauthorized(
            "the access token was issued for another server or tenant",
        ));
    }
    if auth
        .revoked
        .is_revoked(&principal.jti, principal.grant.as_deref())
    {
        return Err(unauthorized("the access token has been revoked"));
    }
    Ok(principal)
}

fn bearer_token(authorization: Option<&[u8]>) -> Result<&[u8], FhirError> {
    let header = authorization.ok_or_else(|| unauthorized("an access token is required"))?;
    let not_bearer = || unauthorized("the Authorization header is not a Bearer token");
    let space = header
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(not_bearer)?;
    let (scheme, token) = (&header[..space], header[space + 1..].trim_ascii());
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() {
        return Err(not_bearer());
    }
    Ok(token)
}

/// The principal of `token`, and until when it may be remembered: a token of this
/// server's until it expires; a token of an outside provider for at most
/// [`OUTSIDE_TOKEN_KEPT`] seconds, so that a provider no longer trusted, or a role changed,
/// holds within that time.
async fn verify(
    auth: &AuthState,
    store: &Store,
    tenant: TenantId,
    base: &str,
    token: &str,
    now: i64,
) -> Result<(Principal, i64), FhirError> {
    let claims = smart_auth::jwt::unverified_claims(token)
        .ok_or_else(|| unauthorized("the access token is not valid: not a JWT"))?;
    match claims["iss"].as_str() {
        Some(iss) if iss != base => {
            let principal = verify_outside(auth, store, tenant, base, token, iss, now).await?;
            let keep_until = principal.expires_at.min(now + OUTSIDE_TOKEN_KEPT);
            Ok((principal, keep_until))
        }
        _ => {
            let principal = verify_own(auth, store, tenant, base, token, now).await?;
            let keep_until = principal.expires_at;
            Ok((principal, keep_until))
        }
    }
}

/// How long a checked token of an outside provider is remembered, at most, in seconds.
pub const OUTSIDE_TOKEN_KEPT: i64 = 300;

/// A token this server issued.
async fn verify_own(
    auth: &AuthState,
    store: &Store,
    tenant: TenantId,
    base: &str,
    token: &str,
    now: i64,
) -> Result<Principal, FhirError> {
    let keys = auth.keys.keys(store).await?;
    let claims = match smart_auth::jwt::verify_own(token, keys.iter(), base, base, now) {
        Err(error) if error.0.contains("key this server does not have") => {
            let keys = auth.keys.reload(store).await?;
            smart_auth::jwt::verify_own(token, keys.iter(), base, base, now)
        }
        other => other,
    }
    .map_err(|error| unauthorized(format!("the access token is not valid: {}", error.0)))?;
    principal_of(store, tenant, base, &claims).await
}

async fn principal_of(
    store: &Store,
    tenant: TenantId,
    base: &str,
    claims: &Value,
) -> Result<Principal, FhirError> {
    let text = |name: &str| claims[name].as_str().map(str::to_owned);
    let scopes = Scopes::parse(claims["scope"].as_str().unwrap_or_default())
        .map_err(|_| unauthorized("the access token's scope does not parse"))?;
    let role = match claims["role"].as_str() {
        Some(name) => Some(
            super::accounts::role(store, tenant, name)
                .await?
                .ok_or_else(|| unauthorized(format!("the role '{name}' no longer exists")))?,
        ),
        None => None,
    };
    Ok(Principal {
        tenant,
        audience: base.to_owned(),
        client_id: text("client_id").unwrap_or_default(),
        scopes,
        patient: text("patient"),
        encounter: text("encounter"),
        fhir_user: text("fhirUser"),
        username: text("sub"),
        role,
        jti: text("jti").unwrap_or_default(),
        grant: text("gid"),
        expires_at: claims["exp"].as_i64().unwrap_or_default(),
    })
}

/// A token of an outside provider the tenant trusts (see `issuers`): checked against the
/// provider's keys, its scopes bounded by what the provider may grant here, its role the
/// first of the role claim's names that is one of the tenant's roles, else the provider's
/// default role.
async fn verify_outside(
    auth: &AuthState,
    store: &Store,
    tenant: TenantId,
    base: &str,
    token: &str,
    iss: &str,
    now: i64,
) -> Result<Principal, FhirError> {
    let trusted = super::issuers::issuer(store, tenant, iss)
        .await?
        .ok_or_else(|| {
            unauthorized("the access token was issued by a provider this tenant does not trust")
        })?;
    let keys = auth
        .jwks
        .keys_for(&trusted.jwks_url, token)
        .await
        .map_err(|reason| unauthorized(format!("the access token cannot be checked: {reason}")))?;
    let mapped = smart_auth::external::verify(token, &trusted.claims(), &keys, now)
        .map_err(|reason| unauthorized(format!("the access token is not valid: {reason}")))?;
    let mut role = None;
    for name in mapped.roles.iter().chain(trusted.default_role.iter()) {
        role = super::accounts::role(store, tenant, name).await?;
        if role.is_some() {
            break;
        }
    }
    let jti = match &mapped.jti {
        Some(jti) => format!("{iss}#{jti}"),
        None => format!("{iss}#{}", smart_auth::sha256_hex(token)),
    };
    Ok(Principal {
        tenant,
        audience: base.to_owned(),
        client_id: mapped.client_id.unwrap_or_else(|| iss.to_owned()),
        scopes: mapped.scopes.granted_within(&trusted.allowed_scopes()),
        patient: mapped
            .patient
            .map(|p| p.strip_prefix("Patient/").unwrap_or(&p).to_owned()),
        encounter: None,
        fhir_user: mapped.fhir_user,
        username: mapped.subject,
        role,
        jti,
        grant: None,
        expires_at: mapped.exp,
    })
}
