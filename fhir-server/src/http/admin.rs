//! Operability and administration: health, readiness, tenants.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{AUTHORIZATION, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use smart_auth::constant_time_eq;

use crate::app::SharedApp;
use crate::config::AuthMode;
use crate::error::FhirError;

/// Liveness: the process answers.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Readiness: the database answers too.
pub async fn readyz(State(app): State<SharedApp>) -> Response {
    match app.store.ping().await {
        Ok(()) => {
            Json(json!({"status": "ready", "database": app.store.backend_name()})).into_response()
        }
        Err(error) => {
            tracing::warn!(?error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": app.store.backend_name()})),
            )
                .into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct NewTenant {
    id: String,
    name: Option<String>,
}

/// Whether a tenant id is usable in a URL: `[A-Za-z0-9-_]{1,64}`.
pub fn is_valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `POST /admin/tenants` with `{"id": "...", "name": "..."}`: 201, or 409 if it exists.
pub async fn create_tenant(
    State(app): State<SharedApp>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, FhirError> {
    authorize_admin(&app, peer, &headers)?;
    let tenant: NewTenant = serde_json::from_slice(&body).map_err(|e| {
        FhirError::bad_request(format!(
            "Expected {{\"id\": \"...\", \"name\": \"...\"}}: {e}"
        ))
    })?;
    if !is_valid_tenant_id(&tenant.id) {
        return Err(FhirError::bad_request(format!(
            "Invalid tenant id '{}': use 1 to 64 letters, digits, '-' or '_'",
            tenant.id
        ))
        .at("id"));
    }
    if !app
        .store
        .create_tenant(&tenant.id, tenant.name.as_deref())
        .await?
    {
        return Err(FhirError::new(
            StatusCode::CONFLICT,
            "duplicate",
            format!("Tenant '{}' already exists", tenant.id),
        ));
    }
    tracing::info!(tenant = %tenant.id, "tenant created");
    let location = format!("/t/{}/fhir", tenant.id);
    Ok((
        StatusCode::CREATED,
        [(LOCATION, location.clone())],
        Json(json!({"id": tenant.id, "name": tenant.name, "base": location})),
    )
        .into_response())
}

/// `POST /admin/clock` with `{"advance_seconds": N}`: moves the server's clock forward
/// (see `clock`), when the server was started with `--test-clock`; 404 otherwise.
pub async fn advance_clock(
    State(app): State<SharedApp>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, FhirError> {
    if !app.config.test_clock {
        return Err(FhirError::not_found("No such endpoint"));
    }
    authorize_admin(&app, peer, &headers)?;
    let seconds = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["advance_seconds"].as_i64())
        .filter(|s| *s >= 0)
        .ok_or_else(|| FhirError::bad_request("Expected {\"advance_seconds\": N}, N >= 0"))?;
    let offset = crate::clock::advance(seconds.saturating_mul(1_000_000));
    tracing::warn!(seconds, "the test clock was moved forward");
    Ok(Json(json!({"offset_seconds": offset / 1_000_000, "now": crate::resource::format_instant(crate::clock::now_micros())})).into_response())
}

/// With an admin token configured, the caller must present it; without one, only clients
/// on the loopback interface may administer the server, and only under `--auth none`
/// (behind a reverse proxy on the same host every client looks like loopback).
fn authorize_admin(
    app: &crate::app::App,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), FhirError> {
    match &app.config.admin_token {
        Some(token) => {
            let presented = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
                Ok(())
            } else {
                Err(FhirError::new(
                    StatusCode::UNAUTHORIZED,
                    "login",
                    "The admin API needs 'Authorization: Bearer <FHIR_ADMIN_TOKEN>'",
                ))
            }
        }
        None if peer.ip().is_loopback() && app.config.auth == AuthMode::None => Ok(()),
        None => Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "The admin API needs FHIR_ADMIN_TOKEN to be set (without it, it answers only loopback clients under --auth none)",
        )),
    }
}
