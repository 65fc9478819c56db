//! create: `POST [base]/[type]` (https://hl7.org/fhir/R4/http.html#create), and conditional
//! create with `If-None-Exist` (0 matches: create; 1: 200 with the match; more: 412).
//! Any id or meta.versionId/lastUpdated in the body is replaced by the server's.

use axum::http::StatusCode;

use crate::app::App;
use crate::error::FhirError;
use crate::ids::ResourceType;
use crate::index;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::store::{Outcome, WriteOp};

pub async fn handle(
    app: &App,
    request: &FhirRequest,
    resource_type: ResourceType,
) -> Result<FhirResponse, FhirError> {
    refuse_search_parameters(&request.params, &resource_type)?;
    let if_none_exist = super::if_none_exist(request, &resource_type)?;
    let resource = request.resource(&resource_type)?;
    let index = index::extract(&resource_type, &resource);
    let outcome = app
        .store
        .write(
            request.tenant,
            WriteOp::Create {
                resource_type: resource_type.to_string(),
                resource,
                index,
                if_none_exist,
            },
        )
        .await?;
    match outcome {
        Outcome::Created(version) => Ok(FhirResponse::written(
            request,
            StatusCode::CREATED,
            &version,
        )),
        Outcome::Matched(version) | Outcome::Updated(version) => {
            Ok(FhirResponse::written(request, StatusCode::OK, &version))
        }
        Outcome::Deleted(_) => Err(FhirError::internal("create answered with a delete")),
    }
}

/// A create takes no search parameters: `POST [type]?identifier=...` (what some clients
/// send for "get or create") would otherwise create a duplicate while the client believes
/// it asked for a conditional create. Only the format parameters are allowed.
pub fn refuse_search_parameters(
    params: &[(String, String)],
    resource_type: &str,
) -> Result<(), FhirError> {
    match params
        .iter()
        .find(|(name, _)| name != "_format" && name != "_pretty")
    {
        None => Ok(()),
        Some((name, _)) => Err(FhirError::bad_request(format!(
            "POST {resource_type} is a create and takes no parameter '{name}'; for a conditional create send the criteria in the If-None-Exist header, to search use GET or POST {resource_type}/_search"
        ))
        .at(name.clone())),
    }
}
