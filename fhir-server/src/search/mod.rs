//! Search (https://hl7.org/fhir/R4/search.html): the parameter registry, parsing a query
//! string into clauses, planning them into SQL, and running a search with its paging and
//! includes.

pub mod compartment;
pub mod cursor;
pub mod parse;
pub mod query;
pub mod sql;
pub mod streamed;

pub use query::{PageLimits, Query};

/// Parses the criteria of a conditional interaction (a query string). Criteria must select
/// something: an empty or unknown-only query would match every resource.
pub fn conditional_criteria(
    resource_type: &str,
    params: &[(String, String)],
    what: &str,
) -> Result<Query, crate::error::FhirError> {
    let query = Query::parse(resource_type, params, true)?;
    if query.clauses.is_empty() {
        return Err(crate::error::FhirError::bad_request(format!(
            "{what} needs search criteria (e.g. ?identifier=system|value)"
        )));
    }
    Ok(query)
}
