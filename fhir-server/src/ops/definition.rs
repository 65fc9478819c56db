//! The OperationDefinitions of the server's operations, built from their registration
//! (`ops::OPERATIONS`) and served at `OperationDefinition/[id]`, so a client that follows
//! the CapabilityStatement's `operation.definition` finds what each one takes.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ANY_TYPE, OPERATIONS, Operation};
use crate::app::App;
use crate::error::FhirError;
use crate::ids::{Id, ResourceType};
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;

/// `GET OperationDefinition/[id]`: one of ours, else whatever the tenant stored.
pub async fn read(app: &App, request: &FhirRequest, id: Id<'_>) -> Result<FhirResponse, FhirError> {
    match OPERATIONS
        .iter()
        .find(|operation| operation.id == id.as_str())
    {
        Some(operation) => Ok(FhirResponse::value(StatusCode::OK, definition(operation))),
        None => {
            let resource_type = ResourceType::from_path("OperationDefinition")?;
            crate::interaction::read::handle(app, request, resource_type, id).await
        }
    }
}

/// Whether `id` is the id of one of the server's own definitions (which clients cannot
/// write: a read would answer the server's, a search the stored one).
pub fn is_reserved(id: &str) -> bool {
    OPERATIONS.iter().any(|operation| operation.id == id)
}

/// The OperationDefinition of `operation`.
pub fn definition(operation: &Operation) -> Value {
    let resources: Vec<&str> = if operation.types == ANY_TYPE {
        vec!["Resource"]
    } else {
        operation.types.to_vec()
    };
    let parameters: Vec<Value> = operation
        .parameters
        .iter()
        .map(|param| {
            let mut value = json!({
                "name": param.name,
                "use": param.use_,
                "min": param.min,
                "max": param.max,
                "documentation": param.documentation,
            });
            if !param.type_.is_empty() {
                value["type"] = json!(param.type_);
            }
            value
        })
        .collect();
    let mut value = json!({
        "resourceType": "OperationDefinition",
        "id": operation.id,
        "url": operation.url,
        "name": operation.id.replace('-', ""),
        "title": operation.title,
        "status": "active",
        "kind": "operation",
        "description": operation.description,
        "affectsState": operation.affects_state,
        "code": operation.name,
        "system": operation.system,
        "type": operation.type_level,
        "instance": operation.instance,
        "parameter": parameters,
    });
    if !resources.is_empty() {
        value["resource"] = json!(resources);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_definition_is_valid_r4_with_a_unique_id() {
        let mut ids = std::collections::HashSet::new();
        for operation in OPERATIONS {
            assert!(ids.insert(operation.id), "{} twice", operation.id);
            let value = definition(operation);
            let checked = fhir_model::validate::validate_resource(&value);
            assert!(checked.is_ok(), "{}: {checked:?}", operation.id);
        }
    }
}
