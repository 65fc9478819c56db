//! read: `GET [base]/[type]/[id]` (https://hl7.org/fhir/R4/http.html#read), with the
//! conditional read headers If-None-Match and If-Modified-Since (304 when unchanged).

use axum::http::StatusCode;
use axum::http::header::ETAG;

use crate::app::App;
use crate::error::FhirError;
use crate::ids::{Id, ResourceType};
use crate::resource::parse_http_date;
use crate::rest::request::{FhirRequest, parse_etag};
use crate::rest::response::{FhirResponse, etag};
use crate::store::Version;

pub async fn handle(
    app: &App,
    request: &FhirRequest,
    resource_type: ResourceType,
    id: Id<'_>,
) -> Result<FhirResponse, FhirError> {
    let version = current(app, request, &resource_type, &id).await?;
    if not_modified(request, &version) {
        return Ok(
            FhirResponse::new(StatusCode::NOT_MODIFIED, None).header(ETAG, &etag(version.version))
        );
    }
    let response = FhirResponse::version(StatusCode::OK, &version);
    super::subset::read_answer(response, &resource_type, &request.params)
}

/// The current version of a resource: 404 when it is not known, 410 when it was deleted.
pub async fn current(
    app: &App,
    request: &FhirRequest,
    resource_type: &str,
    id: &str,
) -> Result<Version, FhirError> {
    let version = app
        .store
        .read(request.tenant, resource_type, id)
        .await?
        .ok_or_else(|| FhirError::not_found(format!("{resource_type}/{id} is not known")))?;
    if version.is_deleted() {
        return Err(gone(&version));
    }
    Ok(version)
}

/// 410 for a deleted resource.
pub fn gone(version: &Version) -> FhirError {
    FhirError::gone(format!(
        "{}/{} was deleted (version {})",
        version.resource_type, version.id, version.version
    ))
}

/// Whether the client's copy is current: If-None-Match names this version, or
/// If-Modified-Since is not earlier than the version (to the second, as HTTP dates are).
fn not_modified(request: &FhirRequest, version: &Version) -> bool {
    if let Some(tags) = request.header("if-none-match") {
        return tags
            .split(',')
            .any(|tag| tag.trim() == "*" || parse_etag(tag) == Some(version.version));
    }
    if let Some(since) = request
        .header("if-modified-since")
        .and_then(parse_http_date)
    {
        return version.last_updated / 1_000_000 <= since / 1_000_000;
    }
    false
}
