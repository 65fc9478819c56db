//! One file per FHIR interaction (https://hl7.org/fhir/R4/http.html). Each parses what it
//! needs from the request, applies it to the store, and builds the answer.

pub mod create;
pub mod delete;
pub mod history;
pub mod patch;
pub mod read;
pub mod search;
pub mod subset;
pub mod transaction;
pub mod update;
pub mod vread;

use crate::error::FhirError;
use crate::rest::request::{FhirRequest, parse_query};
use crate::search::Query;

pub use crate::search::conditional_criteria;

/// The criteria of the `If-None-Exist` header, if present.
pub fn if_none_exist(
    request: &FhirRequest,
    resource_type: &str,
) -> Result<Option<Query>, FhirError> {
    match request.header("if-none-exist") {
        None => Ok(None),
        Some(value) => {
            let value = value.trim_start_matches('?');
            let value = value.rsplit_once('?').map_or(value, |(_, query)| query);
            conditional_criteria(resource_type, &parse_query(value), "If-None-Exist").map(Some)
        }
    }
}
