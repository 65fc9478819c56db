//! vread: `GET [base]/[type]/[id]/_history/[vid]` (https://hl7.org/fhir/R4/http.html#vread).

use axum::http::StatusCode;

use crate::app::App;
use crate::error::FhirError;
use crate::ids::{Id, ResourceType};
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;

pub async fn handle(
    app: &App,
    request: &FhirRequest,
    resource_type: ResourceType,
    id: Id<'_>,
    version: &str,
) -> Result<FhirResponse, FhirError> {
    let number: i64 = version.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        FhirError::not_found(format!("Version '{version}' is not a version number"))
    })?;
    let found = app
        .store
        .vread(request.tenant, &resource_type, &id, number)
        .await?
        .ok_or_else(|| {
            FhirError::not_found(format!("{resource_type}/{id} has no version {version}"))
        })?;
    if found.is_deleted() {
        return Err(super::read::gone(&found));
    }
    let response = FhirResponse::version(StatusCode::OK, &found);
    super::subset::read_answer(response, &resource_type, &request.params)
}
