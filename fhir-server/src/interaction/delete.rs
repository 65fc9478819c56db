//! delete: `DELETE [base]/[type]/[id]` (https://hl7.org/fhir/R4/http.html#delete), and
//! conditional delete `DELETE [base]/[type]?criteria` (more than one match: 412).
//! A delete is a new version without a body: later reads are 410 and history keeps it.
//! Deleting a missing or already deleted resource is not an error (204), as the spec allows.

use axum::http::StatusCode;

use crate::app::App;
use crate::error::{FhirError, information};
use crate::ids::{Id, ResourceType};
use crate::rest::request::{FhirRequest, Return};
use crate::rest::response::FhirResponse;
use crate::store::{Outcome, WriteOp};

pub async fn handle(
    app: &App,
    request: &FhirRequest,
    resource_type: ResourceType,
    id: Id<'_>,
) -> Result<FhirResponse, FhirError> {
    let op = WriteOp::Delete {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
    };
    let outcome = app.store.write(request.tenant, op).await?;
    Ok(answer(request, outcome, &format!("{resource_type}/{id}")))
}

pub async fn conditional(
    app: &App,
    request: &FhirRequest,
    resource_type: ResourceType,
) -> Result<FhirResponse, FhirError> {
    let query =
        super::conditional_criteria(&resource_type, &request.params, "A conditional delete")?;
    let op = WriteOp::ConditionalDelete {
        resource_type: resource_type.to_string(),
        query,
        multiple: false,
    };
    let outcome = app.store.write(request.tenant, op).await?;
    Ok(answer(request, outcome, &resource_type))
}

fn answer(request: &FhirRequest, outcome: Outcome, what: &str) -> FhirResponse {
    let count = match outcome {
        Outcome::Deleted(count) => count,
        _ => 0,
    };
    if request.prefer_return() != Return::OperationOutcome {
        return FhirResponse::new(StatusCode::NO_CONTENT, None);
    }
    let message = match count {
        0 => format!("Nothing to delete: {what} does not exist or is already deleted"),
        _ => format!("Deleted {what}"),
    };
    FhirResponse::value(StatusCode::OK, information(message))
}
