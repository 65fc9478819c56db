//! `POST {base}/auth/token` (RFC 6749 3.2, SMART App Launch 2.x, Backend Services):
//! authorization_code, refresh_token (rotated; a reused one revokes its whole grant) and
//! client_credentials, with the client authenticated by secret (basic or post), by a
//! signed assertion (private_key_jwt, RS384/ES384, jti single-use), or, for a public
//! client, by its id alone.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;
use smart_auth::client_auth::{self, Presented};
use smart_auth::scope::{Context, Scope, Scopes};
use smart_auth::token::{self, TokenError};

use super::grants::{self, StoredCode, StoredGrant, StoredRefresh, server_error};
use super::{Tenant, field, form, no_store, split, tenant_of};
use crate::app::{App, SharedApp};
use crate::auth::accounts::{self, Client, ClientType};
use crate::clock::now_seconds;
use crate::http::audit::AuthNote;
use crate::store::auth::RecordKind;

pub async fn token(State(app): State<SharedApp>, request: Request) -> Response {
    let (path, headers, body, _) = split(request);
    let tenant = match tenant_of(&app, &headers, &path).await {
        Ok(tenant) => tenant,
        Err(error) => {
            return refused(
                &TokenError::new(
                    "invalid_request",
                    error
                        .issues
                        .first()
                        .map(|i| i.diagnostics.clone())
                        .unwrap_or_default(),
                ),
                false,
            );
        }
    };
    let pairs = match form(body).await {
        Ok(pairs) => pairs,
        Err(error) => return refused(&TokenError::new("invalid_request", error), false),
    };
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let presented = match client_auth::presented(authorization, &pairs) {
        Ok(presented) => presented,
        Err(error) => {
            return refused(
                &TokenError::new("invalid_client", error),
                authorization.is_some(),
            );
        }
    };
    let basic = matches!(presented, Presented::Secret { basic: true, .. });
    let client = match &presented {
        Presented::Secret { client_id, .. } => Some(client_id.clone()),
        Presented::Assertion { client_id, .. } => client_id.clone(),
        _ => field(&pairs, "client_id").map(str::to_owned),
    };
    let refreshing = field(&pairs, "grant_type") == Some("refresh_token");
    let (mut response, note) = match answer(&app, &tenant, presented, &pairs).await {
        Ok(body) => {
            let access_token = body["access_token"].as_str().unwrap_or_default();
            let (token, user, fhir_user) = crate::http::audit::token_claims(access_token);
            let event = if refreshing { "refresh" } else { "token" };
            let note = AuthNote {
                event,
                user,
                fhir_user,
                client,
                token,
                ..AuthNote::default()
            };
            (no_store(StatusCode::OK, &body), note)
        }
        Err(error) => {
            let note = AuthNote {
                event: "token-refused",
                client,
                ..AuthNote::default()
            };
            (refused(&error, basic), note)
        }
    };
    response.extensions_mut().insert(note);
    response
}

/// An RFC 6749 5.2 error; 401 with `WWW-Authenticate: Basic` for a client that failed
/// to authenticate by HTTP Basic.
fn refused(error: &TokenError, basic: bool) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = no_store(status, &error.body());
    if status == StatusCode::UNAUTHORIZED && basic {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"token\""),
        );
    }
    response
}

async fn answer(
    app: &App,
    tenant: &Tenant,
    presented: Presented,
    pairs: &[(String, String)],
) -> Result<Value, TokenError> {
    let client = authenticate(app, tenant, presented).await?;
    match field(pairs, "grant_type") {
        Some("client_credentials") => client_credentials(app, tenant, &client, pairs).await,
        Some("authorization_code") => authorization_code(app, tenant, &client, pairs).await,
        Some("refresh_token") => refresh(app, tenant, &client, pairs).await,
        Some(other) => Err(TokenError::new(
            "unsupported_grant_type",
            format!("grant_type '{other}' is not supported"),
        )),
        None => Err(TokenError::new("invalid_request", "grant_type is missing")),
    }
}

fn invalid_client(reason: impl Into<String>) -> TokenError {
    TokenError::new("invalid_client", reason)
}

