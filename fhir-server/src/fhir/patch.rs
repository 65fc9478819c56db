//! Patches (https://hl7.org/fhir/R4/http.html#patch): a JSON Patch or a FHIRPath Patch,
//! applied to a stored resource and checked like any update.

use axum::http::StatusCode;
use serde_json::Value;

use super::json::{check_resource, parse_json};
use crate::error::FhirError;

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

/// A patched resource that breaks the rules is a content problem of the patch: 422.
fn as_unprocessable(mut error: FhirError) -> FhirError {
    error.status = StatusCode::UNPROCESSABLE_ENTITY;
    error
}
