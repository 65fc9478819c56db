//! Applies the rate limits (`auth::rate`): every FHIR request per source address (here,
//! before anything is read) and per client (once its token is known, in `http::fhir`);
//! the authorization server's endpoints per source address, at their own stricter rate.
//! A caller over its limit gets 429 with `Retry-After`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::{App, SharedApp};
use crate::auth::rate::Limiter;
use crate::error::FhirError;

/// The address a request comes from (a trusted proxy's forwarded one), as a bucket key.
fn address_key(app: &App, request: &Request) -> Option<String> {
    let ConnectInfo(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
    let origin =
        crate::auth::proxies::origin(peer.ip(), request.headers(), &app.trusted_proxies, false);
    Some(format!("a:{}", origin.address))
}

async fn limited(limiter: &Limiter, app: &App, request: Request, next: Next) -> Response {
    if limiter.is_on()
        && let Some(key) = address_key(app, &request)
        && let Err(retry_after) = limiter.take(&key)
    {
        return too_many(retry_after, "address");
    }
    next.run(request).await
}

/// The FHIR API's limit per source address.
pub async fn api_layer(State(app): State<SharedApp>, request: Request, next: Next) -> Response {
    limited(&app.rate_limits.api, &app, request, next).await
}

/// The authorization server's limit per source address.
pub async fn auth_layer(State(app): State<SharedApp>, request: Request, next: Next) -> Response {
    limited(&app.rate_limits.auth, &app, request, next).await
}

/// The FHIR API's limit per client, once the token named it.
pub fn client_over_limit(app: &App, client: &str) -> Option<Response> {
    if !app.rate_limits.api.is_on() {
        return None;
    }
    let key = format!("c:{client}");
    app.rate_limits
        .api
        .take(&key)
        .err()
        .map(|retry_after| too_many(retry_after, "client"))
}

/// 429 with `Retry-After` and an OperationOutcome.
pub fn too_many(retry_after: u64, what: &str) -> Response {
    let error = FhirError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "throttled",
        format!("Too many requests from this {what}; retry after {retry_after} seconds"),
    );
    let mut response = super::encode_error(&error, crate::rest::format::Format::default());
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert("retry-after", value);
    }
    response
}
