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

use crate::app::App;
use crate::error::FhirError;
use crate::fhir::patch::{Patch, parse_patch_document};
use crate::ids::{Id, ResourceType};
use crate::rest::format::{BodyFormat, body_format};
use crate::rest::request::FhirRequest;

use super::update::Rewritten;
pub use crate::fhir::patch::patched;
use crate::rest::response::FhirResponse;
use crate::store::Method;

pub async fn handle(
    app: &App,
    request: &FhirRequest,
    resource_type: ResourceType,
    id: Id<'_>,
) -> Result<FhirResponse, FhirError> {
    let patch = parse_patch(request)?;
    let pinned = request.if_match()?;
    let rewritten = super::update::rewrite(
        app,
        request,
        (&resource_type, &id),
        (pinned, Method::Patch),
        |current| {
            let body = current.body.as_deref().unwrap_or_default();
            patched(&resource_type, &id, body, &patch).map(Some)
        },
    )
    .await?;
    match rewritten {
        Rewritten::Written(outcome) => super::update::written(request, outcome),
        Rewritten::Unchanged(_) => Err(FhirError::internal("a patch always writes")),
    }
}

pub async fn conditional(
    app: &App,
    request: &FhirRequest,
    resource_type: ResourceType,
) -> Result<FhirResponse, FhirError> {
    let query =
        super::conditional_criteria(&resource_type, &request.params, "A conditional patch")?;
    let query = crate::search::Query {
        count: Some(2),
        ..query
    };
    let found =
        crate::store::search::execute(&app.store, request.tenant, &query, app.page_limits())
            .await?;
    match found.matches.as_slice() {
        [] => Err(FhirError::not_found(format!(
            "No {resource_type} matches the conditional patch criteria"
        ))),
        [row] => handle(app, request, resource_type, Id::parse(&row.version.id)?).await,
        _ => Err(FhirError::multiple_matches(format!(
            "The conditional patch criteria match more than one {resource_type}"
        ))),
    }
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
