//! FHIR operations (`$name`), one file each, dispatched by level and name. Each is listed
//! in the CapabilityStatement (see `OPERATIONS`).

pub mod claim_submit;
pub mod everything;
pub mod export;
pub mod import_835;

use axum::http::Method;

use crate::app::App;
use crate::error::FhirError;
use crate::http::request::FhirRequest;
use crate::http::response::FhirResponse;

/// The operations the server offers: name, the resource type they apply to (`""` at the
/// system level), and their definition's canonical URL.
pub const OPERATIONS: &[(&str, &str, &str)] = &[
    (
        "everything",
        "Patient",
        "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    ),
    (
        "export",
        "",
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    ),
    (
        "export",
        "Patient",
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
    ),
    (
        "export",
        "Group",
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
    ),
    (
        "submit",
        "Claim",
        "urn:fhir-server:OperationDefinition/Claim-submit-837P",
    ),
    (
        "import-835",
        "",
        "urn:fhir-server:OperationDefinition/import-835",
    ),
];

/// `[base]/$op...`: system-level operations, and the status and files of exports.
pub async fn system(
    app: &App,
    request: &FhirRequest,
    segments: &[&str],
) -> Result<FhirResponse, FhirError> {
    match (segments, &request.method) {
        (["$export"], &Method::GET | &Method::POST) => {
            export::kick_off(app, request, "system", None).await
        }
        (["$export-status", id], &Method::GET | &Method::DELETE) => {
            export::status(app, request, id).await
        }
        (["$export-file", id, name], &Method::GET) => export::file(app, request, id, name).await,
        (["$import-835"], _) => import_835::handle(app, request).await,
        ([operation, ..], _) => Err(unknown(operation, "the system")),
        ([], _) => Err(unknown("", "the system")),
    }
}

/// `[type]/$op`.
pub async fn type_level(
    app: &App,
    request: &FhirRequest,
    resource_type: &str,
    operation: &str,
) -> Result<FhirResponse, FhirError> {
    match (resource_type, operation) {
        ("Patient", "$export") => export::kick_off(app, request, "Patient", None).await,
        _ => Err(unknown(operation, resource_type)),
    }
}

/// `[type]/[id]/$op`.
pub async fn instance(
    app: &App,
    request: &FhirRequest,
    resource_type: &str,
    id: &str,
    operation: &str,
) -> Result<FhirResponse, FhirError> {
    match (resource_type, operation) {
        ("Patient", "$everything") => everything::handle(app, request, id).await,
        ("Group", "$export") => export::kick_off(app, request, "Group", Some(id)).await,
        ("Claim", "$submit") => claim_submit::handle(app, request, id).await,
        _ => Err(unknown(operation, &format!("{resource_type}/{id}"))),
    }
}

fn unknown(operation: &str, target: &str) -> FhirError {
    FhirError::not_supported(format!(
        "Operation {operation} is not supported on {target}"
    ))
}
