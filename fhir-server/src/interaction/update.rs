//! update: `PUT [base]/[type]/[id]` (https://hl7.org/fhir/R4/http.html#update), including
//! update-as-create with a client-chosen id, `If-Match` (412 on mismatch), and conditional
//! update `PUT [base]/[type]?criteria` (0 matches: create; 1: update; more: 412).

use axum::http::StatusCode;
use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::ids::{Id, ResourceType};
use crate::index;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::store::{Method, Outcome, StoreError, Version, WriteOp};

pub async fn handle(
    app: &App,
    request: &FhirRequest,
    resource_type: ResourceType,
    id: Id<'_>,
) -> Result<FhirResponse, FhirError> {
    let resource = request.resource(&resource_type)?;
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id.as_str() => {}
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
    let index = index::extract(&resource_type, &resource);
    let outcome = app
        .store
        .write(
            request.tenant,
            WriteOp::Update {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
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
    resource_type: ResourceType,
) -> Result<FhirResponse, FhirError> {
    let query =
        super::conditional_criteria(&resource_type, &request.params, "A conditional update")?;
    let resource = request.resource(&resource_type)?;
    let index = index::extract(&resource_type, &resource);
    let outcome = app
        .store
        .write(
            request.tenant,
            WriteOp::ConditionalUpdate {
                resource_type: resource_type.to_string(),
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

/// What [`rewrite`] did: nothing (the change left the resource as it was), or a write.
pub enum Rewritten {
    Unchanged(Version),
    Written(Outcome),
}

/// How often [`rewrite`] tries again when other writers keep winning the race.
const ATTEMPTS: usize = 5;

/// Reads the current version of `(type, id)`, lets `change` make the next one from it
/// (`None`: nothing to write) and writes it conditioned on the version read; when another
/// write got in between, reads and changes again. With `pinned` (the client's If-Match)
/// a different current version is 412 instead. For PATCH and `$meta-add`/`$meta-delete`.
pub async fn rewrite(
    app: &App,
    request: &FhirRequest,
    (resource_type, id): (&str, &str),
    (pinned, method): (Option<i64>, Method),
    mut change: impl FnMut(&Version) -> Result<Option<Value>, FhirError>,
) -> Result<Rewritten, FhirError> {
    for _ in 0..ATTEMPTS {
        let current = super::read::current(app, request, resource_type, id).await?;
        if let Some(pinned) = pinned
            && pinned != current.version
        {
            return Err(FhirError::precondition_failed(format!(
                "If-Match version {pinned} does not match the current version {} of {resource_type}/{id}",
                current.version
            )));
        }
        let Some(resource) = change(&current)? else {
            return Ok(Rewritten::Unchanged(current));
        };
        let op = WriteOp::Update {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            index: index::extract(resource_type, &resource),
            resource,
            if_match: Some(current.version),
            method,
        };
        match app.store.write(request.tenant, op).await {
            Ok(outcome) => return Ok(Rewritten::Written(outcome)),
            Err(StoreError::Rejected(error))
                if error.status == StatusCode::PRECONDITION_FAILED && pinned.is_none() =>
            {
                continue;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(FhirError::conflict(format!(
        "{resource_type}/{id} kept changing while it was being changed; retry"
    )))
}
