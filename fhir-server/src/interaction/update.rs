//! update: `PUT [base]/[type]/[id]` (https://hl7.org/fhir/R4/http.html#update), including
//! update-as-create with a client-chosen id, `If-Match` (412 on mismatch), and conditional
//! update `PUT [base]/[type]?criteria` (0 matches: create; 1: update; more: 412).

use axum::http::StatusCode;
use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;
use crate::index;
use crate::store::{Method, Outcome, WriteOp};

pub async fn handle(
    app: &App,
    request: &FhirRequest,
    resource_type: &str,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    let resource = request.resource(resource_type)?;
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(FhirError::bad_request(format!(
                "The body's id '{body_id}' does not match the URL's id '{id}'"
            ))
            .at(format!("{resource_type}.id")));
        }
        None => {
            return Err(
                FhirError::bad_request("An update needs the resource's id in the body")
                    .at(format!("{resource_type}.id")),
            );
        }
    }
    let index = index::extract(resource_type, &resource);
    let outcome = app
        .store
        .write(
            request.tenant,
            WriteOp::Update {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
                resource,
                index,
                if_match: request.if_match()?,
                method: Method::Put,
            },
        )
        .await?;
    written(request, outcome)
}

pub async fn conditional(
    app: &App,
    request: &FhirRequest,
    resource_type: &str,
) -> Result<FhirResponse, FhirError> {
    let query =
        super::conditional_criteria(resource_type, &request.params, "A conditional update")?;
    let resource = request.resource(resource_type)?;
    let index = index::extract(resource_type, &resource);
    let outcome = app
        .store
        .write(
            request.tenant,
            WriteOp::ConditionalUpdate {
                resource_type: resource_type.to_owned(),
                query,
                resource,
                index,
                if_match: request.if_match()?,
            },
        )
        .await?;
    written(request, outcome)
}

/// 201 when the write created the resource, 200 when it updated it.
pub fn written(request: &FhirRequest, outcome: Outcome) -> Result<FhirResponse, FhirError> {
    match outcome {
        Outcome::Created(version) => Ok(FhirResponse::written(
            request,
            StatusCode::CREATED,
            &version,
        )),
        Outcome::Updated(version) | Outcome::Matched(version) => {
            Ok(FhirResponse::written(request, StatusCode::OK, &version))
        }
        Outcome::Deleted(_) => Err(FhirError::internal("update answered with a delete")),
    }
}