/// The client, once it proved who it is the way it is registered to.
pub async fn authenticate(
    app: &App,
    tenant: &Tenant,
    presented: Presented,
) -> Result<Client, TokenError> {
    let claimed = match &presented {
        Presented::Secret { client_id, .. } | Presented::Public { client_id } => client_id.clone(),
        Presented::Assertion {
            client_id: Some(id),
            ..
        } => id.clone(),
        Presented::Assertion { assertion, .. } => unverified_issuer(assertion)
            .ok_or_else(|| invalid_client("the client assertion names no client (iss)"))?,
    };
    let client = accounts::client(&app.store, tenant.id, &claimed)
        .await
        .map_err(server_error)?
        .ok_or_else(|| invalid_client("unknown client"))?;
    match (presented, client.client_type) {
        (Presented::Public { .. }, ClientType::Public) => Ok(client),
        (Presented::Secret { secret, .. }, ClientType::ConfidentialSymmetric)
            if client.secret_is(&secret) =>
        {
            Ok(client)
        }
        (Presented::Secret { .. }, ClientType::ConfidentialSymmetric) => {
            Err(invalid_client("the client secret is wrong"))
        }
        (Presented::Assertion { assertion, .. }, ClientType::ConfidentialAsymmetric) => {
            check_assertion(app, tenant, &client, &assertion).await?;
            Ok(client)
        }
        _ => Err(invalid_client(
            "the client must authenticate the way it is registered",
        )),
    }
}

/// `iss` of a JWT, unverified: only to know whose keys verify it.
fn unverified_issuer(assertion: &str) -> Option<String> {
    let claims = smart_auth::jwt::unverified_claims(assertion)?;
    claims["iss"].as_str().map(str::to_owned)
}

/// A private_key_jwt assertion: signed by a key of the client's JWKS, for this token
/// endpoint, not expired nor too far ahead, and its `jti` never seen before.
async fn check_assertion(
    app: &App,
    tenant: &Tenant,
    client: &Client,
    assertion: &str,
) -> Result<(), TokenError> {
    let fetched;
    let jwks = match (&client.jwks, &client.jwks_url) {
        (Some(inline), _) => inline,
        (None, Some(url)) => {
            fetched = app
                .auth
                .jwks
                .keys_for(url, assertion)
                .await
                .map_err(invalid_client)?;
            fetched.as_ref()
        }
        (None, None) => return Err(invalid_client("the client has no JWKS registered")),
    };
    let endpoints = tenant.endpoints();
    let expected = smart_auth::assertion::Expected {
        client_id: &client.id,
        token_url: &endpoints.token,
        jwks_url: client.jwks_url.as_deref(),
        now: now_seconds(),
    };
    let checked = smart_auth::jwt::verify_assertion(assertion, jwks, &expected)
        .map_err(|error| invalid_client(error.0))?;
    let first_use = app
        .store
        .auth_insert_new(
            tenant.id,
            RecordKind::Jti,
            &format!("{}/{}", client.id, checked.jti),
            "{}",
            Some(checked.expires.max(now_seconds()) + 1),
        )
        .await
        .map_err(server_error)?;
    if first_use {
        Ok(())
    } else {
        Err(invalid_client("the client assertion's jti was used before"))
    }
}

/// Backend Services: system/ scopes, within what the client is allowed; no refresh.
async fn client_credentials(
    app: &App,
    tenant: &Tenant,
    client: &Client,
    pairs: &[(String, String)],
) -> Result<Value, TokenError> {
    if client.client_type == ClientType::Public {
        return Err(TokenError::new(
            "unauthorized_client",
            "a public client cannot use client_credentials",
        ));
    }
    let asked = Scopes::parse(field(pairs, "scope").unwrap_or_default())
        .map_err(|e| TokenError::new("invalid_scope", e.to_string()))?;
    let system_only = asked
        .iter()
        .all(|scope| matches!(scope, Scope::Resource(r) if r.context == Context::System));
    if !system_only {
        return Err(TokenError::new(
            "invalid_scope",
            "client_credentials grants system/ scopes only",
        ));
    }
    let scopes = asked.granted_within(&client.allowed_scopes());
    if scopes.is_empty() {
        return Err(TokenError::new(
            "invalid_scope",
            "none of the scopes asked for is allowed to this client",
        ));
    }
    let grant = StoredGrant::new(&client.id, &scopes)?;
    grants::issue(app, tenant, &grant, scopes, token::BACKEND_LIFETIME).await
}

