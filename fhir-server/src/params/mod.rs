//! What the search parameters are: the registry of each type's parameters (from the R4
//! definitions), the parts of names and addresses, and FHIR dates as the ranges they cover.
//! Pure: the index (which extracts values) and the search planner (which reads them) both
//! build on this, and it builds on nothing of the server but the bottom layer.

pub mod dates;
pub mod parts;
pub mod registry;
