//! The authorization server of each tenant (SMART App Launch 2.x and Backend Services),
//! below its FHIR base: discovery and JWKS (`.well-known/...`, no token, any origin),
//! `/auth/authorize` (login, consent, patient picker), `/auth/token`, `/auth/introspect`,
//! `/auth/revoke` and `/auth/launch`. The rules are the `smart-auth` crate's; this module
//! reads the requests, keeps codes and grants in the store, and answers.

pub mod admin;
pub mod authorize;
pub mod discovery;
pub mod enrol;
pub mod grants;
pub mod introspect;
pub mod launch;
pub mod pages;
pub mod reset;
pub mod token;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::Value;

use crate::app::{App, SharedApp};
use crate::error::FhirError;
use crate::store::TenantId;

/// The discovery documents and the JWKS, at `/fhir/.well-known/...` and
/// `/t/{tenant}/fhir/.well-known/...`: open to any origin (SMART asks it), so outside
/// the configured CORS.
pub fn discovery_routes() -> Router<SharedApp> {
    let mut router = Router::new();
    for prefix in ["/fhir", "/t/{tenant}/fhir"] {
        router = router
            .route(
                &format!("{prefix}/.well-known/smart-configuration"),
                get(discovery::smart_configuration),
            )
            .route(
                &format!("{prefix}/.well-known/openid-configuration"),
                get(discovery::openid_configuration),
            )
            .route(
                &format!("{prefix}/.well-known/jwks.json"),
                get(discovery::jwks),
            );
    }
    router
}

/// The authorization server's endpoints, at `/fhir/auth/...` and `/t/{tenant}/fhir/auth/...`.
pub fn routes() -> Router<SharedApp> {
    let mut router = Router::new();
    for prefix in ["/fhir", "/t/{tenant}/fhir"] {
        router = router
            .route(
                &format!("{prefix}/auth/authorize"),
                get(authorize::start).post(authorize::start),
            )
            .route(&format!("{prefix}/auth/login"), post(authorize::login))
            .route(&format!("{prefix}/auth/consent"), post(authorize::consent))
            .route(&format!("{prefix}/auth/enrol"), post(enrol::confirm))
            .route(
                &format!("{prefix}/auth/reset"),
                get(reset::show).post(reset::change),
            )
            .route(&format!("{prefix}/auth/token"), post(token::token))
            .route(
                &format!("{prefix}/auth/introspect"),
                post(introspect::introspect),
            )
            .route(&format!("{prefix}/auth/revoke"), post(introspect::revoke))
            .route(&format!("{prefix}/auth/launch"), post(launch::create))
            .route(
                &format!("{prefix}/auth/admin/{{*rest}}"),
                any(admin::handle),
            );
    }
    router
}

/// The tenant a request to the authorization server is for, and that tenant's FHIR base.
pub struct Tenant {
    pub id: TenantId,
    pub base: String,
}

impl Tenant {
    pub fn endpoints(&self) -> smart_auth::discovery::Endpoints {
        smart_auth::discovery::Endpoints::of(&self.base)
    }
}

/// The tenant of `request`'s path (`/fhir/...` or `/t/{tenant}/fhir/...`).
pub async fn tenant_of(app: &App, headers: &HeaderMap, path: &str) -> Result<Tenant, FhirError> {
    let (name, base_path, _) = super::tenant_and_rest(path);
    let id = app.tenant(&name).await?;
    Ok(Tenant {
        id,
        base: format!("{}{base_path}", super::root_url(app, headers)),
    })
}

/// A JSON answer that no cache may keep (tokens, introspection: RFC 6749 5.1).
pub fn no_store(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The largest form the authorization server reads.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The `application/x-www-form-urlencoded` body of a request, as pairs.
pub async fn form(body: Body) -> Result<Vec<(String, String)>, String> {
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| format!("the form is larger than {MAX_FORM_BYTES} bytes"))?;
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// The path and headers of a request, its body apart.
pub fn split(request: Request) -> (String, HeaderMap, Body, Option<String>) {
    let (parts, body) = request.into_parts();
    let query = parts.uri.query().map(str::to_owned);
    (parts.uri.path().to_owned(), parts.headers, body, query)
}

/// The first value of `name` in `pairs`.
pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}
