//! patch: `PATCH [base]/[type]/[id]` (https://hl7.org/fhir/R4/http.html#patch) with a
//! JSON Patch (`application/json-patch+json`) or a FHIRPath Patch (a Parameters resource,
//! `application/fhir+json` or `application/fhir+xml`,
//! https://hl7.org/fhir/R4/fhirpatch.html), and conditional patch `PATCH [type]?criteria`.
//!
//! The patch is applied to the current version and the result validated like any update.
//! The write is conditioned on the version the patch was applied to: if another client
//! updates in between, the patch is re-applied to the newer version (unless the client
//! pinned a version with If-Match, which then answers 412).

use axum::http::StatusCode;
use serde_json::Value;

use crate::app::App;
use crate::error::FhirError;
use crate::http::format::{BodyFormat, body_format};
use crate::http::request::{FhirRequest, check_resource, parse_json};
use crate::http::response::FhirResponse;
use crate::index;
use crate::store::{Method, StoreError, WriteOp};

/// A patch, in either of the forms R4 defines.
#[derive(Debug, Clone)]
pub enum Patch {
    /// An RFC 6902 JSON Patch document.
    Json(json_patch::Patch),
    /// A FHIRPath Patch: a Parameters resource of `operation`s.
    FhirPath(Value),
}

impl Patch {
    /// The patch as a request body, with its Content-Type (a batch entry runs as a request).
    pub fn to_body(&self) -> Result<(Vec<u8>, &'static str), FhirError> {
        let (bytes, content_type) = match self {
            Patch::Json(patch) => (serde_json::to_vec(patch), "application/json-patch+json"),
            Patch::FhirPath(parameters) => {
                (serde_json::to_vec(parameters), "application/fhir+json")
            }
        };
        Ok((
            bytes.map_err(|e| FhirError::internal(e.to_string()))?,
            content_type,
        ))
    }

    /// A FHIRPath Patch from a parsed body: a Parameters resource of `operation`s.
    pub fn fhirpath(parameters: Value) -> Result<Patch, FhirError> {
        if !fhir_model::fhirpath_patch::is_fhirpath_patch(&parameters) {
            return Err(FhirError::bad_request(
                "A FHIRPath Patch is a Parameters resource whose parameters are all named 'operation'",
            )
            .at("Parameters.parameter"));
        }
        Ok(Patch::FhirPath(parameters))
    }
}

/// Attempts before giving up when other writers keep winning the race.
const ATTEMPTS: usize = 5;

pub async fn handle(
    app: &App,
    request: &FhirRequest,
    resource_type: &str,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    let patch = parse_patch(request)?;
    let pinned = request.if_match()?;
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
        let body = current.body.as_deref().unwrap_or_default();
        let resource = patched(resource_type, id, body, &patch)?;
        let index = index::extract(resource_type, &resource);
        let op = WriteOp::Update {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            resource,
            index,
            if_match: Some(current.version),
            method: Method::Patch,
        };
        match app.store.write(request.tenant, op).await {
            Ok(outcome) => return super::update::written(request, outcome),
            Err(StoreError::Rejected(error))
                if error.status == StatusCode::PRECONDITION_FAILED && pinned.is_none() =>
            {
                continue;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(FhirError::conflict(format!(
        "{resource_type}/{id} kept changing while the patch was applied; retry"
    )))
}

pub async fn conditional(
    app: &App,
    request: &FhirRequest,
    resource_type: &str,
) -> Result<FhirResponse, FhirError> {
    let query = super::conditional_criteria(resource_type, &request.params, "A conditional patch")?;
    let query = crate::search::Query {
        count: Some(2),
        ..query
    };
    let found =
        crate::search::execute::execute(&app.store, request.tenant, &query, app.page_limits())
            .await?;
    match found.matches.as_slice() {
        [] => Err(FhirError::not_found(format!(
            "No {resource_type} matches the conditional patch criteria"
        ))),
        [row] => handle(app, request, resource_type, &row.version.id.clone()).await,
        _ => Err(FhirError::multiple_matches(format!(
            "The conditional patch criteria match more than one {resource_type}"
        ))),
    }
}

/// A stored resource with a patch applied, checked like any update: 422 when the patch
/// does not apply, changes the id, or leaves a resource that is not valid R4.
pub fn patched(
    resource_type: &str,
    id: &str,
    stored: &[u8],
    patch: &Patch,
) -> Result<Value, FhirError> {
    let cannot = |message: String| {
        FhirError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "processing",
            format!("The patch cannot be applied: {message}"),
        )
    };
    let mut resource: Value = parse_json(stored)?;
    match patch {
        Patch::Json(patch) => apply_json_patch(&mut resource, patch).map_err(cannot)?,
        Patch::FhirPath(parameters) => {
            resource = fhir_model::fhirpath_patch::apply(&resource, parameters)
                .map_err(|e| cannot(e.message).at(e.expression))?;
        }
    }
    if resource.get("id").and_then(Value::as_str) != Some(id) {
        return Err(FhirError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "processing",
            "A patch may not change or remove the resource's id",
        )
        .at(format!("{resource_type}.id")));
    }
    check_resource(&resource, resource_type).map_err(as_unprocessable)?;
    Ok(resource)
}

