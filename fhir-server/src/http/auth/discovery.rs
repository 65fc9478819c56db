//! `{base}/.well-known/smart-configuration`, `openid-configuration` and `jwks.json`: no
//! token needed, any origin may read them.

use axum::extract::{Request, State};
use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::tenant_of;
use crate::app::SharedApp;
use crate::error::FhirError;

fn public_json(body: &Value, cache_seconds: u32) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={cache_seconds}")) {
        headers.insert(CACHE_CONTROL, value);
    }
    response
}

pub async fn smart_configuration(
    State(app): State<SharedApp>,
    request: Request,
) -> Result<Response, FhirError> {
    let tenant = tenant_of(&app, request.headers(), request.uri().path()).await?;
    Ok(public_json(&tenant.endpoints().smart_configuration(), 3600))
}

pub async fn openid_configuration(
    State(app): State<SharedApp>,
    request: Request,
) -> Result<Response, FhirError> {
    let tenant = tenant_of(&app, request.headers(), request.uri().path()).await?;
    Ok(public_json(
        &tenant.endpoints().openid_configuration(),
        3600,
    ))
}

/// The public keys of the server's signing keys, the retired ones included until their
/// tokens have expired. Kept by caches for five minutes: a rotation shows within that.
pub async fn jwks(State(app): State<SharedApp>, request: Request) -> Result<Response, FhirError> {
    tenant_of(&app, request.headers(), request.uri().path()).await?;
    let keys = app.auth.keys.keys(&app.store).await?;
    Ok(public_json(&smart_auth::jwt::jwks(keys.iter()), 300))
}
