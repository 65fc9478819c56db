//! A resource's body: parsed strictly and checked against R4.

use serde_json::Value;

use crate::error::FhirError;

/// Parses JSON strictly (no repeated keys), answering 400 with the position of the error.
pub fn parse_json(bytes: &[u8]) -> Result<Value, FhirError> {
    fhir_model::json::parse(bytes).map_err(|e| {
        FhirError::structure(format!(
            "Malformed JSON at line {}, column {}: {}",
            e.line, e.column, e.message
        ))
    })
}

/// Checks a parsed resource: its type matches the URL, and it is valid R4.
pub fn check_resource(resource: &Value, resource_type: &str) -> Result<(), FhirError> {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(found) if found == resource_type => {}
        Some(found) => {
            return Err(FhirError::bad_request(format!(
                "The body is a {found}, but the URL is for {resource_type}"
            ))
            .at(format!("{found}.resourceType")));
        }
        None => {
            return Err(FhirError::structure(
                "The body has no resourceType; it is not a FHIR resource",
            )
            .at("resourceType"));
        }
    }
    fhir_model::validate::validate_resource(resource).map_err(FhirError::from)
}