/// Exchanging a code: single use (a second exchange revokes what the first got), by the
/// client it was issued to, with the same redirect URI, within 60 s, with the verifier.
async fn authorization_code(
    app: &App,
    tenant: &Tenant,
    client: &Client,
    pairs: &[(String, String)],
) -> Result<Value, TokenError> {
    let code = field(pairs, "code")
        .ok_or_else(|| TokenError::new("invalid_request", "code is missing"))?;
    let now = now_seconds();
    let grant_of = |body: &str| {
        serde_json::from_str::<StoredCode>(body)
            .ok()
            .map(|c| c.grant.id)
    };
    let body = take_once(app, tenant, (RecordKind::Code, code), grant_of, "the code").await?;
    let stored: StoredCode = serde_json::from_str(&body).map_err(server_error)?;
    let issued = token::IssuedCode {
        grant: smart_auth::token::Grant {
            client_id: stored.grant.client_id.clone(),
            ..Default::default()
        },
        redirect_uri: stored.redirect_uri.clone(),
        code_challenge: stored.code_challenge.clone(),
        issued_at: stored.issued_at,
    };
    token::exchange_code(
        &issued,
        &client.id,
        field(pairs, "redirect_uri"),
        field(pairs, "code_verifier"),
        now,
    )?;
    let scopes = Scopes::parse(&stored.grant.scope).map_err(server_error)?;
    grants::keep(app, tenant, &stored.grant).await?;
    let lifetime = token::ACCESS_LIFETIME;
    grants::issue(app, tenant, &stored.grant, scopes, lifetime).await
}

/// A refresh: the token is used up and a new one issued (rotation); a token used a second
/// time revokes the whole grant, since one of its holders is not who it should be.
async fn refresh(
    app: &App,
    tenant: &Tenant,
    client: &Client,
    pairs: &[(String, String)],
) -> Result<Value, TokenError> {
    let presented = field(pairs, "refresh_token")
        .ok_or_else(|| TokenError::new("invalid_request", "refresh_token is missing"))?;
    let grant_of = |body: &str| {
        serde_json::from_str::<StoredRefresh>(body)
            .ok()
            .map(|r| r.grant_id)
    };
    let what = "the refresh token";
    let body = take_once(
        app,
        tenant,
        (RecordKind::Refresh, presented),
        grant_of,
        what,
    )
    .await?;
    let stored: StoredRefresh = serde_json::from_str(&body).map_err(server_error)?;
    let grant = grants::find(app, tenant, &stored.grant_id)
        .await?
        .ok_or_else(|| TokenError::new("invalid_grant", "the grant was revoked"))?;
    if grant.client_id != client.id {
        return Err(TokenError::new(
            "invalid_grant",
            "the refresh token is another client's",
        ));
    }
    let granted = Scopes::parse(&grant.scope).map_err(server_error)?;
    let scopes = token::refresh_scopes(field(pairs, "scope"), &granted)?;
    grants::issue(app, tenant, &grant, scopes, token::ACCESS_LIFETIME).await
}

/// Uses up a single-use secret (a code, a refresh token), kept by its SHA-256: its record's
/// body. One used before means someone holds a copy, so the grant it names (`grant_of`) is
/// revoked; either way the answer is `invalid_grant`.
async fn take_once(
    app: &App,
    tenant: &Tenant,
    (kind, secret): (RecordKind, &str),
    grant_of: impl Fn(&str) -> Option<String>,
    what: &str,
) -> Result<String, TokenError> {
    let key = smart_auth::sha256_hex(secret);
    let now = now_seconds();
    let taken = app.store.auth_take(tenant.id, kind, &key, now).await;
    if let Some(body) = taken.map_err(server_error)? {
        return Ok(body);
    }
    let seen = app.store.auth_get(tenant.id, kind, &key, now).await;
    if let Some((body, true)) = seen.map_err(server_error)?
        && let Some(grant) = grant_of(&body)
    {
        tracing::warn!("{what} was used twice: its grant is revoked");
        grants::revoke_grant(app, tenant, &grant).await?;
    }
    Err(TokenError::new(
        "invalid_grant",
        format!("{what} is unknown, expired or used"),
    ))
}
