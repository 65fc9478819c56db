//! Search (https://hl7.org/fhir/R4/search.html): the parameter registry, parsing a query
//! string into clauses, planning them into SQL, and running a search with its paging and
//! includes.

pub mod cursor;
pub mod dates;
pub mod execute;
pub mod parse;
pub mod query;
pub mod registry;
pub mod sql;
pub mod streamed;

pub use query::{PageLimits, Query};
