//! `POST {base}/auth/introspect` (RFC 7662) and `POST {base}/auth/revoke` (RFC 7009). Both
//! need the calling client to authenticate; introspection answers `{"active": false}` for
//! anything not a live token of this tenant, and revocation answers 200 whatever the
//! token was (RFC 7009 2.2), so neither tells a caller which tokens exist.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::response::Response;
use serde_json::json;
use smart_auth::client_auth;
use smart_auth::token::TokenError;

use super::grants::{self, StoredRefresh, server_error};
use super::{Tenant, field, form, no_store, split, tenant_of};
use crate::app::{App, SharedApp};
use crate::clock::now_seconds;
use crate::store::auth::RecordKind;

/// The tenant and the `token` parameter, once the calling client authenticated; or the
/// error answer.
async fn read(app: &App, request: Request) -> Result<(Tenant, String), Response> {
    let fail = |error: TokenError| {
        no_store(
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST),
            &error.body(),
        )
    };
    let (path, headers, body, _) = split(request);
    let tenant = tenant_of(app, &headers, &path)
        .await
        .map_err(|_| fail(TokenError::new("invalid_request", "unknown tenant")))?;
    let pairs = form(body)
        .await
        .map_err(|e| fail(TokenError::new("invalid_request", e)))?;
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let presented = client_auth::presented(authorization, &pairs)
        .map_err(|e| fail(TokenError::new("invalid_client", e)))?;
    super::token::authenticate(app, &tenant, presented)
        .await
        .map_err(fail)?;
    let token = field(&pairs, "token")
        .ok_or_else(|| fail(TokenError::new("invalid_request", "token is missing")))?;
    Ok((tenant, token.to_owned()))
}

pub async fn introspect(State(app): State<SharedApp>, request: Request) -> Response {
    let (tenant, token) = match read(&app, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let token = token.as_str();
    let authorization = format!("Bearer {token}");
    let principal = crate::auth::principal::authenticate(
        &app.auth,
        &app.store,
        tenant.id,
        &tenant.base,
        Some(authorization.as_bytes()),
    )
    .await;
    let answer = match principal {
        Ok(principal) => {
            let mut claims = json!({
                "scope": principal.scopes.to_string(),
                "client_id": principal.client_id,
                "exp": principal.expires_at,
                "iss": tenant.base,
                "aud": tenant.base,
            });
            for (name, value) in [
                ("sub", &principal.username),
                ("patient", &principal.patient),
                ("encounter", &principal.encounter),
                ("fhirUser", &principal.fhir_user),
            ] {
                if let Some(value) = value {
                    claims[name] = json!(value);
                }
            }
            smart_auth::token::introspection(Some(&claims))
        }
        Err(_) => smart_auth::token::introspection(None),
    };
    no_store(StatusCode::OK, &answer)
}

pub async fn revoke(State(app): State<SharedApp>, request: Request) -> Response {
    let (tenant, token) = match read(&app, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let token = token.as_str();
    match revoke_token(&app, &tenant, token).await {
        Ok(()) => no_store(StatusCode::OK, &json!({})),
        Err(error) => no_store(StatusCode::SERVICE_UNAVAILABLE, &error.body()),
    }
}

/// A refresh token revokes its grant (and so every access token of it); an access token
/// of ours is revoked by its id.
async fn revoke_token(app: &App, tenant: &Tenant, token: &str) -> Result<(), TokenError> {
    let now = now_seconds();
    let refresh = app
        .store
        .auth_get(
            tenant.id,
            RecordKind::Refresh,
            &smart_auth::sha256_hex(token),
            now,
        )
        .await
        .map_err(server_error)?;
    if let Some((body, _)) = refresh {
        let stored: StoredRefresh = serde_json::from_str(&body).map_err(server_error)?;
        return grants::revoke_grant(app, tenant, &stored.grant_id).await;
    }
    let authorization = format!("Bearer {token}");
    if let Ok(principal) = crate::auth::principal::authenticate(
        &app.auth,
        &app.store,
        tenant.id,
        &tenant.base,
        Some(authorization.as_bytes()),
    )
    .await
    {
        app.auth
            .revoked
            .note("token", &principal.jti, principal.expires_at);
        app.store
            .revoke("token", &principal.jti, principal.expires_at)
            .await
            .map_err(server_error)?;
    }
    Ok(())
}