/// Applies a JSON Patch one operation at a time: at most
/// `fhirpath_patch::MAX_OPERATIONS` of them, and a `copy` may not grow the resource past
/// the size of a request body (each copy can double it: a short hostile patch would
/// otherwise build a document of terabytes).
fn apply_json_patch(resource: &mut Value, patch: &json_patch::Patch) -> Result<(), String> {
    let operations = &patch.0;
    let most = fhir_model::fhirpath_patch::MAX_OPERATIONS;
    if operations.len() > most {
        return Err(format!("a patch has at most {most} operations"));
    }
    for operation in operations {
        let one = json_patch::Patch(vec![operation.clone()]);
        json_patch::patch(resource, &one).map_err(|e| e.to_string())?;
        if matches!(operation, json_patch::PatchOperation::Copy(_))
            && serde_json::to_vec(resource).map_or(0, |v| v.len()) > MAX_PATCHED_BYTES
        {
            return Err(format!(
                "the patched resource would be larger than {MAX_PATCHED_BYTES} bytes"
            ));
        }
    }
    Ok(())
}

/// The largest resource a patch may make: the default request body limit.
const MAX_PATCHED_BYTES: usize = 16 * 1024 * 1024;

/// Parses a JSON Patch document.
pub fn parse_patch_document(bytes: &[u8]) -> Result<json_patch::Patch, FhirError> {
    let value = parse_json(bytes)?;
    serde_json::from_value(value)
        .map_err(|e| FhirError::bad_request(format!("Not a JSON Patch document: {e}")))
}

fn parse_patch(request: &FhirRequest) -> Result<Patch, FhirError> {
    match body_format(&request.headers)? {
        BodyFormat::JsonPatch => parse_patch_document(&request.body).map(Patch::Json),
        // A JSON array is a JSON Patch document sent with the wrong type.
        BodyFormat::Json if request.body.trim_ascii_start().starts_with(b"[") => {
            Err(FhirError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-supported",
                "A JSON Patch document is sent as application/json-patch+json; application/fhir+json carries a FHIRPath Patch (Parameters)",
            ))
        }
        BodyFormat::Json | BodyFormat::Xml => Patch::fhirpath(request.parse_body()?),
        BodyFormat::Form => Err(FhirError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "PATCH takes a JSON Patch (application/json-patch+json) or a FHIRPath Patch (Parameters as application/fhir+json or application/fhir+xml)",
        )),
    }
}

/// A patched resource that breaks the rules is a content problem of the patch: 422.
fn as_unprocessable(mut error: FhirError) -> FhirError {
    error.status = StatusCode::UNPROCESSABLE_ENTITY;
    error
}
